"""Profiles: subscribers as Klaviyo-style APIs address them, by any of email, phone number, externalId,
anonymous id or their own id, and the events recorded against them with a per-profile unique id."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from typing import Any

from cartback import errors
from cartback.core import events, subscribers
from cartback.core.subscribers import Identity
from cartback.store import events as event_store
from cartback.store import subscribers as store
from cartback.store.db import Tx
from cartback.store.subscribers import Subscriber


def complete(tx: Tx, workspace_id: str, identity: Identity, profile_id: str | None) -> Identity:
    """With a profile id, fill the identity's missing identifiers from that subscriber, so that every
    core path (checkouts, orders, events) finds the same person. An unknown id is invalid input."""
    if profile_id is None:
        return identity
    sub = store.find_by_id(tx, workspace_id, profile_id)
    if sub is None:
        raise errors.InvalidInput(f"no profile with id {profile_id!r}")
    return replace(
        identity,
        email=identity.email or sub.email,
        external_id=identity.external_id or sub.external_id,
        phone=identity.phone or sub.phone,
        anonymous_id=identity.anonymous_id or sub.anonymous_id,
    )


def event_key(scope: str, subscriber_id: str, name: str, unique_id: str) -> str:
    """The idempotency key of an event unique per (profile, metric, unique id), as Klaviyo dedupes.
    Hashed: a unique id may be long and the key column is not."""
    digest = hashlib.sha256(f"{name}\x00{unique_id}".encode()).hexdigest()[:40]
    return f"{scope}:{subscriber_id}:{digest}"


def record_event(
    tx: Tx,
    workspace_id: str,
    identity: Identity,
    *,
    name: str,
    properties: dict[str, Any],
    unique_id: str,
    occurred_at: datetime | None,
    now: datetime,
    source: str,
) -> events.Recorded:
    """Append an event for the profile, created or updated from the identity. The same unique id for the
    same profile and event name is a replay: the first event comes back and nothing is applied again,
    not even the profile's attributes."""
    name = events.canonical_name(name)
    known = subscribers.find(tx, workspace_id, identity)
    if known is not None:
        existing = event_store.find_by_key(tx, workspace_id, event_key(source, known.id, name, unique_id))
        if existing is not None:
            return events.Recorded(existing, duplicate=True)
    sub, created = subscribers.upsert(tx, workspace_id, identity, now)
    return events.record(
        tx,
        workspace_id,
        name=name,
        source=source,
        subscriber_id=sub.id,
        properties=properties,
        now=now,
        occurred_at=occurred_at,
        idempotency_key=event_key(source, sub.id, name, unique_id),
        known_new=created or known is not None,
    )


def last_event_at(tx: Tx, workspace_id: str, subscriber_id: str) -> datetime | None:
    latest = event_store.list_for_subscriber(tx, workspace_id, subscriber_id, limit=1)
    return latest[0].occurred_at if latest else None


def describe(sub: Subscriber) -> str:
    return sub.email or sub.external_id or sub.phone or sub.anonymous_id or sub.id
