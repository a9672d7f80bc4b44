"""Messages an email step (or a transactional send) produced. One per (enrollment, step), by constraint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback.store.db import Tx
from cartback.store.tables import message_bodies, messages


@dataclass(frozen=True)
class Message:
    id: str
    workspace_id: str
    subscriber_id: str | None
    sequence_id: str | None
    enrollment_id: str | None
    node_id: str | None
    kind: str
    to_email: str
    from_email: str
    subject: str
    preheader: str | None
    html: str | None
    text: str | None
    status: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    # Transactional sends: where replies go, and the caller's own headers (checked by the API).
    reply_to: str | None = None
    headers: dict[str, str] | None = None


_COLUMNS = list(Message.__dataclass_fields__)
_BODY_COLUMNS = ("html", "text")
_ROW_COLUMNS = [n for n in _COLUMNS if n not in _BODY_COLUMNS]

# Select from WITH_BODY with MESSAGE_COLUMNS (and more) to read whole Messages: the bodies live apart.
WITH_BODY = messages.outerjoin(message_bodies, message_bodies.c.message_id == messages.c.id)
MESSAGE_COLUMNS = (messages, message_bodies.c.html, message_bodies.c.text)


@dataclass(frozen=True)
class MessageRef:
    """What an open or a click records about its message."""

    id: str
    subscriber_id: str | None
    sequence_id: str | None
    node_id: str | None


def from_row(row: Row[Any]) -> Message:
    """A Message from a row selected with MESSAGE_COLUMNS."""
    return Message(**{n: getattr(row, n) for n in _COLUMNS})


_INSERT = messages.insert()
_INSERT_BODY = message_bodies.insert()
_FOR_STEP = sa.select(messages.c.id).where(
    messages.c.enrollment_id == sa.bindparam("enrollment_id"), messages.c.node_id == sa.bindparam("node_id")
)


def insert(tx: Tx, message: Message) -> None:
    tx.execute(_INSERT, {n: getattr(message, n) for n in _ROW_COLUMNS})
    tx.execute(
        _INSERT_BODY,
        {
            "message_id": message.id,
            "workspace_id": message.workspace_id,
            "html": message.html,
            "text": message.text,
        },
    )


def exists_for_step(tx: Tx, enrollment_id: str, node_id: str) -> bool:
    return tx.execute(_FOR_STEP, {"enrollment_id": enrollment_id, "node_id": node_id}).first() is not None


_STEPS_DONE = sa.select(messages.c.enrollment_id, messages.c.node_id).where(
    messages.c.enrollment_id.in_(sa.bindparam("ids", expanding=True))
)


def steps_done(tx: Tx, enrollment_ids: list[str]) -> set[tuple[str, str]]:
    """(enrollment id, node id) of every message these enrollments' steps produced (one query)."""
    if not enrollment_ids:
        return set()
    return {(e, n) for e, n in tx.execute(_STEPS_DONE, {"ids": enrollment_ids}).all()}


def count_marketing_since(
    tx: Tx, workspace_id: str, subscriber_id: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many marketing messages the subscriber got since `since`, and the oldest of them."""
    row = tx.execute(
        sa.select(sa.func.count(), sa.func.min(messages.c.created_at)).where(
            messages.c.workspace_id == workspace_id,
            messages.c.subscriber_id == subscriber_id,
            messages.c.kind == "marketing",
            messages.c.created_at >= since,
        )
    ).one()
    return int(row[0]), row[1]


def listing(
    tx: Tx,
    workspace_id: str,
    *,
    sequence_id: str | None = None,
    subscriber_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Message], int]:
    where = [messages.c.workspace_id == workspace_id]
    if sequence_id:
        where.append(messages.c.sequence_id == sequence_id)
    if subscriber_id:
        where.append(messages.c.subscriber_id == subscriber_id)
    total = tx.execute(sa.select(sa.func.count()).select_from(messages).where(*where)).scalar_one()
    rows = tx.execute(
        sa.select(*MESSAGE_COLUMNS)
        .select_from(WITH_BODY)
        .where(*where)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [from_row(r) for r in rows], int(total)


def ref(tx: Tx, workspace_id: str, message_id: str) -> MessageRef | None:
    """The message a tracking link names, if it still exists in that workspace."""
    row = tx.execute(
        sa.select(messages.c.id, messages.c.subscriber_id, messages.c.sequence_id, messages.c.node_id).where(
            messages.c.workspace_id == workspace_id, messages.c.id == message_id
        )
    ).first()
    return None if row is None else MessageRef(row.id, row.subscriber_id, row.sequence_id, row.node_id)
