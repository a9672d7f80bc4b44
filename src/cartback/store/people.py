"""What the dashboard's profile page reads about one subscriber beyond the subscriber row: order totals
per currency. Scoped by workspace like every store query."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import orders


@dataclass(frozen=True)
class OrderTotal:
    currency: str
    orders: int
    total_cents: int
    refunded_cents: int


def order_totals(tx: Tx, workspace_id: str, subscriber_id: str) -> list[OrderTotal]:
    """Orders that were placed (cancelled ones left out), per currency, with what was refunded."""
    rows = tx.execute(
        sa.select(
            orders.c.currency,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(orders.c.total_cents), 0),
            sa.func.coalesce(sa.func.sum(orders.c.refund_amount_cents), 0),
        )
        .where(
            orders.c.workspace_id == workspace_id,
            orders.c.subscriber_id == subscriber_id,
            orders.c.status != "cancelled",
        )
        .group_by(orders.c.currency)
        .order_by(orders.c.currency)
    ).all()
    return [OrderTotal(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]
