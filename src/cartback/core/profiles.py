"""Profiles: subscribers as Klaviyo-style APIs address them, by any of email, phone number, externalId,
anonymous id or their own id, and the events recorded against them with a per-profile unique id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cartback import errors
from cartback.core import events, lists, subscribers
from cartback.core.subscribers import Identity
from cartback.store import events as event_store
from cartback.store import subscribers as store
from cartback.store.db import Tx
from cartback.store.subscribers import ProfileQuery as ProfileQuery  # re-exported for api/
from cartback.store.subscribers import Subscriber as Subscriber
from cartback.store.subscribers import sort_value as sort_value


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


@dataclass(frozen=True)
class ProfileView:
    """A profile as it is read back: the subscriber, when their latest event occurred, and the lists
    they are on when those were asked for (None: not asked)."""

    subscriber: Subscriber
    last_event_at: datetime | None
    lists: list[lists.SubscriberList] | None = None


def views(
    tx: Tx, workspace_id: str, subs: list[Subscriber], *, with_lists: bool = False
) -> list[ProfileView]:
    return [
        ProfileView(
            sub,
            last_event_at(tx, workspace_id, sub.id),
            lists.current_lists(tx, workspace_id, sub.id) if with_lists else None,
        )
        for sub in subs
    ]


@dataclass(frozen=True)
class ProfilePage:
    profiles: list[ProfileView]
    more: bool  # whether another profile follows in the query's order


def read_page(tx: Tx, workspace_id: str, query: ProfileQuery, size: int, *, with_lists: bool) -> ProfilePage:
    """One page of the workspace's profiles in the query's order, at most `size`."""
    rows = store.profile_page(tx, workspace_id, query, size + 1)
    return ProfilePage(views(tx, workspace_id, rows[:size], with_lists=with_lists), len(rows) > size)


def read_profile(tx: Tx, workspace_id: str, profile_id: str, *, with_lists: bool) -> ProfileView | None:
    sub = store.find_by_id(tx, workspace_id, profile_id)
    return None if sub is None else views(tx, workspace_id, [sub], with_lists=with_lists)[0]


def describe(sub: Subscriber) -> str:
    return sub.email or sub.external_id or sub.phone or sub.anonymous_id or sub.id


# -- the profile resource: create and import -------------------------------------------------------


class DuplicateProfile(errors.Conflict):
    """A profile already exists with one of these identifiers."""

    def __init__(self, profile_id: str, message: str | None = None) -> None:
        super().__init__(message)
        self.profile_id = profile_id


@dataclass(frozen=True)
class ProfileInput:
    """What a create or import request says. None: not said. `clear`: fields sent as null (names and
    attribute keys), which an import removes."""

    email: str | None = None
    phone: str | None = None
    external_id: str | None = None
    anonymous_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    clear: frozenset[str] = frozenset()
    # Klaviyo's meta.patch_properties: keys to remove, values to add to or take from list properties.
    unset: tuple[str, ...] = ()
    append: dict[str, Any] = field(default_factory=dict)
    unappend: dict[str, Any] = field(default_factory=dict)

    def names_someone(self) -> bool:
        return bool(self.email or self.phone or self.external_id or self.anonymous_id)


def _holders(tx: Tx, workspace_id: str, data: ProfileInput) -> list[Subscriber]:
    """The distinct subscribers holding any identifier the input names, strongest identifier first."""
    found: list[Subscriber | None] = [
        store.find_by_email(tx, workspace_id, data.email) if data.email else None,
        store.find_by_external_id(tx, workspace_id, data.external_id) if data.external_id else None,
        store.find_by_anonymous_id(tx, workspace_id, data.anonymous_id) if data.anonymous_id else None,
        store.find_by_phone(tx, workspace_id, data.phone) if data.phone else None,
    ]
    out: dict[str, Subscriber] = {}
    for sub in found:
        if sub is not None:
            out.setdefault(sub.id, sub)
    return list(out.values())


def create(tx: Tx, workspace_id: str, data: ProfileInput, now: datetime) -> Subscriber:
    """A new profile. Any identifier already in use is a DuplicateProfile naming its holder."""
    if not data.names_someone():
        raise errors.InvalidInput("a profile needs an email, phone_number, external_id or anonymous_id")
    holders = _holders(tx, workspace_id, data)
    if holders:
        raise DuplicateProfile(holders[0].id, "A profile already exists with one of these identifiers.")
    sub = store.new(
        workspace_id,
        now,
        email=data.email,
        phone=data.phone,
        external_id=data.external_id,
        anonymous_id=data.anonymous_id,
        first_name=data.first_name or None,
        last_name=data.last_name or None,
        attributes=_patched({k: v for k, v in data.attributes.items() if v is not None}, data),
    )
    subscribers.add_new(tx, sub, now)
    return sub


def upsert(
    tx: Tx, workspace_id: str, data: ProfileInput, now: datetime, *, profile_id: str | None = None
) -> tuple[Subscriber, bool]:
    """Create the profile, or update the one the id or the identifiers name: what is given replaces what
    is stored, properties are merged key by key, null clears. Identifiers of two different profiles in
    one request are a DuplicateProfile. Returns (profile, created)."""
    if profile_id is not None:
        sub = store.find_by_id(tx, workspace_id, profile_id)
        if sub is None:
            raise errors.NotFound(f"no profile with id {profile_id!r}")
    else:
        holders = _holders(tx, workspace_id, data)
        if len(holders) > 1:
            raise DuplicateProfile(
                holders[1].id, "These identifiers belong to different profiles; they cannot be merged."
            )
        if not holders:
            return create(tx, workspace_id, data, now), True
        sub = holders[0]
    changes: dict[str, Any] = {}
    for name, column in (
        ("email", "email"),
        ("phone", "phone"),
        ("external_id", "external_id"),
        ("anonymous_id", "anonymous_id"),
    ):
        value = getattr(data, name)
        if value is None or value == getattr(sub, column):
            continue
        holder = _holders(tx, workspace_id, ProfileInput(**{name: value}))
        if holder and holder[0].id != sub.id and name != "phone":
            raise DuplicateProfile(holder[0].id, f"Another profile already has this {name}.")
        changes[column] = value
    for name in ("first_name", "last_name"):
        value = getattr(data, name)
        if value is not None and value != getattr(sub, name):
            changes[name] = value or None
        elif name in data.clear and getattr(sub, name) is not None:
            changes[name] = None
    attributes = dict(sub.attributes)
    for key, value in data.attributes.items():
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    attributes = _patched(attributes, data)
    if attributes != sub.attributes:
        changes["attributes"] = attributes
    if changes:
        sub = sub.with_changes(**changes, updated_at=now)
        store.save(tx, sub)
    return sub, False


def import_profile(
    tx: Tx, workspace_id: str, data: ProfileInput, now: datetime, *, profile_id: str | None, read_back: bool
) -> tuple[ProfileView, bool]:
    """`upsert`, and the profile as it is now; its latest event only when `read_back` asks for it.
    Returns (profile, created)."""
    sub, created = upsert(tx, workspace_id, data, now, profile_id=profile_id)
    return ProfileView(sub, last_event_at(tx, workspace_id, sub.id) if read_back else None), created


def _patched(attributes: dict[str, Any], data: ProfileInput) -> dict[str, Any]:
    out = dict(attributes)
    for key in data.unset:
        out.pop(key, None)
    for key, value in data.append.items():
        current = out.get(key)
        items = list(current) if isinstance(current, list) else ([] if current is None else [current])
        items.extend(value if isinstance(value, list) else [value])
        out[key] = items
    for key, value in data.unappend.items():
        current = out.get(key)
        if isinstance(current, list):
            drop = value if isinstance(value, list) else [value]
            out[key] = [item for item in current if item not in drop]
    return out


def by_identifier(tx: Tx, workspace_id: str, **given: Any) -> Subscriber | None:
    """The profile one identifier names (email, phone, external_id, anonymous_id or id)."""
    (name, value), *_ = given.items()
    if name == "id":
        return store.find_by_id(tx, workspace_id, value)
    holders = _holders(tx, workspace_id, ProfileInput(**{name: value}))
    return holders[0] if holders else None
