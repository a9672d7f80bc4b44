"""Subscriber lists: named groups of contacts. Joining or leaving a list appends an event, so an
automation can start when someone is added.

POST /lists is idempotent by name: the schema keeps names unique per workspace, and the Sequenzy SDK
retries 409s, so a second create with the same name answers the existing list (`created: false`)
instead of a Conflict the client would retry for nothing. Renaming onto another list's name is a real
conflict and is a 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartback import errors, ids
from cartback.core import events
from cartback.store import lists as store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.lists import SubscriberList as SubscriberList  # re-exported for api/

NAME_MAX = 255


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise errors.InvalidInput("a list name must not be empty")
    if len(name) > NAME_MAX:
        raise errors.InvalidInput(f"a list name is at most {NAME_MAX} characters")
    return name


def require(tx: Tx, workspace_id: str, list_id: str) -> SubscriberList:
    found = store.find_by_id(tx, workspace_id, list_id)
    if found is None:
        raise errors.NotFound(f"no list with id {list_id!r}")
    return found


def resolve(tx: Tx, workspace_id: str, ref: str) -> SubscriberList | None:
    """A list named by id or, failing that, by exact name: Sequenzy accepts either where it takes a list."""
    return store.find_by_id(tx, workspace_id, ref) or store.find_by_name(tx, workspace_id, ref)


@dataclass(frozen=True)
class ListInput:
    name: str
    description: str | None = None
    is_private: bool = False
    allow_member_unsubscribe: bool = False


def create(tx: Tx, workspace_id: str, data: ListInput, now: datetime) -> tuple[SubscriberList, bool]:
    """Create a list, or return the one that already has this name. Returns (list, created)."""
    name = _clean_name(data.name)
    existing = store.find_by_name(tx, workspace_id, name)
    if existing is not None:
        return existing, False
    item = SubscriberList(
        id=ids.new_id("lst"),
        workspace_id=workspace_id,
        name=name,
        description=data.description,
        is_private=data.is_private,
        allow_member_unsubscribe=data.allow_member_unsubscribe,
        created_at=now,
        updated_at=now,
    )
    store.insert(tx, item)
    return item, True


def find_or_create(tx: Tx, workspace_id: str, ref: str, now: datetime) -> SubscriberList:
    """The list `ref` names by id or name; a name nobody has yet becomes a new list."""
    return resolve(tx, workspace_id, ref) or create(tx, workspace_id, ListInput(name=ref), now)[0]


def update(tx: Tx, workspace_id: str, list_id: str, changes: dict[str, Any], now: datetime) -> SubscriberList:
    """Apply the given fields only (name, description, is_private, allow_member_unsubscribe)."""
    item = require(tx, workspace_id, list_id)
    if "name" in changes:
        name = _clean_name(changes["name"] or "")
        other = store.find_by_name(tx, workspace_id, name)
        if other is not None and other.id != item.id:
            raise errors.Conflict(f"another list is already named {name!r}")
        changes = {**changes, "name": name}
    updated = item.with_changes(**changes)
    if updated != item:
        updated = updated.with_changes(updated_at=now)
        store.save(tx, updated)
    return updated


def delete(tx: Tx, workspace_id: str, list_id: str) -> int:
    """Delete the list (not its subscribers); return how many memberships it had."""
    require(tx, workspace_id, list_id)
    return store.delete(tx, workspace_id, list_id)


def list_all(tx: Tx, workspace_id: str) -> list[SubscriberList]:
    return store.list_all(tx, workspace_id)


def current_lists(tx: Tx, workspace_id: str, subscriber_id: str) -> list[SubscriberList]:
    """The lists the subscriber is on now (not those they left), oldest membership first."""
    return [m.list for m in store.memberships(tx, workspace_id, subscriber_id) if m.unsubscribed_at is None]


def join(tx: Tx, workspace_id: str, subscriber_id: str, item: SubscriberList, now: datetime) -> bool:
    """Add a subscriber to a list; True, and a subscriber.list_added event, if they were not on it."""
    added = store.add_member(tx, workspace_id, item.id, subscriber_id, now)
    if added:
        _record(tx, workspace_id, events.LIST_ADDED, subscriber_id, item, now)
    return added


def _record(
    tx: Tx, workspace_id: str, name: str, subscriber_id: str, item: SubscriberList, now: datetime
) -> None:
    events.record(
        tx,
        workspace_id,
        name=name,
        source=events.SOURCE_CARTBACK,
        subscriber_id=subscriber_id,
        properties={"listId": item.id, "listName": item.name},
        now=now,
    )


@dataclass(frozen=True)
class Removed:
    removed: int
    not_found: list[str]


def remove_subscribers(
    tx: Tx,
    workspace_id: str,
    list_id: str,
    *,
    emails: Sequence[str],
    subscriber_ids: Sequence[str],
    now: datetime,
) -> Removed:
    """Take subscribers off a list by email or id. `not_found` names the identifiers that match no
    subscriber of this workspace; a subscriber who was not on the list is simply not counted."""
    item = require(tx, workspace_id, list_id)
    by_email = subscriber_store.find_many(tx, workspace_id, emails=emails)
    by_id = subscriber_store.find_many(tx, workspace_id, subscriber_ids=subscriber_ids)
    known_emails = {subscriber_store.email_key(s.email) for s in by_email if s.email}
    known_ids = {s.id for s in by_id}
    not_found = [e for e in emails if subscriber_store.email_key(e) not in known_emails]
    not_found += [i for i in subscriber_ids if i not in known_ids]
    targets = list(dict.fromkeys([s.id for s in by_email] + [s.id for s in by_id]))
    removed = store.remove_members(tx, workspace_id, item.id, targets)
    for subscriber_id in removed:
        _record(tx, workspace_id, events.LIST_REMOVED, subscriber_id, item, now)
    return Removed(len(removed), not_found)
