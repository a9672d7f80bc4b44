"""Orders, one row per (workspace, orderId), holding the latest status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import orders


@dataclass(frozen=True)
class Order:
    id: str
    workspace_id: str
    order_id: str
    order_number: str | None
    subscriber_id: str
    checkout_id: str | None
    status: str
    currency: str
    total_cents: int
    # Everything refunded of the order so far (0: nothing), never more than its total.
    refund_amount_cents: int
    items: list[dict[str, Any]]
    properties: dict[str, Any]
    ordered_at: datetime
    created_at: datetime
    updated_at: datetime


_COLUMNS = list(Order.__dataclass_fields__)


def find(tx: Tx, workspace_id: str, order_id: str) -> Order | None:
    row = tx.execute(
        sa.select(orders).where(orders.c.workspace_id == workspace_id, orders.c.order_id == order_id)
    ).first()
    if row is None:
        return None
    return Order(**{name: getattr(row, name) for name in _COLUMNS})


def for_subscriber(tx: Tx, workspace_id: str, subscriber_id: str) -> list[Order]:
    rows = tx.execute(
        sa.select(orders)
        .where(orders.c.workspace_id == workspace_id, orders.c.subscriber_id == subscriber_id)
        .order_by(orders.c.ordered_at)
    ).all()
    return [Order(**{name: getattr(row, name) for name in _COLUMNS}) for row in rows]


def insert(tx: Tx, order: Order) -> None:
    tx.execute(orders.insert().values(**{name: getattr(order, name) for name in _COLUMNS}))


def save(tx: Tx, order: Order) -> None:
    values = {
        name: getattr(order, name) for name in _COLUMNS if name not in ("id", "workspace_id", "created_at")
    }
    tx.execute(
        orders.update()
        .where(orders.c.workspace_id == order.workspace_id, orders.c.id == order.id)
        .values(**values)
    )
