"""The queries behind core/analytics, the one read model of every figure (docs/analytics.md): per workspace
and period, each one indexed query that the database counts per interval (and sequence, and step), so a
report reads a few hundred rows however many emails, checkouts and runs it covers: sequence emails sent,
delivered, opened and clicked; suppression events naming one of them; checkouts and runs started; and the
attributed orders with what they are worth now (few enough to read one by one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback import statuses
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

# Ids bound in one IN (...): well under SQLite's limit on bound values.
_IDS_PER_QUERY = 1000


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


def _bucket(column: Any, starts: list[datetime]) -> Any:
    """The index of the interval holding `column`, given the intervals' start times (ascending), as a
    CASE the database evaluates, so rows are counted where they are instead of being read out one by one.
    The CASEs nest as a binary search: a row costs log2(intervals) comparisons, not one per interval.
    Without intervals, every row is in interval 0."""

    def within(low: int, high: int) -> Any:  # the index, known to be in [low, high)
        if high - low <= 1:
            return sa.literal(low)
        middle = (low + high) // 2
        return sa.case((column < starts[middle], within(low, middle)), else_=within(middle, high))

    return within(0, max(len(starts), 1))


@dataclass(frozen=True)
class MailCounts:
    """Sequence emails of one interval and step."""

    bucket: int
    sequence_id: str
    node_id: str | None
    sent: int
    delivered: int
    opened: int
    clicked: int


def mail_per_step(
    tx: Tx,
    workspace_id: str,
    start: datetime,
    end: datetime,
    starts: list[datetime],
    sequence_id: str | None = None,
) -> list[MailCounts]:
    """Sequence emails created in [start, end), per interval and step: handed to the transport
    (statuses.HANDED), delivered (statuses.DELIVERED), and opened or clicked at least once. Counted by the
    database on the (workspace_id, created_at) or (workspace_id, sequence_id, created_at) index."""
    bucket = _bucket(messages.c.created_at, starts).label("bucket")
    handed = sa.func.sum(sa.case((messages.c.status.in_(statuses.values(statuses.HANDED)), 1), else_=0))
    delivered = sa.func.sum(sa.case((messages.c.status.in_(statuses.values(statuses.DELIVERED)), 1), else_=0))
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
            bucket,
            messages.c.sequence_id,
            messages.c.node_id,
            handed,
            delivered,
            sa.func.count(message_delivery.c.opened_at),
            sa.func.count(message_delivery.c.clicked_at),
        )
        .select_from(messages.outerjoin(message_delivery, message_delivery.c.message_id == messages.c.id))
        .where(*where)
        .group_by(bucket, messages.c.sequence_id, messages.c.node_id)
    ).all()
    return [
        MailCounts(int(r[0]), str(r[1]), r[2], int(r[3] or 0), int(r[4] or 0), int(r[5]), int(r[6]))
        for r in rows
    ]


def message_events_per_step(
    tx: Tx,
    workspace_id: str,
    names: list[str],
    start: datetime,
    end: datetime,
    starts: list[datetime],
    sequence_id: str | None = None,
) -> list[tuple[int, str, str | None, str, int]]:
    """(interval, sequence id, node id, event name, events) of the events of these names (unsubscribes,
    bounces, complaints carry the message they came from) that name a sequence email created in
    [start, end), in the interval of that email. An event cannot precede its email, so only events since
    `start` are read, on the (workspace_id, name, occurred_at) index; then the emails they name, by id.
    (One join would let the database start from the emails and read every event for each.)"""
    found = tx.execute(
        sa.select(events.c.name, events.c.properties["messageId"].as_string()).where(
            events.c.workspace_id == workspace_id, events.c.name.in_(names), events.c.occurred_at >= start
        )
    ).all()
    per_message: dict[str, dict[str, int]] = {}
    for name, message_id in found:
        if message_id:
            slot = per_message.setdefault(message_id, {})
            slot[name] = slot.get(name, 0) + 1
    bucket = _bucket(messages.c.created_at, starts).label("bucket")
    where = [
        messages.c.workspace_id == workspace_id,
        messages.c.created_at >= start,
        messages.c.created_at < end,
        messages.c.sequence_id.is_not(None),
    ]
    if sequence_id is not None:
        where.append(messages.c.sequence_id == sequence_id)
    counts: dict[tuple[int, str, str | None, str], int] = {}
    ids = sorted(per_message)
    for i in range(0, len(ids), _IDS_PER_QUERY):
        rows = tx.execute(
            sa.select(messages.c.id, bucket, messages.c.sequence_id, messages.c.node_id).where(
                *where, messages.c.id.in_(ids[i : i + _IDS_PER_QUERY])
            )
        ).all()
        for message_id, b, seq, node in rows:
            for name, n in per_message[message_id].items():
                key = (int(b), str(seq), node, name)
                counts[key] = counts.get(key, 0) + n
    return [(*key, n) for key, n in counts.items()]


def checkouts_per_interval(
    tx: Tx,
    workspace_id: str,
    start: datetime,
    end: datetime,
    starts: list[datetime],
    *,
    abandoned: bool = False,
) -> dict[int, int]:
    """Checkouts started in [start, end), per interval, from the (workspace_id, created_at) index. With
    `abandoned`, only those no order completed on its own: no order names them yet, or the order that
    does was attributed to an email (recovered)."""
    bucket = _bucket(checkouts.c.created_at, starts).label("bucket")
    where = [
        checkouts.c.workspace_id == workspace_id,
        checkouts.c.created_at >= start,
        checkouts.c.created_at < end,
    ]
    if abandoned:
        recovered = sa.select(attributions.c.order_id).where(attributions.c.workspace_id == workspace_id)
        where.append(sa.or_(checkouts.c.order_id.is_(None), checkouts.c.order_id.in_(recovered)))
    rows = tx.execute(sa.select(bucket, sa.func.count()).where(*where).group_by(bucket)).all()
    return {int(b): int(n) for b, n in rows}


def clicked_emails_with_orders(tx: Tx, workspace_id: str, start: datetime, end: datetime) -> int:
    """Sequence emails created in [start, end), handed to the transport and clicked, that an order was
    attributed to: the funnel's "Ordered", a part of its "Clicked"."""
    return int(
        tx.execute(
            sa.select(sa.func.count(sa.distinct(messages.c.id)))
            .select_from(
                messages.join(message_delivery, message_delivery.c.message_id == messages.c.id).join(
                    attributions,
                    sa.and_(
                        attributions.c.workspace_id == messages.c.workspace_id,
                        attributions.c.message_id == messages.c.id,
                    ),
                )
            )
            .where(
                messages.c.workspace_id == workspace_id,
                messages.c.created_at >= start,
                messages.c.created_at < end,
                messages.c.sequence_id.is_not(None),
                messages.c.status.in_(statuses.values(statuses.HANDED)),
                message_delivery.c.clicked_at.is_not(None),
            )
        ).scalar_one()
    )


def runs_per_interval(
    tx: Tx,
    workspace_id: str,
    start: datetime,
    end: datetime,
    starts: list[datetime],
    sequence_id: str | None = None,
) -> list[tuple[int, str, int]]:
    """(interval, sequence id, enrollments started), from the (workspace_id, created_at, sequence_id)
    index."""
    bucket = _bucket(enrollments.c.created_at, starts).label("bucket")
    where = [
        enrollments.c.workspace_id == workspace_id,
        enrollments.c.created_at >= start,
        enrollments.c.created_at < end,
    ]
    if sequence_id is not None:
        where.append(enrollments.c.sequence_id == sequence_id)
    rows = tx.execute(
        sa.select(bucket, enrollments.c.sequence_id, sa.func.count())
        .where(*where)
        .group_by(bucket, enrollments.c.sequence_id)
    ).all()
    return [(int(b), str(s), int(n)) for b, s, n in rows]


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
