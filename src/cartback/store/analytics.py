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
    subscribers,
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
    message_id: str
    enrollment_id: str | None
    subscriber_id: str


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
    kept: int
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
    (statuses.HANDED), delivered (statuses.DELIVERED), kept in the outbox (statuses.KEPT: no mail server
    had them, so they are in neither), and opened or clicked at least once. Counted by the
    database on the (workspace_id, created_at) or (workspace_id, sequence_id, created_at) index."""
    bucket = _bucket(messages.c.created_at, starts).label("bucket")
    handed = sa.func.sum(sa.case((messages.c.status.in_(statuses.values(statuses.HANDED)), 1), else_=0))
    delivered = sa.func.sum(sa.case((messages.c.status.in_(statuses.values(statuses.DELIVERED)), 1), else_=0))
    kept = sa.func.sum(sa.case((messages.c.status.in_(statuses.values(statuses.KEPT)), 1), else_=0))
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
            kept,
            sa.func.count(message_delivery.c.opened_at),
            sa.func.count(message_delivery.c.clicked_at),
        )
        .select_from(messages.outerjoin(message_delivery, message_delivery.c.message_id == messages.c.id))
        .where(*where)
        .group_by(bucket, messages.c.sequence_id, messages.c.node_id)
    ).all()
    return [
        MailCounts(
            int(r[0]), str(r[1]), r[2], int(r[3] or 0), int(r[4] or 0), int(r[5] or 0), int(r[6]), int(r[7])
        )
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
        where.append(_abandoned(workspace_id))
    rows = tx.execute(sa.select(bucket, sa.func.count()).where(*where).group_by(bucket)).all()
    return {int(b): int(n) for b, n in rows}


def _abandoned(workspace_id: str) -> Any:
    """A checkout no order completed on its own: no order names it yet, or the order that does was
    attributed to an email (the overview's "Abandoned", and the rows of the abandoned checkouts page)."""
    recovered = sa.select(attributions.c.order_id).where(attributions.c.workspace_id == workspace_id)
    return sa.or_(checkouts.c.order_id.is_(None), checkouts.c.order_id.in_(recovered))


@dataclass(frozen=True)
class AbandonedCheckout:
    checkout_id: str
    created_at: datetime
    currency: str | None
    total_cents: int | None
    checkout_url: str | None
    items: list[dict[str, Any]]
    order_id: str | None
    subscriber_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    # Sequence emails handed to the mail server for the runs this checkout started (statuses.HANDED).
    emails_sent: int
    # ...and those kept in the outbox because no mail server is set (statuses.KEPT): never delivered.
    emails_kept: int = 0


def abandoned_checkouts(
    tx: Tx, workspace_id: str, *, limit: int, offset: int
) -> tuple[list[AbandonedCheckout], int]:
    """A page of the workspace's abandoned checkouts (the overview's "Abandoned", of all time), newest
    first, with their customer and how many emails went out for them; and how many there are."""
    where = [checkouts.c.workspace_id == workspace_id, _abandoned(workspace_id)]
    total = int(tx.execute(sa.select(sa.func.count()).select_from(checkouts).where(*where)).scalar_one())
    people = sa.and_(
        subscribers.c.workspace_id == checkouts.c.workspace_id, subscribers.c.id == checkouts.c.subscriber_id
    )
    rows = tx.execute(
        sa.select(
            checkouts.c.checkout_id,
            checkouts.c.created_at,
            checkouts.c.currency,
            checkouts.c.total_cents,
            checkouts.c.checkout_url,
            checkouts.c["items"],
            checkouts.c.order_id,
            checkouts.c.subscriber_id,
            subscribers.c.email,
            subscribers.c.first_name,
            subscribers.c.last_name,
            checkouts.c.event_id,
        )
        .select_from(checkouts.outerjoin(subscribers, people))
        .where(*where)
        .order_by(checkouts.c.created_at.desc(), checkouts.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    sent: dict[str, int] = {}
    kept: dict[str, int] = {}
    if rows:
        counted = tx.execute(
            sa.select(enrollments.c.trigger_event_id, messages.c.status, sa.func.count(messages.c.id))
            .select_from(
                messages.join(
                    enrollments,
                    sa.and_(
                        enrollments.c.workspace_id == messages.c.workspace_id,
                        enrollments.c.id == messages.c.enrollment_id,
                    ),
                )
            )
            .where(
                messages.c.workspace_id == workspace_id,
                enrollments.c.trigger_event_id.in_([r.event_id for r in rows]),
                messages.c.sequence_id.is_not(None),
                messages.c.status.in_(statuses.values(statuses.HANDED | statuses.KEPT)),
            )
            .group_by(enrollments.c.trigger_event_id, messages.c.status)
        ).all()
        for event_id, status, n in counted:
            into = kept if status in statuses.KEPT else sent
            into[str(event_id)] = into.get(str(event_id), 0) + int(n)
    return [
        AbandonedCheckout(
            checkout_id=r.checkout_id,
            created_at=r.created_at,
            currency=r.currency,
            total_cents=r.total_cents,
            checkout_url=r.checkout_url,
            items=r._mapping["items"],
            order_id=r.order_id,
            subscriber_id=r.subscriber_id,
            email=r.email,
            first_name=r.first_name,
            last_name=r.last_name,
            emails_sent=sent.get(r.event_id, 0),
            emails_kept=kept.get(r.event_id, 0),
        )
        for r in rows
    ], total


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
    tx: Tx,
    workspace_id: str,
    start: datetime,
    end: datetime,
    sequence_id: str | None = None,
    *,
    subscriber_id: str | None = None,
    message_id: str | None = None,
    order_ids: list[str] | None = None,
) -> list[RecoveredOrder]:
    """Attributed orders placed in [start, end), with their current status, total and refund; only a
    sequence's, a person's, one email's or the named orders' if asked."""
    where = [
        attributions.c.workspace_id == workspace_id,
        attributions.c.ordered_at >= start,
        attributions.c.ordered_at < end,
    ]
    if sequence_id is not None:
        where.append(attributions.c.sequence_id == sequence_id)
    if subscriber_id is not None:
        where.append(attributions.c.subscriber_id == subscriber_id)
    if message_id is not None:
        where.append(attributions.c.message_id == message_id)
    if order_ids is not None:
        where.append(attributions.c.order_id.in_(order_ids))
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
            attributions.c.message_id,
            attributions.c.enrollment_id,
            attributions.c.subscriber_id,
        )
        .select_from(joined)
        .where(*where)
    ).all()
    return [RecoveredOrder(**row._mapping) for row in rows]


def sequence_names(tx: Tx, workspace_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """id -> (name, definition) of the workspace's sequences."""
    rows = tx.execute(
        sa.select(sequences.c.id, sequences.c.name, sequences.c.definition).where(
            sequences.c.workspace_id == workspace_id
        )
    ).all()
    return {r.id: (r.name, r.definition) for r in rows}
