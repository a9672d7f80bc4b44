"""The one mail composer: every email cartback writes (a sequence step, a transactional send) gets its
sender, its links and its rendering here, by the same rules.

- **Sender**: what the step (its `fromEmail`/`fromName`, else the sequence's), the send (`from`) or its
  template names; else the workspace's sender set in the dashboard; else `CARTBACK_FROM`.
- **Links**: the message's own signed unsubscribe link (`unsubscribe_url`, also `unsubscribeUrl`), and
  its tracked clicks and open pixel, all under `CARTBACK_PUBLIC_URL`; the List-Unsubscribe headers follow
  from the message's kind when it is sent (delivery/mime.py).
- **Rendering**: delivery/render.render_message, with the workspace (`id`, `name`) in the context.
- **Queueing**: on the configured transport.
- **Composed before the write**: a render can take its whole CPU budget, and SQLite has one writer for
  every workspace. Callers compose into `Drafts` in a read transaction first; the write transaction that
  stores the message (and moves the step past it, at most once) composes again with the same inputs and
  gets the kept draft back instead of rendering. Inputs that changed in between miss and render there.

`Options` is built once from the settings (app.mail_options), for the API and for the worker alike.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartback import headers, ids
from cartback.core import shops
from cartback.delivery import links, render
from cartback.statuses import MessageStatus
from cartback.store import deliveries
from cartback.store import messages as message_store
from cartback.store.db import Tx
from cartback.store.workspaces import Workspace


@dataclass(frozen=True)
class Options:
    """What composing and queueing mail needs from the configuration."""

    public_url: str = "http://127.0.0.1:8000"
    default_from: str = "Shop <shop@example.com>"
    # smtp when CARTBACK_SMTP_URL is set, else outbox (messages kept for the dashboard and the API).
    transport: str = "outbox"


DEFAULT_OPTIONS = Options()


def named(address: str | None, name: str | None) -> str | None:
    """`Name <address>` when both are given, the address alone, or None when there is no address."""
    if address and name:
        try:  # the name quoted when it has commas or other specials, so the From stays one address
            return headers.named(name, address)
        except ValueError:  # saved before sender fields were checked: as it was built then
            return f"{name} <{address}>"
    return address or None


def sender(options: Options, workspace: Workspace, explicit: str | None) -> str:
    """Who a message is from: what the step, the send or its template names, else the workspace's sender,
    else the configured default."""
    return explicit or workspace.from_address or options.default_from


@dataclass(frozen=True)
class Draft:
    """A composed email, not stored yet."""

    message_id: str
    to_email: str
    from_email: str
    rendered: render.Rendered

    def message(
        self,
        *,
        workspace_id: str,
        kind: str,
        now: datetime,
        subscriber_id: str | None = None,
        sequence_id: str | None = None,
        enrollment_id: str | None = None,
        node_id: str | None = None,
        status: MessageStatus = MessageStatus.QUEUED,
        error: str | None = None,
        reply_to: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> message_store.Message:
        return message_store.Message(
            id=self.message_id,
            workspace_id=workspace_id,
            subscriber_id=subscriber_id,
            sequence_id=sequence_id,
            enrollment_id=enrollment_id,
            node_id=node_id,
            kind=kind,
            to_email=self.to_email,
            from_email=self.from_email,
            subject=self.rendered.subject,
            preheader=self.rendered.preheader,
            html=self.rendered.html,
            text=self.rendered.text,
            status=status.value,
            error=error,
            created_at=now,
            updated_at=now,
            sent_at=None,
            reply_to=reply_to,
            headers=headers,
        )


class Drafts:
    """Emails composed ahead of the write that stores them, by the inputs they were composed from. A
    draft is handed out once (its message id is then taken); `hits` and `misses` count what the
    composes that found a draft, or had to render, saw."""

    def __init__(self) -> None:
        self._kept: dict[str, list[Draft]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # Ids the composing pass gave records that only the write creates (a marketing send's new
        # subscriber, whom its email names), by what the record is; the write creates them with these ids,
        # so that the email it stores is the one composed with them.
        self.planned_ids: dict[str, str] = {}

    def take(self, key: str) -> Draft | None:
        with self._lock:
            found = self._kept.get(key)
            if not found:
                self.misses += 1
                return None
            self.hits += 1
            return found.pop()

    def keep(self, key: str, draft: Draft) -> None:
        with self._lock:
            self._kept.setdefault(key, []).append(draft)

    def __len__(self) -> int:
        return sum(len(v) for v in self._kept.values())


def _inputs_key(options: Options, workspace: Workspace, *parts: Any) -> str:
    # Everything the render and the sender depend on; repr for values JSON has no form for (datetimes).
    blob = json.dumps([repr(options), repr(workspace), *parts], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def compose(
    options: Options,
    workspace: Workspace,
    content: dict[str, Any],
    context: dict[str, Any],
    *,
    to_email: str,
    explicit_from: str | None = None,
    drafts: Drafts | None = None,
) -> Draft:
    """Render `content` (`subject`, `previewText`, `html`, `text`, or a shipped `template`) for one
    recipient, with the message's own links. Raises what rendering raises (render.TemplateError, Liquid
    errors): each caller says what a broken template means for it. With `drafts`, a draft composed
    from the same inputs is taken from there, and a new one is kept there."""
    if drafts is None:
        return _compose(options, workspace, content, context, to_email=to_email, explicit_from=explicit_from)
    key = _inputs_key(options, workspace, content, context, to_email, explicit_from)
    found = drafts.take(key)
    if found is not None:
        return found
    draft = _compose(options, workspace, content, context, to_email=to_email, explicit_from=explicit_from)
    drafts.keep(key, draft)
    return draft


def _compose(
    options: Options,
    workspace: Workspace,
    content: dict[str, Any],
    context: dict[str, Any],
    *,
    to_email: str,
    explicit_from: str | None,
) -> Draft:
    message_id = ids.new_id("msg")
    signer = links.LinkSigner(options.public_url, workspace.secret, workspace.id, message_id)
    ctx = {
        **context,
        "workspace": {"id": workspace.id, "name": workspace.name},
        "shop": shops.context(workspace),
    }
    ctx["unsubscribe_url"] = ctx["unsubscribeUrl"] = signer.unsubscribe_url(to_email)
    rendered = render.render_message(content, ctx, signer)
    return Draft(message_id, to_email, sender(options, workspace, explicit_from), rendered)


def queue(
    tx: Tx,
    options: Options,
    message: message_store.Message,
    now: datetime,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    hold: bool = False,
) -> None:
    """Keep the message and queue it on the configured transport; with `hold`, keep it unsent (a
    suppressed recipient), still holding its send's idempotency key."""
    message_store.insert(tx, message)
    deliveries.enqueue(
        tx,
        message,
        now,
        transport=options.transport,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        hold=hold,
    )
