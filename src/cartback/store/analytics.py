"""The facts analytics reports are built from, each read in one indexed query per workspace and period:
sequence emails with their first open and click, suppression events naming a message, checkouts and
enrollments started, and attributed orders with what they are worth now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import (
    attributions,
    checkouts,
    enrollments,
    events,
    message_delivery,
    messages,
    orders,
    sequences,
)


@dataclass(frozen=True)
class EmailFact:
    message_id: str
    sequence_id: str
    node_id: str | None
    status: str
    created_at: datetime
    opened_at: datetime | None
    clicked_at: datetime | None


@dataclass(frozen=True)
class RecoveredOrder:
    order_id: str
    sequence_id: str
    node_id: str | None
    kind: str
    ordered_at: datetime
    currency: str
    status: str
    total_cents: int
    refund_amount_cents: int


def emails(
    tx: Tx, workspace_id: str, start: datetime, end: datetime, sequence_id: str | None = None
) -> list[EmailFact]:
    """Sequence emails created in [start, end), with the first open and click of each."""
    where = [
        messages.c.workspace_id == workspace_id,
        messages.c.created_at >= start,
        messages.c.created_at < end,
        messages.c.sequence_id.is_not(None),
    ]
    if sequence_id is not None:
        where.append(messages.c.sequence_id == sequence_id)
    rows = tx.execute(
        sa.select(
            messages.c.id,
            messages.c.sequence_id,
            messages.c.node_id,
            messages.c.status,
            messages.c.created_at,
            message_delivery.c.opened_at,
            message_delivery.c.clicked_at,
        )
        .select_from(messages.outerjoin(message_delivery, message_delivery.c.message_id == messages.c.id))
        .where(*where)
    ).all()
    return [EmailFact(*row) for row in rows]


def message_events(tx: Tx, workspace_id: str, names: list[str], since: datetime) -> list[tuple[str, Any]]:
    """(name, messageId) of the events of these names since `since` (unsubscribes, bounces, complaints
    carry the message they came from, when known)."""
    rows = tx.execute(
        sa.select(events.c.name, events.c.properties).where(
            events.c.workspace_id == workspace_id, events.c.name.in_(names), events.c.occurred_at >= since
        )
    ).all()
    return [(r.name, (r.properties or {}).get("messageId")) for r in rows]


def checkouts_started(tx: Tx, workspace_id: str, start: datetime, end: datetime) -> list[datetime]:
    rows = tx.execute(
        sa.select(checkouts.c.created_at).where(
            checkouts.c.workspace_id == workspace_id,
            checkouts.c.created_at >= start,
            checkouts.c.created_at < end,
        )
    ).all()
    return [r[0] for r in rows]


def enrollments_started(
    tx: Tx, workspace_id: str, start: datetime, end: datetime, sequence_id: str | None = None
) -> list[tuple[str, datetime]]:
    where = [
        enrollments.c.workspace_id == workspace_id,
        enrollments.c.created_at >= start,
        enrollments.c.created_at < end,
    ]
    if sequence_id is not None:
        where.append(enrollments.c.sequence_id == sequence_id)
    rows = tx.execute(sa.select(enrollments.c.sequence_id, enrollments.c.created_at).where(*where)).all()
    return [(r[0], r[1]) for r in rows]


def recovered_orders(
    tx: Tx, workspace_id: str, start: datetime, end: datetime, sequence_id: str | None = None
) -> list[RecoveredOrder]:
    """Attributed orders placed in [start, end), with their current status, total and refund."""
    where = [
        attributions.c.workspace_id == workspace_id,
        attributions.c.ordered_at >= start,
        attributions.c.ordered_at < end,
    ]
    if sequence_id is not None:
        where.append(attributions.c.sequence_id == sequence_id)
    joined = attributions.join(
        orders,
        sa.and_(
            orders.c.workspace_id == attributions.c.workspace_id, orders.c.order_id == attributions.c.order_id
        ),
    )
    rows = tx.execute(
        sa.select(
            attributions.c.order_id,
            attributions.c.sequence_id,
            attributions.c.node_id,
            attributions.c.kind,
            attributions.c.ordered_at,
            orders.c.currency,
            orders.c.status,
            orders.c.total_cents,
            orders.c.refund_amount_cents,
        )
        .select_from(joined)
        .where(*where)
    ).all()
    return [RecoveredOrder(*row) for row in rows]


def sequence_names(tx: Tx, workspace_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """id -> (name, definition) of the workspace's sequences."""
    rows = tx.execute(
        sa.select(sequences.c.id, sequences.c.name, sequences.c.definition).where(
            sequences.c.workspace_id == workspace_id
        )
    ).all()
    return {r.id: (r.name, r.definition) for r in rows}
