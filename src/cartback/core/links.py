"""What the links in an email do once their signed token is checked (api/public.py serves them): the
unsubscribe link suppresses the address through the one suppression rule (`suppressions.suppress`, the
one the API and bounce notifications use too), and the open pixel and click links append an event and
stamp the first one on the message's delivery row."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartback import errors
from cartback.core import events, suppressions
from cartback.delivery import tokens
from cartback.store import deliveries
from cartback.store import messages as message_store
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx
from cartback.store.messages import MessageRef as MessageRef  # re-exported for api/
from cartback.store.workspaces import Workspace as Workspace

# Workspace ids are ours (`ws_` + base32); anything else in a token cannot name one, and is refused before
# it reaches a query (PostgreSQL refuses NUL characters with a 5xx-worthy error).
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID = "This link is not valid."


@dataclass(frozen=True)
class Link:
    """A verified token: what it says, its workspace, and its message if that still exists."""

    payload: dict[str, Any]
    workspace: Workspace
    message: MessageRef | None

    def properties(self) -> dict[str, Any]:
        message = self.message
        return {
            "messageId": self.payload["m"],
            "sequenceId": message.sequence_id if message else None,
            "nodeId": message.node_id if message else None,
        }


def _workspace(tx: Tx, workspace_id: str) -> Workspace | None:
    if not _ID.fullmatch(workspace_id):
        return None
    try:
        return workspace_store.get_workspace(tx, workspace_id)
    except errors.NotFound:
        return None


def resolve(tx: Tx, token: str, kind: str, now: datetime) -> Link:
    """The verified link of `kind` ("u", "o" or "c"); NotFound for anything else."""
    found: dict[str, Workspace] = {}

    def secret_for(workspace_id: str) -> str | None:
        ws = _workspace(tx, workspace_id)
        if ws is None:
            return None
        found[workspace_id] = ws
        return ws.secret

    if not token.isascii():
        # Our tokens are base64url; tokens.verify would meet a TypeError comparing non-ASCII signatures.
        raise errors.NotFound(_INVALID)
    try:
        payload = tokens.verify(token, secret_for)
    except tokens.InvalidToken as exc:
        raise errors.NotFound(_INVALID) from exc
    message_id = payload.get("m")
    if payload.get("k") != kind or not isinstance(message_id, str) or not _ID.fullmatch(message_id):
        raise errors.NotFound(_INVALID)
    workspace = found[payload["w"]]
    return Link(payload, workspace, message_store.ref(tx, workspace.id, message_id))


@dataclass(frozen=True)
class Recipient:
    """Whom an unsubscribe link names, and why marketing mail to them is already blocked, if it is."""

    link: Link
    email: str
    blocked: str | None


def recipient(tx: Tx, token: str, now: datetime) -> Recipient:
    """The address of an unsubscribe link; NotFound for any other link, or one that names no address."""
    link = resolve(tx, token, "u", now)
    email = link.payload.get("e")
    if not isinstance(email, str) or "@" not in email:
        raise errors.NotFound(_INVALID)
    return Recipient(link, email, suppressions.blocking_reason(tx, link.workspace.id, email, "marketing"))


@dataclass(frozen=True)
class Unsubscribe:
    email: str
    # one_click (RFC 8058) or link (the confirmation page's button)
    source: str
    message_id: str
    properties: dict[str, Any]


def unsubscribe(tx: Tx, workspace_id: str, request: Unsubscribe, now: datetime) -> bool:
    """Suppress the address for marketing mail; True if it was not unsubscribed before."""
    return suppressions.suppress(
        tx,
        workspace_id,
        request.email,
        "unsubscribed",
        request.source,
        now,
        detail=f"message {request.message_id}",
        properties=request.properties,
    )


@dataclass(frozen=True)
class Tracking:
    # email.opened or email.clicked
    name: str
    # the delivery column that keeps the first one: opened_at or clicked_at
    column: str
    message: MessageRef
    properties: dict[str, Any]


def track(tx: Tx, workspace_id: str, tracking: Tracking, now: datetime) -> None:
    """Append the event (every open and click counts) and stamp the first one on the delivery row."""
    events.record(
        tx,
        workspace_id,
        name=tracking.name,
        source=events.SOURCE_CARTBACK,
        subscriber_id=tracking.message.subscriber_id,
        properties=tracking.properties,
        now=now,
    )
    deliveries.stamp(tx, tracking.message.id, tracking.column, now)
