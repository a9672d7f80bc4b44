"""Who an event belongs to: finding or creating the subscriber an incoming identity names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cartback import errors
from cartback.store import subscribers as store
from cartback.store.db import Tx
from cartback.store.subscribers import Subscriber


@dataclass(frozen=True)
class Identity:
    """The person an incoming request is about, as the request names them."""

    email: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def find(tx: Tx, workspace_id: str, identity: Identity) -> Subscriber | None:
    sub = None
    if identity.email:
        sub = store.find_by_email(tx, workspace_id, identity.email)
    if sub is None and identity.external_id:
        sub = store.find_by_external_id(tx, workspace_id, identity.external_id)
    return sub


def upsert(tx: Tx, workspace_id: str, identity: Identity, now: datetime) -> tuple[Subscriber, bool]:
    """Find the subscriber by email (then externalId) and merge in what the identity adds, or create one.
    Returns (subscriber, created)."""
    if not identity.email and not identity.external_id:
        raise errors.InvalidInput("an email or an externalId is required to identify the subscriber")
    sub = find(tx, workspace_id, identity)
    if sub is None:
        sub = store.new(
            workspace_id,
            now,
            email=identity.email,
            external_id=identity.external_id,
            first_name=identity.first_name,
            last_name=identity.last_name,
            attributes=dict(identity.attributes),
        )
        store.insert(tx, sub)
        return sub, True
    merged = merge_identity(tx, sub, identity)
    if merged != sub:
        merged = merged.with_changes(updated_at=now)
        store.save(tx, merged)
    return merged, False


def merge_identity(tx: Tx, sub: Subscriber, identity: Identity) -> Subscriber:
    """What the subscriber looks like once the identity's non-empty fields are applied."""
    changes: dict[str, Any] = {}
    if identity.first_name and identity.first_name != sub.first_name:
        changes["first_name"] = identity.first_name
    if identity.last_name and identity.last_name != sub.last_name:
        changes["last_name"] = identity.last_name
    if (
        identity.email
        and sub.email is None
        and store.find_by_email(tx, sub.workspace_id, identity.email) is None
    ):
        changes["email"] = identity.email
    if (
        identity.external_id
        and identity.external_id != sub.external_id
        and store.find_by_external_id(tx, sub.workspace_id, identity.external_id) is None
    ):
        # An externalId held by someone else stays theirs: the email is the stronger identity here.
        changes["external_id"] = identity.external_id
    if identity.attributes:
        attributes = {**sub.attributes, **identity.attributes}
        if attributes != sub.attributes:
            changes["attributes"] = attributes
    return sub.with_changes(**changes) if changes else sub
