"""Attributions (one per attributed order) and the reads attribution needs: a subscriber's recent email
touches, each with the sequence, step and enrollment of its message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback.store import events as event_store
from cartback.store.db import Tx
from cartback.store.tables import attributions, enrollments, events, messages

# Log events that are touches, and the kind each is.
TOUCH_EVENTS = {"email.clicked": "click", "email.opened": "open", "email.sent": "receipt"}


@dataclass(frozen=True)
class Touch:
    kind: str
    at: datetime
    message_id: str
    sequence_id: str
    enrollment_id: str | None
    node_id: str | None
    # The checkoutId of the event that enrolled the message's enrollment.
    checkout_id: str | None


@dataclass(frozen=True)
class Attribution:
    id: str
    workspace_id: str
    order_id: str
    order_event_id: str
    subscriber_id: str
    sequence_id: str
    enrollment_id: str | None
    message_id: str
    node_id: str | None
    kind: str
    touched_at: datetime
    ordered_at: datetime
    amount_cents: int
    currency: str
    attributed_at: datetime
    # The order event's value (major units), for metric aggregates.
    value: float | None = None


_COLUMNS = list(Attribution.__dataclass_fields__)


def exists(tx: Tx, workspace_id: str, order_id: str) -> bool:
    query = sa.select(attributions.c.id).where(
        attributions.c.workspace_id == workspace_id, attributions.c.order_id == order_id
    )
    return tx.execute(query).first() is not None


def insert(tx: Tx, row: Attribution) -> None:
    values = {n: getattr(row, n) for n in _COLUMNS}
    tx.execute(
        attributions.insert().values(**values, subscriber_key=event_store.subscriber_key(row.subscriber_id))
    )


def for_order(tx: Tx, workspace_id: str, order_id: str) -> Attribution | None:
    row = tx.execute(
        sa.select(attributions).where(
            attributions.c.workspace_id == workspace_id, attributions.c.order_id == order_id
        )
    ).first()
    return None if row is None else Attribution(**{n: getattr(row, n) for n in _COLUMNS})


def for_order_events(tx: Tx, workspace_id: str, event_ids: list[str]) -> list[Attribution]:
    """The attributions of these order events (at most one each), by the order_event_id index."""
    if not event_ids:
        return []
    rows = tx.execute(
        sa.select(attributions)
        .where(attributions.c.workspace_id == workspace_id, attributions.c.order_event_id.in_(event_ids))
        .order_by(attributions.c.id)
    ).all()
    return [Attribution(**{n: getattr(row, n) for n in _COLUMNS}) for row in rows]


def touches(tx: Tx, workspace_id: str, subscriber_id: str, since: datetime, until: datetime) -> list[Touch]:
    """The subscriber's clicks, opens and receipts of sequence emails between `since` and `until`
    (inclusive): three small indexed reads (events by subscriber and time, their messages, their
    enrollments)."""
    rows = tx.execute(
        sa.select(events.c.name, events.c.occurred_at, events.c.properties).where(
            events.c.workspace_id == workspace_id,
            events.c.subscriber_id == subscriber_id,
            events.c.occurred_at >= since,
            events.c.occurred_at <= until,
            events.c.name.in_(list(TOUCH_EVENTS)),
        )
    ).all()
    seen = [(TOUCH_EVENTS[r.name], r.occurred_at, r.properties.get("messageId")) for r in rows]
    message_ids = {m for _, _, m in seen if isinstance(m, str)}
    if not message_ids:
        return []
    sent = {
        r.id: r
        for r in tx.execute(
            sa.select(
                messages.c.id, messages.c.sequence_id, messages.c.enrollment_id, messages.c.node_id
            ).where(
                messages.c.workspace_id == workspace_id,
                messages.c.id.in_(message_ids),
                messages.c.sequence_id.is_not(None),
            )
        ).all()
    }
    enrollment_ids = {r.enrollment_id for r in sent.values() if r.enrollment_id}
    checkouts: dict[str, Any] = {}
    if enrollment_ids:
        for r in tx.execute(
            sa.select(enrollments.c.id, enrollments.c.context).where(
                enrollments.c.workspace_id == workspace_id, enrollments.c.id.in_(enrollment_ids)
            )
        ).all():
            entry = (r.context or {}).get("event") or {}
            checkouts[r.id] = entry.get("checkoutId")
    out = []
    for kind, at, message_id in seen:
        message = sent.get(message_id) if isinstance(message_id, str) else None
        if message is None:
            continue
        checkout = checkouts.get(message.enrollment_id) if message.enrollment_id else None
        out.append(
            Touch(
                kind=kind,
                at=at,
                message_id=message.id,
                sequence_id=message.sequence_id,
                enrollment_id=message.enrollment_id,
                node_id=message.node_id,
                checkout_id=str(checkout) if checkout not in (None, "") else None,
            )
        )
    return out
