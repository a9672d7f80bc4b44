"""Read-only aggregates for the dashboard. Every query is scoped by workspace and bounded by a time range,
so each runs on an index (workspace_id, time) and costs the same on a large workspace as on a small one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import checkouts, messages, orders, sequences, subscribers


@dataclass(frozen=True)
class Totals:
    checkouts_started: int
    orders_placed: int
    emails_sent: int
    new_subscribers: int
    live_sequences: int


def _count(tx: Tx, query: sa.Select[Any]) -> int:
    return int(tx.execute(query).scalar_one())


def totals(tx: Tx, workspace_id: str, start: datetime, end: datetime) -> Totals:
    count = sa.func.count()
    return Totals(
        checkouts_started=_count(
            tx,
            sa.select(count).where(
                checkouts.c.workspace_id == workspace_id,
                checkouts.c.created_at >= start,
                checkouts.c.created_at < end,
            ),
        ),
        orders_placed=_count(
            tx,
            sa.select(count).where(
                orders.c.workspace_id == workspace_id,
                orders.c.ordered_at >= start,
                orders.c.ordered_at < end,
            ),
        ),
        emails_sent=_count(
            tx,
            sa.select(count).where(
                messages.c.workspace_id == workspace_id,
                messages.c.status == "sent",
                messages.c.sent_at >= start,
                messages.c.sent_at < end,
            ),
        ),
        new_subscribers=_count(
            tx,
            sa.select(count).where(
                subscribers.c.workspace_id == workspace_id,
                subscribers.c.created_at >= start,
                subscribers.c.created_at < end,
            ),
        ),
        live_sequences=_count(
            tx,
            sa.select(count).where(sequences.c.workspace_id == workspace_id, sequences.c.status == "active"),
        ),
    )
