"""Delivery state: claiming due messages, attempts, outcomes, and the outbox listing.

A message is waiting for delivery while `message_delivery.next_attempt_at` is set; every final state
(sent, failed, suppressed, unknown) clears it. Claims take a lease like enrollments do (store/timers.py):
PostgreSQL lets several workers claim at once with SKIP LOCKED; SQLite's single writer serialises claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback import ids
from cartback.store.db import Tx
from cartback.store.messages import Message
from cartback.store.tables import delivery_attempts, message_delivery, messages

FINAL = ("sent", "failed", "suppressed", "unknown")
_MESSAGE_FIELDS = list(Message.__dataclass_fields__)


def message_from_row(row: Row[Any]) -> Message:
    return Message(**{n: getattr(row, n) for n in _MESSAGE_FIELDS})


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


def claim_due(tx: Tx, owner: str, now: datetime, *, lease: timedelta, limit: int) -> list[str]:
    """Lease up to `limit` messages due for an attempt to `owner`, oldest due first. An expired lease (its
    worker died, perhaps mid-send) is fair game: the sender then finds the open attempt and does not
    send again."""
    due = (
        sa.select(message_delivery.c.message_id)
        .where(
            message_delivery.c.next_attempt_at <= now,
            sa.or_(message_delivery.c.lease_until.is_(None), message_delivery.c.lease_until < now),
        )
        .order_by(message_delivery.c.next_attempt_at)
        .limit(limit)
    )
    if tx.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    found = list(tx.execute(due).scalars())
    if found:
        tx.execute(
            message_delivery.update()
            .where(message_delivery.c.message_id.in_(found))
            .values(lease_owner=owner, lease_until=now + lease)
        )
    return found


def hold(tx: Tx, message_id: str, owner: str, until: datetime) -> bool:
    """Extend `owner`'s lease on a claimed message; False if another worker took it meanwhile (ours
    expired), in which case this worker must leave the message alone. On PostgreSQL the UPDATE also locks
    the row until commit, so a concurrent claim cannot slip in between."""
    result = tx.execute(
        message_delivery.update()
        .where(
            message_delivery.c.message_id == message_id,
            message_delivery.c.lease_owner == owner,
            message_delivery.c.next_attempt_at.is_not(None),
        )
        .values(lease_until=until)
    )
    return result.rowcount == 1


_PENDING = sa.select(
    messages,
    message_delivery.c.rfc_message_id,
    message_delivery.c.transport,
    message_delivery.c.attempts,
    message_delivery.c.lease_owner,
    message_delivery.c.mime,
).join(message_delivery, message_delivery.c.message_id == messages.c.id)


def _pending(row: Row[Any]) -> Pending:
    return Pending(
        message_from_row(row), row.rfc_message_id, row.transport, int(row.attempts), row.lease_owner, row.mime
    )


# The same without the bodies and the MIME (both tens of KB), for the writes around a send.
_LIGHT = sa.select(
    *[c for c in messages.c if c.name not in ("html", "text")],
    sa.null().label("html"),
    sa.null().label("text"),
    message_delivery.c.rfc_message_id,
    message_delivery.c.transport,
    message_delivery.c.attempts,
    message_delivery.c.lease_owner,
    sa.case((message_delivery.c.mime.is_(None), None), else_="(kept)").label("mime"),
).join(message_delivery, message_delivery.c.message_id == messages.c.id)


def load(tx: Tx, message_id: str, *, bodies: bool = True) -> Pending | None:
    """A message with its delivery row. Without `bodies`, html and text are None and `mime` only says
    whether one is kept ("(kept)") or not (None)."""
    query = _PENDING if bodies else _LIGHT
    row = tx.execute(query.where(messages.c.id == message_id)).first()
    return None if row is None else _pending(row)


def load_many(tx: Tx, message_ids: list[str]) -> list[Pending]:
    """The claimed messages in one query, in the order given (missing ones left out)."""
    rows = tx.execute(_PENDING.where(messages.c.id.in_(message_ids))).all()
    by_id = {r.id: _pending(r) for r in rows}
    return [by_id[i] for i in message_ids if i in by_id]


def open_attempt(tx: Tx, message_id: str) -> tuple[str, int] | None:
    """(id, number) of an attempt that started and never recorded its outcome: the process stopped while
    that attempt was in the hands of the transport."""
    row = tx.execute(
        sa.select(delivery_attempts.c.id, delivery_attempts.c.attempt)
        .where(
            delivery_attempts.c.message_id == message_id,
            delivery_attempts.c.outcome == "unknown",
            delivery_attempts.c.finished_at.is_(None),
        )
        .order_by(delivery_attempts.c.attempt.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.id, int(row.attempt))


def start_attempt(
    tx: Tx, pending: Pending, now: datetime, *, transport: str, mime: str | None, outcome: str = "unknown"
) -> tuple[str, int]:
    """Record an attempt (outcome `unknown` until the transport answers), count it, and keep the MIME that
    goes out, so a retry sends the very same bytes."""
    number = pending.attempts + 1
    attempt_id = ids.new_id("att")
    tx.execute(
        delivery_attempts.insert().values(
            id=attempt_id,
            workspace_id=pending.message.workspace_id,
            message_id=pending.message.id,
            attempt=number,
            outcome=outcome,
            started_at=now,
            finished_at=now if outcome != "unknown" else None,
        )
    )
    values: dict[str, Any] = {"attempts": number, "transport": transport}
    if mime is not None:
        values["mime"] = mime
    tx.execute(
        message_delivery.update().where(message_delivery.c.message_id == pending.message.id).values(**values)
    )
    return attempt_id, number


def finish_attempt(
    tx: Tx, attempt_id: str, outcome: str, now: datetime, *, code: int | None, detail: str | None
) -> None:
    tx.execute(
        delivery_attempts.update()
        .where(delivery_attempts.c.id == attempt_id)
        .values(outcome=outcome, smtp_code=code, detail=detail, finished_at=now)
    )


def set_status(
    tx: Tx,
    message_id: str,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    sent_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "updated_at": now, "error": error}
    if sent_at is not None:
        values["sent_at"] = sent_at
    tx.execute(messages.update().where(messages.c.id == message_id).values(**values))


def finish(tx: Tx, message_id: str) -> None:
    """No further attempts: off the queue, lease released."""
    tx.execute(
        message_delivery.update()
        .where(message_delivery.c.message_id == message_id)
        .values(next_attempt_at=None, lease_owner=None, lease_until=None)
    )


def retry_at(tx: Tx, message_id: str, when: datetime) -> None:
    tx.execute(
        message_delivery.update()
        .where(message_delivery.c.message_id == message_id)
        .values(next_attempt_at=when, lease_owner=None, lease_until=None)
    )


def release(tx: Tx, owner: str) -> int:
    """Give back the leases `owner` holds on messages it has not started (graceful shutdown)."""
    result = tx.execute(
        message_delivery.update()
        .where(message_delivery.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
    return result.rowcount


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
        sa.select(messages, *_OUTBOX_COLUMNS)
        .select_from(joined)
        .where(*where)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        OutboxItem(message_from_row(r), r.rfc_message_id, r.transport, int(r.attempts), None) for r in rows
    ]
    return items, int(total)


def outbox_item(tx: Tx, workspace_id: str, message_id: str) -> OutboxItem | None:
    row = tx.execute(
        sa.select(messages, *_OUTBOX_COLUMNS, message_delivery.c.mime)
        .join(message_delivery, message_delivery.c.message_id == messages.c.id)
        .where(messages.c.workspace_id == workspace_id, messages.c.id == message_id)
    ).first()
    if row is None:
        return None
    return OutboxItem(message_from_row(row), row.rfc_message_id, row.transport, int(row.attempts), row.mime)


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
