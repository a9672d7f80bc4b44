"""Who may get mail. Unsubscribed, bounced and complained are kept apart, each with its source and time:
none of them gets marketing mail; transactional mail still reaches unsubscribed addresses, never bounced
or complained ones."""

from __future__ import annotations

from datetime import datetime

from cartback.core import events
from cartback.store import subscribers as subscriber_store
from cartback.store import suppressions as store
from cartback.store.db import Tx

REASONS = ("unsubscribed", "bounced", "complained")
_BLOCKS = {"marketing": set(REASONS), "transactional": {"bounced", "complained"}}
# The subscriber status each suppression reason implies (Sequenzy shows complaints as unsubscribed).
_STATUS = {"unsubscribed": "unsubscribed", "bounced": "bounced", "complained": "unsubscribed"}
_EVENT = {"unsubscribed": "email.unsubscribed", "bounced": "email.bounced", "complained": "email.complained"}


def blocking_reason(tx: Tx, workspace_id: str, email: str, kind: str) -> str | None:
    """Why mail of `kind` (marketing or transactional) must not go to `email`, or None."""
    blocked = _BLOCKS[kind]
    for item in store.for_email(tx, workspace_id, email):
        if item.reason in blocked:
            return f"address {item.reason} ({item.source})"
    return None


def suppress(
    tx: Tx,
    workspace_id: str,
    email: str,
    reason: str,
    source: str,
    now: datetime,
    *,
    detail: str | None = None,
    properties: dict[str, object] | None = None,
) -> bool:
    """Suppress an address: record it, set the subscriber's status, and append the email.* event that
    stops their runs and feeds analytics. Idempotent; True if it was new."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    added = store.add(tx, workspace_id, email, reason, source, now, detail)
    sub = subscriber_store.find_by_email(tx, workspace_id, email)
    if (
        sub is not None
        and sub.status != _STATUS[reason]
        and not (sub.status == "bounced" and reason != "bounced")
    ):
        subscriber_store.save(
            tx,
            sub.with_changes(
                status=_STATUS[reason], unsubscribed_at=sub.unsubscribed_at or now, updated_at=now
            ),
        )
    if added:
        events.record(
            tx,
            workspace_id,
            name=_EVENT[reason],
            source=events.SOURCE_CARTBACK,
            subscriber_id=sub.id if sub else None,
            properties={"email": email, "reason": reason, "source": source, **(properties or {})},
            now=now,
        )
    return added
