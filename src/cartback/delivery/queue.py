"""Handing a message to delivery: a message_delivery row, created in the same transaction as the message,
with its RFC Message-ID fixed now, before any attempt."""

from __future__ import annotations

from datetime import datetime

from cartback.store.db import Tx
from cartback.store.messages import Message
from cartback.store.tables import message_delivery

# Built once: every email step queues one, and building the statement costs more than running it.
_INSERT = message_delivery.insert()


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
    """Queue `message` for its first attempt now (or, with `hold`, for none: a message kept unsent, which
    still holds its send's idempotency key); return its RFC Message-ID."""
    rfc_id = rfc_message_id(message)
    tx.execute(
        _INSERT,
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
