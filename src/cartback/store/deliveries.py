"""Delivery state: claiming due messages, attempts, outcomes, and the outbox listing.

A message is waiting for delivery while `message_delivery.next_attempt_at` is set; every final state
(sent, kept, failed, suppressed, unknown) clears it. Claims take a lease like enrollments do
(store/leases.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback.store import leases
from cartback.store.db import Tx
from cartback.store.messages import MESSAGE_COLUMNS, WITH_BODY, Message, from_row
from cartback.store.tables import ID, delivery_attempts, message_delivery, message_mime, messages

FINAL = ("sent", "kept", "failed", "suppressed", "unknown")


@dataclass(frozen=True)
class Pending:
    """A claimed message with its delivery row."""

    message: Message
    rfc_message_id: str
    transport: str
    attempts: int
    lease_owner: str | None
    mime: str | None


@dataclass(frozen=True)
class OutboxItem:
    message: Message
    rfc_message_id: str
    transport: str
    attempts: int
    mime: str | None


# Built once: every email step queues one, and building the statement costs more than running it.
_ENQUEUE = message_delivery.insert()


def rfc_message_id(message: Message) -> str:
    domain = message.from_email.rpartition("@")[2].strip(" >") or "cartback.invalid"
    return f"<{message.id}@{domain}>"


def enqueue(
    tx: Tx,
    message: Message,
    now: datetime,
    *,
    transport: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    hold: bool = False,
) -> str:
    """Hand `message` to delivery, in the transaction that creates it: queue it for its first attempt now
    (or, with `hold`, for none: a message kept unsent, which still holds its send's idempotency key) with
    its RFC Message-ID fixed before any attempt; return that Message-ID."""
    rfc_id = rfc_message_id(message)
    tx.execute(
        _ENQUEUE,
        dict(
            message_id=message.id,
            workspace_id=message.workspace_id,
            rfc_message_id=rfc_id,
            transport=transport,
            attempts=0,
            next_attempt_at=None if hold else now,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        ),
    )
    return rfc_id


def claim_due(tx: Tx, owner: str, now: datetime, *, lease: timedelta, limit: int) -> list[str]:
    """Lease up to `limit` messages due for an attempt to `owner`, oldest due first. An expired lease (its
    worker died, perhaps mid-send) is fair game: the sender then finds the open attempt and does not
    send again."""
    return leases.claim(tx, leases.MESSAGES, owner, now, lease=lease, limit=limit)


@dataclass(frozen=True)
class State:
    """What may have changed about a held message since it was read: read again in the write that starts
    its attempt."""

    status: str
    attempts: int
    # An attempt started and never recorded its outcome: the process stopped while that attempt was in
    # the hands of the transport.
    open_attempt: bool


# The held row's id as the subqueries of RETURNING see it. Spelt out: SQLAlchemy writes the columns of a
# RETURNING clause without their table for SQLite, and an unqualified `message_id` inside a subquery on
# delivery_attempts would be that table's own.
_HELD_ID = sa.literal_column("message_delivery.message_id", ID)
_OPEN_ATTEMPT = (
    sa.select(delivery_attempts.c.id)
    .where(
        delivery_attempts.c.message_id == _HELD_ID,
        delivery_attempts.c.outcome == "unknown",
        delivery_attempts.c.finished_at.is_(None),
    )
    .exists()
)
_STATUS = sa.select(messages.c.status).where(messages.c.id == _HELD_ID).scalar_subquery()
_HOLD = (
    message_delivery.update()
    .where(
        message_delivery.c.message_id.in_(sa.bindparam("ids", expanding=True)),
        leases.held_by(leases.MESSAGES, sa.bindparam("owner")),
        message_delivery.c.next_attempt_at.is_not(None),
    )
    .values(lease_until=sa.bindparam("until"))
    .returning(
        message_delivery.c.message_id,
        _STATUS.label("status"),
        message_delivery.c.attempts,
        _OPEN_ATTEMPT.label("open"),
    )
)


def hold(tx: Tx, message_ids: list[str], owner: str, until: datetime) -> dict[str, State]:
    """Extend `owner`'s lease on claimed messages; the state of those it still holds, in the same
    statement. A message missing from the answer was taken by another worker meanwhile (our lease expired)
    and must be left alone. On PostgreSQL the UPDATE also locks the rows until commit, so a concurrent
    claim cannot slip in between."""
    if not message_ids:
        return {}
    rows = tx.execute(_HOLD, {"ids": message_ids, "owner": owner, "until": until})
    return {r.message_id: State(r.status, int(r.attempts), bool(r.open)) for r in rows}


_WITH_DELIVERY = WITH_BODY.join(message_delivery, message_delivery.c.message_id == messages.c.id)
_WITH_MIME = _WITH_DELIVERY.outerjoin(message_mime, message_mime.c.message_id == messages.c.id)
_PENDING = sa.select(
    *MESSAGE_COLUMNS,
    message_delivery.c.rfc_message_id,
    message_delivery.c.transport,
    message_delivery.c.attempts,
    message_delivery.c.lease_owner,
    message_mime.c.mime,
).select_from(_WITH_MIME)


def _pending(row: Row[Any]) -> Pending:
    return Pending(
        from_row(row), row.rfc_message_id, row.transport, int(row.attempts), row.lease_owner, row.mime
    )


def load_many(tx: Tx, message_ids: list[str]) -> list[Pending]:
    """The claimed messages in one query, in the order given (missing ones left out)."""
    rows = tx.execute(_PENDING.where(messages.c.id.in_(message_ids))).all()
    by_id = {r.id: _pending(r) for r in rows}
    return [by_id[i] for i in message_ids if i in by_id]


@dataclass(frozen=True)
class Start:
    """An attempt about to be handed to the transport."""

    message: Message
    attempt_id: str
    attempt: int
    # The MIME to keep, so a retry sends the very same bytes; None when one is kept already.
    mime: str | None


_INSERT_ATTEMPT = delivery_attempts.insert()
_INSERT_MIME = message_mime.insert()
_COUNT_ATTEMPT = (
    message_delivery.update()
    .where(message_delivery.c.message_id == sa.bindparam("b_message_id"))
    .values(attempts=sa.bindparam("b_attempt"), transport=sa.bindparam("b_transport"))
)
_SENDING = (
    messages.update()
    .where(messages.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(status="sending", updated_at=sa.bindparam("now"))
)


def start_attempts(tx: Tx, starts: list[Start], now: datetime, *, transport: str) -> None:
    """Record attempts with outcome `unknown` and no `finished_at` (until the transport answers), count
    them, keep the MIME of first attempts, and set their messages `sending`: four statements however many
    there are."""
    if not starts:
        return
    tx.execute(
        _INSERT_ATTEMPT,
        [
            {
                "id": s.attempt_id,
                "workspace_id": s.message.workspace_id,
                "message_id": s.message.id,
                "attempt": s.attempt,
                "outcome": "unknown",
                "started_at": now,
                "finished_at": None,
            }
            for s in starts
        ],
    )
    kept = [
        {"message_id": s.message.id, "workspace_id": s.message.workspace_id, "mime": s.mime}
        for s in starts
        if s.mime is not None
    ]
    if kept:
        tx.execute(_INSERT_MIME, kept)
    tx.execute(
        _COUNT_ATTEMPT,
        [{"b_message_id": s.message.id, "b_attempt": s.attempt, "b_transport": transport} for s in starts],
    )
    tx.execute(_SENDING, {"ids": [s.message.id for s in starts], "now": now})


@dataclass(frozen=True)
class Outcome:
    """What became of an attempt, and so of its message."""

    message_id: str
    attempt_id: str
    outcome: str  # the attempt's: sent, kept, deferred, failed, unknown
    status: str  # the message's
    code: int | None
    detail: str | None
    error: str | None
    at: datetime
    # When to try again; None takes the message off the queue.
    retry_at: datetime | None = None


_FINISH_ATTEMPT = (
    delivery_attempts.update()
    .where(delivery_attempts.c.id == sa.bindparam("b_id"))
    .values(
        outcome=sa.bindparam("b_outcome"),
        smtp_code=sa.bindparam("b_code"),
        detail=sa.bindparam("b_detail"),
        finished_at=sa.bindparam("b_at"),
    )
)
_MESSAGE_STATUS = (
    messages.update()
    .where(messages.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        updated_at=sa.bindparam("b_at"),
        error=sa.bindparam("b_error"),
        sent_at=sa.func.coalesce(
            sa.bindparam("b_sent_at", type_=messages.c.sent_at.type), messages.c.sent_at
        ),
    )
)
_NEXT_ATTEMPT = (
    message_delivery.update()
    .where(message_delivery.c.message_id == sa.bindparam("b_id"))
    .values(next_attempt_at=sa.bindparam("b_next"), **leases.RELEASED)
)


def record_outcomes(tx: Tx, outcomes: list[Outcome]) -> set[str]:
    """Finish the attempts, set their messages' status, and either schedule the next attempt or take the
    message off the queue (lease released either way): three statements however many there are. Returns
    the ids of the messages that still exist (a deleted workspace takes its messages with it): all of
    them when every status update found its row, the usual case, else a fourth statement asks."""
    if not outcomes:
        return set()
    updated = tx.execute(
        _MESSAGE_STATUS,
        [
            {
                "b_id": o.message_id,
                "b_status": o.status,
                "b_at": o.at,
                "b_error": o.error,
                "b_sent_at": o.at if o.status == "sent" else None,
            }
            for o in outcomes
        ],
    ).rowcount
    ids = [o.message_id for o in outcomes]
    present = set(ids) if updated == len(outcomes) else _present(tx, ids)
    tx.execute(
        _FINISH_ATTEMPT,
        [
            {
                "b_id": o.attempt_id,
                "b_outcome": o.outcome,
                "b_code": o.code,
                "b_detail": o.detail,
                "b_at": o.at,
            }
            for o in outcomes
        ],
    )
    tx.execute(_NEXT_ATTEMPT, [{"b_id": o.message_id, "b_next": o.retry_at} for o in outcomes])
    return present


def _present(tx: Tx, message_ids: list[str]) -> set[str]:
    return set(tx.execute(_PRESENT, {"ids": message_ids}).scalars())


_PRESENT = sa.select(messages.c.id).where(messages.c.id.in_(sa.bindparam("ids", expanding=True)))


def set_status(tx: Tx, message_id: str, status: str, now: datetime, *, error: str | None = None) -> None:
    tx.execute(
        messages.update()
        .where(messages.c.id == message_id)
        .values(status=status, updated_at=now, error=error)
    )


def finish(tx: Tx, message_id: str) -> None:
    """No further attempts: off the queue, lease released."""
    tx.execute(
        message_delivery.update()
        .where(message_delivery.c.message_id == message_id)
        .values(next_attempt_at=None, **leases.RELEASED)
    )


def count_by_status(tx: Tx, workspace_id: str | None = None) -> dict[str, int]:
    query = sa.select(messages.c.status, sa.func.count()).group_by(messages.c.status)
    if workspace_id is not None:
        query = query.where(messages.c.workspace_id == workspace_id)
    return {status: int(n) for status, n in tx.execute(query).all()}


_OUTBOX_COLUMNS = (
    message_delivery.c.rfc_message_id,
    message_delivery.c.transport,
    message_delivery.c.attempts,
)


def outbox(
    tx: Tx,
    workspace_id: str,
    *,
    status: str | None = None,
    email: str | None = None,
    sequence_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[OutboxItem], int]:
    """Messages handed to delivery, newest first, without their MIME."""
    where = [messages.c.workspace_id == workspace_id]
    if status:
        where.append(messages.c.status == status)
    if email:
        where.append(sa.func.lower(messages.c.to_email) == email.strip().lower())
    if sequence_id:
        where.append(messages.c.sequence_id == sequence_id)
    joined = messages.join(message_delivery, message_delivery.c.message_id == messages.c.id)
    total = tx.execute(sa.select(sa.func.count()).select_from(joined).where(*where)).scalar_one()
    rows = tx.execute(
        sa.select(*MESSAGE_COLUMNS, *_OUTBOX_COLUMNS)
        .select_from(_WITH_DELIVERY)
        .where(*where)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    items = [OutboxItem(from_row(r), r.rfc_message_id, r.transport, int(r.attempts), None) for r in rows]
    return items, int(total)


def outbox_item(tx: Tx, workspace_id: str, message_id: str) -> OutboxItem | None:
    row = tx.execute(
        sa.select(*MESSAGE_COLUMNS, *_OUTBOX_COLUMNS, message_mime.c.mime)
        .select_from(_WITH_MIME)
        .where(messages.c.workspace_id == workspace_id, messages.c.id == message_id)
    ).first()
    if row is None:
        return None
    return OutboxItem(from_row(row), row.rfc_message_id, row.transport, int(row.attempts), row.mime)


def attempts_of(tx: Tx, message_id: str) -> list[dict[str, Any]]:
    rows = tx.execute(
        sa.select(delivery_attempts)
        .where(delivery_attempts.c.message_id == message_id)
        .order_by(delivery_attempts.c.attempt)
    ).all()
    return [dict(r._mapping) for r in rows]


def stamp(tx: Tx, message_id: str, column: str, now: datetime) -> None:
    """Record the first open (`opened_at`) or click (`clicked_at`) of a message; later ones keep it."""
    if column not in ("opened_at", "clicked_at"):
        raise ValueError(f"not a tracking column: {column!r}")
    tx.execute(
        message_delivery.update()
        .where(message_delivery.c.message_id == message_id, message_delivery.c[column].is_(None))
        .values({column: now})
    )


def last_attempt(tx: Tx, workspace_id: str) -> dict[str, Any] | None:
    """The workspace's latest delivery attempt (ids sort by time), or None before its first."""
    row = tx.execute(
        sa.select(delivery_attempts)
        .where(delivery_attempts.c.workspace_id == workspace_id)
        .order_by(delivery_attempts.c.id.desc())
        .limit(1)
    ).first()
    return dict(row._mapping) if row is not None else None
