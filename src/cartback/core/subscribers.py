"""Who an event belongs to: finding or creating the subscriber an incoming identity names."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from cartback import errors
from cartback.core import events, lists
from cartback.store import events as event_store
from cartback.store import lists as list_store
from cartback.store import subscribers as store
from cartback.store.db import Tx
from cartback.store.subscribers import Subscriber as Subscriber  # re-exported for api/


@dataclass(frozen=True)
class Identity:
    """The person an incoming request is about, as the request names them."""

    email: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Weaker identifiers some surfaces (Klaviyo, Segment) name a person by when no email is known yet.
    phone: str | None = None
    anonymous_id: str | None = None

    def names_someone(self) -> bool:
        return bool(self.email or self.external_id or self.phone or self.anonymous_id)


def find(tx: Tx, workspace_id: str, identity: Identity) -> Subscriber | None:
    """By email, then externalId, then anonymous id, then phone: the strongest identifier given wins."""
    sub = None
    if identity.email:
        sub = store.find_by_email(tx, workspace_id, identity.email)
    if sub is None and identity.external_id:
        sub = store.find_by_external_id(tx, workspace_id, identity.external_id)
    if sub is None and identity.anonymous_id:
        sub = store.find_by_anonymous_id(tx, workspace_id, identity.anonymous_id)
    if sub is None and identity.phone:
        sub = store.find_by_phone(tx, workspace_id, identity.phone)
    return sub


def add_new(tx: Tx, sub: Subscriber, now: datetime) -> None:
    """Store a new subscriber and append subscriber.created, the event contact_added sequences start on."""
    store.insert(tx, sub)
    event_store.append(tx, created_event(sub, now))


def created_event(sub: Subscriber, now: datetime) -> event_store.Event:
    """The subscriber.created event of a new subscriber, not yet stored (`add_new` appends it; the
    set-wise ingest appends many at once)."""
    return events.new(
        sub.workspace_id,
        name=events.SUBSCRIBER_CREATED,
        source=events.SOURCE_CARTBACK,
        subscriber_id=sub.id,
        properties={"email": sub.email, "externalId": sub.external_id},
        now=now,
    )


def new_from(workspace_id: str, identity: Identity, now: datetime, new_id: str | None = None) -> Subscriber:
    """The subscriber `upsert` creates for an identity nobody has yet, not yet stored."""
    return store.new(
        workspace_id,
        now,
        **({"id": new_id} if new_id else {}),
        email=identity.email,
        external_id=identity.external_id,
        first_name=identity.first_name,
        last_name=identity.last_name,
        attributes=dict(identity.attributes),
        phone=identity.phone,
        anonymous_id=identity.anonymous_id,
    )


def upsert(
    tx: Tx, workspace_id: str, identity: Identity, now: datetime, *, new_id: str | None = None
) -> tuple[Subscriber, bool]:
    """Find the subscriber (see `find`) and merge in what the identity adds, or create one (with `new_id`
    when given: an id decided before the write, see `mail.Drafts.planned_ids`).
    Returns (subscriber, created)."""
    if not identity.names_someone():
        raise errors.InvalidInput("an email or an externalId is required to identify the subscriber")
    sub = find(tx, workspace_id, identity)
    if sub is None:
        sub = new_from(workspace_id, identity, now, new_id)
        add_new(tx, sub, now)
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
    if identity.phone and sub.phone is None:
        changes["phone"] = identity.phone
    if (
        identity.anonymous_id
        and sub.anonymous_id is None
        and store.find_by_anonymous_id(tx, sub.workspace_id, identity.anonymous_id) is None
    ):
        changes["anonymous_id"] = identity.anonymous_id
    if identity.attributes:
        attributes = {**sub.attributes, **identity.attributes}
        if attributes != sub.attributes:
            changes["attributes"] = attributes
    return sub.with_changes(**changes) if changes else sub


# -- the Sequenzy subscriber resource ---------------------------------------------------------------
#
# Where Sequenzy documents a default, cartback uses it: `duplicateStrategy` is `skip` and
# `customAttributesStrategy` is `replace` when the request leaves them out.

STATUSES = ("active", "unsubscribed", "bounced")
DUPLICATE_STRATEGIES = ("skip", "merge", "overwrite")
DEFAULT_DUPLICATE_STRATEGY = "skip"
DEFAULT_ATTRIBUTES_STRATEGY = "replace"
TAG_MAX = 255


@dataclass(frozen=True)
class Lookup:
    """How a route names an existing subscriber: by email (case-insensitive), externalId or id."""

    email: str | None = None
    external_id: str | None = None
    subscriber_id: str | None = None

    def describe(self) -> str:
        if self.email is not None:
            return f"email {self.email!r}"
        if self.external_id is not None:
            return f"externalId {self.external_id!r}"
        return f"id {self.subscriber_id!r}"


def require(tx: Tx, workspace_id: str, lookup: Lookup) -> Subscriber:
    """The subscriber, with tags, or NotFound. Another workspace's subscriber is not found either."""
    sub = None
    if lookup.email is not None:
        sub = store.find_by_email(tx, workspace_id, lookup.email)
    elif lookup.external_id is not None:
        sub = store.find_by_external_id(tx, workspace_id, lookup.external_id)
    elif lookup.subscriber_id is not None:
        sub = store.find_by_id(tx, workspace_id, lookup.subscriber_id)
    if sub is None:
        raise errors.NotFound(f"no subscriber with {lookup.describe()}")
    return store.with_tags(tx, sub)


def clean_tags(names: Iterable[str]) -> list[str]:
    """Tag names as stored: trimmed, blanks dropped, each once, in the order given."""
    out = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if len(name) > TAG_MAX:
            raise errors.InvalidInput(f"a tag name is at most {TAG_MAX} characters")
        out.append(name)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Tagged:
    added: list[str]
    created: list[str]
    tag_ids: dict[str, str]


def tag(tx: Tx, sub: Subscriber, names: Iterable[str], now: datetime) -> Tagged:
    """Tag a subscriber, creating tag definitions as needed; each tag newly on them appends a
    subscriber.tag_added event, the hook tag-triggered automations listen on."""
    wanted = clean_tags(names)
    tag_ids, created = store.ensure_tags(tx, sub.workspace_id, wanted, now)
    added, _ = store.add_tags(tx, sub.workspace_id, sub.id, wanted, now)
    for name in added:
        _record_tag(tx, sub, events.TAG_ADDED, name, now)
    return Tagged(added, created, tag_ids)


def untag(tx: Tx, sub: Subscriber, names: Iterable[str], now: datetime) -> list[str]:
    """Remove tags; each one that was on the subscriber appends subscriber.tag_removed."""
    removed = store.remove_tags(tx, sub.workspace_id, sub.id, clean_tags(names))
    for name in removed:
        _record_tag(tx, sub, events.TAG_REMOVED, name, now)
    return removed


def set_tags(tx: Tx, sub: Subscriber, names: Iterable[str], now: datetime) -> bool:
    """Make the subscriber's tags exactly `names`; True if anything changed."""
    wanted = clean_tags(names)
    current = store.tag_names(tx, sub.workspace_id, [sub.id])[sub.id]
    removed = untag(tx, sub, [n for n in current if n not in wanted], now)
    added = tag(tx, sub, wanted, now).added
    return bool(removed or added)


def _record_tag(tx: Tx, sub: Subscriber, name: str, tag_name: str, now: datetime) -> None:
    events.record(
        tx,
        sub.workspace_id,
        name=name,
        source=events.SOURCE_CARTBACK,
        subscriber_id=sub.id,
        properties={"tag": tag_name},
        now=now,
    )


@dataclass(frozen=True)
class SubscriberInput:
    """POST /subscribers. None means the request did not say."""

    email: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    phone_country: str | None = None
    sms_consent: bool | None = None
    status: str | None = None
    timezone: str | None = None
    attributes: dict[str, Any] | None = None
    tags: Sequence[str] = ()
    # List ids or names; a name nobody has yet becomes a new list.
    lists: Sequence[str] = ()
    created_at: datetime | None = None


@dataclass(frozen=True)
class Saved:
    subscriber: Subscriber
    created: bool
    updated: bool
    skipped: bool


_PROFILE_FIELDS = ("first_name", "last_name", "phone", "phone_country", "timezone")


def create(tx: Tx, workspace_id: str, data: SubscriberInput, strategy: str, now: datetime) -> Saved:
    """Create a subscriber, or apply the request to the existing one as `strategy` says:
    skip leaves them alone, merge fills only what is missing, overwrite replaces what the request
    gives (but never reactivates someone who unsubscribed or bounced). Tags and lists are added,
    never removed, by merge and overwrite. Whatever the strategy, a given `createdAt` only ever moves an
    existing subscriber's signup date earlier, as Sequenzy documents."""
    if strategy not in DUPLICATE_STRATEGIES:
        raise errors.InvalidInput(f"duplicateStrategy must be one of {', '.join(DUPLICATE_STRATEGIES)}")
    if data.status is not None and data.status not in STATUSES:
        raise errors.InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    signup = min(data.created_at, now) if data.created_at is not None else None
    sub = find(tx, workspace_id, Identity(email=data.email, external_id=data.external_id))
    if sub is None:
        if not data.email:
            raise errors.InvalidInput("an email is required to create a subscriber")
        if data.external_id and store.find_by_external_id(tx, workspace_id, data.external_id):
            raise errors.Conflict(f"externalId {data.external_id!r} belongs to another subscriber")
        status = data.status or "active"
        sub = store.new(
            workspace_id,
            now,
            email=data.email,
            external_id=data.external_id,
            first_name=data.first_name or None,
            last_name=data.last_name or None,
            phone=data.phone or None,
            phone_country=data.phone_country or None,
            sms_consent=bool(data.sms_consent),
            status=status,
            attributes=dict(data.attributes or {}),
            timezone=data.timezone or None,
            created_at=signup or now,
            unsubscribed_at=None if status == "active" else now,
        )
        add_new(tx, sub, now)
        _add_tags_and_lists(tx, sub, data, now)
        return Saved(store.with_tags(tx, sub), created=True, updated=False, skipped=False)

    if signup is not None and signup < sub.created_at:
        store.backdate(tx, workspace_id, sub.id, signup)
        sub = sub.with_changes(created_at=signup)
    changes: dict[str, Any] = {}
    if strategy == "merge":
        changes = _merge_changes(tx, sub, data)
    elif strategy == "overwrite":
        changes = _overwrite_changes(tx, sub, data, now)
    if changes:
        sub = sub.with_changes(**changes, updated_at=now)
        store.save(tx, sub)
    updated = bool(changes)
    if strategy != "skip" and _add_tags_and_lists(tx, sub, data, now) and not updated:
        updated = True
        sub = sub.with_changes(updated_at=now)
        store.save(tx, sub)
    return Saved(store.with_tags(tx, sub), created=False, updated=updated, skipped=strategy == "skip")


def _merge_changes(tx: Tx, sub: Subscriber, data: SubscriberInput) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in _PROFILE_FIELDS:
        value = getattr(data, name)
        if value and getattr(sub, name) is None:
            changes[name] = value
    if data.email and sub.email is None and store.find_by_email(tx, sub.workspace_id, data.email) is None:
        changes["email"] = data.email
    if (
        data.external_id
        and sub.external_id is None
        and store.find_by_external_id(tx, sub.workspace_id, data.external_id) is None
    ):
        changes["external_id"] = data.external_id
    if data.sms_consent and not sub.sms_consent:
        changes["sms_consent"] = True
    if data.attributes:
        attributes = {**data.attributes, **sub.attributes}
        if attributes != sub.attributes:
            changes["attributes"] = attributes
    return changes


def _overwrite_changes(tx: Tx, sub: Subscriber, data: SubscriberInput, now: datetime) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in _PROFILE_FIELDS:
        value = getattr(data, name)
        if value and value != getattr(sub, name):
            changes[name] = value
    if data.email and data.email != sub.email:
        other = store.find_by_email(tx, sub.workspace_id, data.email)
        if other is None or other.id == sub.id:
            changes["email"] = data.email
    if (
        data.external_id
        and data.external_id != sub.external_id
        and store.find_by_external_id(tx, sub.workspace_id, data.external_id) is None
    ):
        changes["external_id"] = data.external_id
    if data.sms_consent is not None and data.sms_consent != sub.sms_consent:
        changes["sms_consent"] = data.sms_consent
    if data.attributes:
        attributes = {**sub.attributes, **data.attributes}
        if attributes != sub.attributes:
            changes["attributes"] = attributes
    # Overwrite may unsubscribe or mark bounced, but never reactivates: consent is not ours to restore.
    if data.status and data.status != sub.status and sub.status == "active":
        changes.update(status=data.status, unsubscribed_at=now)
    return changes


def _add_tags_and_lists(tx: Tx, sub: Subscriber, data: SubscriberInput, now: datetime) -> bool:
    changed = bool(data.tags) and bool(tag(tx, sub, data.tags, now).added)
    for ref in dict.fromkeys(r.strip() for r in data.lists if r.strip()):
        if lists.join(
            tx, sub.workspace_id, sub.id, lists.find_or_create(tx, sub.workspace_id, ref, now), now
        ):
            changed = True
    return changed


UPDATE_STATUSES = (*STATUSES, "complained")
ATTRIBUTE_STRATEGIES = ("replace", "merge")


def update(
    tx: Tx,
    workspace_id: str,
    lookup: Lookup,
    changes: dict[str, Any],
    now: datetime,
    *,
    attributes_strategy: str = DEFAULT_ATTRIBUTES_STRATEGY,
) -> Subscriber:
    """PATCH: apply exactly the fields the request carried. `changes` uses the dataclass field names
    plus `tags` (the complete new tag set). A null or empty value clears a field; an email or externalId
    another subscriber holds is a Conflict."""
    if attributes_strategy not in ATTRIBUTE_STRATEGIES:
        raise errors.InvalidInput(
            f"customAttributesStrategy must be one of {', '.join(ATTRIBUTE_STRATEGIES)}"
        )
    sub = require(tx, workspace_id, lookup)
    new: dict[str, Any] = {}
    for name in _PROFILE_FIELDS:
        if name in changes:
            new[name] = changes[name] or None
    if "email" in changes:
        email = changes["email"]
        if not email:
            raise errors.InvalidInput("email cannot be cleared")
        other = store.find_by_email(tx, workspace_id, email)
        if other is not None and other.id != sub.id:
            raise errors.Conflict(f"another subscriber already has the email {email!r}")
        new["email"] = email
    if "external_id" in changes:
        external_id = changes["external_id"] or None
        if external_id is not None:
            other = store.find_by_external_id(tx, workspace_id, external_id)
            if other is not None and other.id != sub.id:
                raise errors.Conflict(f"another subscriber already has the externalId {external_id!r}")
        new["external_id"] = external_id
    if changes.get("sms_consent") is not None:
        new["sms_consent"] = bool(changes["sms_consent"])
    if "attributes" in changes:
        given = dict(changes["attributes"] or {})
        new["attributes"] = {**sub.attributes, **given} if attributes_strategy == "merge" else given
    status = changes.get("status")
    if status is not None:
        if status not in UPDATE_STATUSES:
            raise errors.InvalidInput(f"status must be one of {', '.join(UPDATE_STATUSES)}")
        # Sequenzy reads a complaint back as `unsubscribed`; the suppression itself is kept elsewhere.
        status = "unsubscribed" if status == "complained" else status
        new["status"] = status
        if status == "active":
            new["unsubscribed_at"] = None
        elif sub.status == "active" or sub.unsubscribed_at is None:
            new["unsubscribed_at"] = now
    updated = sub.with_changes(**new)
    changed = updated != sub
    if "tags" in changes and set_tags(tx, sub, changes["tags"] or [], now):
        changed = True
    if changed:
        store.save(tx, updated.with_changes(updated_at=now))
    return require(tx, workspace_id, Lookup(subscriber_id=sub.id))


def delete(tx: Tx, workspace_id: str, lookup: Lookup) -> None:
    """Delete the subscriber with their tags and list memberships; their events stay in the log."""
    sub = require(tx, workspace_id, lookup)
    store.delete(tx, workspace_id, sub.id)


@dataclass(frozen=True)
class Detail:
    subscriber: Subscriber
    lists: list[list_store.Membership]
    activity: list[event_store.Event]


ACTIVITY_LIMIT = 20


def detail(tx: Tx, workspace_id: str, lookup: Lookup) -> Detail:
    """A subscriber with list memberships and latest events, for GET /subscribers/{email}."""
    sub = require(tx, workspace_id, lookup)
    return Detail(
        sub,
        list_store.memberships(tx, workspace_id, sub.id),
        event_store.list_for_subscriber(tx, workspace_id, sub.id, limit=ACTIVITY_LIMIT),
    )


# -- listing ---------------------------------------------------------------------------------------

DEFAULT_PAGE_SIZE = 50
# Sequenzy documents 1000 as the most one page may hold (its full-audience export uses limit=1000).
MAX_PAGE_SIZE = 1000
# The highest page number a list request may ask for, as on the other paged lists of the API: its row
# offset must fit the databases' 64-bit integers (a larger one failed at the store, a 500).
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class SearchQuery:
    page: int | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None
    include_total: bool = True
    status: str | None = None
    email: str | None = None
    query: str | None = None
    # Comma-separated in the request; a subscriber must have all of them (Sequenzy documents "all").
    tags: Sequence[str] = ()
    list_ref: str | None = None
    list_id: str | None = None
    list_name: str | None = None


@dataclass(frozen=True)
class Page:
    subscribers: list[Subscriber]
    page: int | None
    limit: int
    total: int | None
    has_more: bool
    next_cursor: str | None


def encode_cursor(sub: Subscriber) -> str:
    raw = orjson.dumps([sub.created_at.isoformat(), sub.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, sub_id = orjson.loads(raw)
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None or not isinstance(sub_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise errors.InvalidInput("cursor is not one this API returned") from exc
    return when, sub_id


def search(tx: Tx, workspace_id: str, q: SearchQuery) -> Page:
    """Newest first. Page numbers count rows; a cursor continues after the last row seen, which stays
    stable while subscribers come and go, and skips the count as Sequenzy's does (`total` is null)."""
    if q.page is not None and q.cursor is not None:
        raise errors.InvalidInput("page and cursor cannot be combined; follow pagination.nextCursor")
    if not 1 <= q.limit <= MAX_PAGE_SIZE:
        raise errors.InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    if q.status is not None and q.status not in (*STATUSES, "all"):
        raise errors.InvalidInput(f"status must be one of {', '.join((*STATUSES, 'all'))}")
    list_id = None
    if q.list_id or q.list_name or q.list_ref:
        found = None
        if q.list_id:
            found = list_store.find_by_id(tx, workspace_id, q.list_id)
        elif q.list_name:
            found = list_store.find_by_name(tx, workspace_id, q.list_name)
        elif q.list_ref:
            found = lists.resolve(tx, workspace_id, q.list_ref)
        if found is None:
            raise errors.NotFound(f"no list {q.list_id or q.list_name or q.list_ref!r}")
        list_id = found.id
    where = store.Filter(
        status=None if q.status in (None, "all") else q.status,
        email_contains=q.email or None,
        query=q.query or None,
        tags=tuple(clean_tags(q.tags)),
        list_id=list_id,
    )
    page = q.page or 1
    if q.cursor is not None:
        rows = store.search(tx, workspace_id, where, limit=q.limit + 1, after=decode_cursor(q.cursor))
    else:
        if not 1 <= page <= MAX_PAGE:
            raise errors.InvalidInput(f"page must be between 1 and {MAX_PAGE}")
        rows = store.search(tx, workspace_id, where, limit=q.limit + 1, offset=(page - 1) * q.limit)
    has_more = len(rows) > q.limit
    rows = rows[: q.limit]
    total = store.count(tx, workspace_id, where) if q.cursor is None and q.include_total else None
    return Page(
        subscribers=rows,
        page=None if q.cursor is not None else page,
        limit=q.limit,
        total=total,
        has_more=has_more,
        next_cursor=encode_cursor(rows[-1]) if has_more and rows else None,
    )


def total_pages(page: Page) -> int | None:
    return None if page.total is None else math.ceil(page.total / page.limit)


# -- tags, by identity and in bulk -----------------------------------------------------------------


def find_or_create(
    tx: Tx, workspace_id: str, identity: Identity, now: datetime, *, new_id: str | None = None
) -> tuple[Subscriber, bool]:
    """The subscriber the identity names, with its names and attributes merged in, or a new one (`new_id`:
    as for `upsert`). Unlike `upsert` a new subscriber needs an email, as Sequenzy requires; an unknown
    externalId alone is NotFound."""
    if not identity.email and not identity.external_id:
        raise errors.InvalidInput("an email or an externalId is required to identify the subscriber")
    if not identity.email and find(tx, workspace_id, identity) is None:
        raise errors.NotFound(
            f"no subscriber with externalId {identity.external_id!r}; send an email to create one"
        )
    return upsert(tx, workspace_id, identity, now, new_id=new_id)


@dataclass(frozen=True)
class TagResult:
    subscriber: Subscriber
    created: bool
    tagged: Tagged


def add_tags(tx: Tx, workspace_id: str, identity: Identity, names: Sequence[str], now: datetime) -> TagResult:
    """POST /subscribers/tags and /subscribers/tags/bulk: creates the subscriber if new."""
    wanted = clean_tags(names)
    if not wanted:
        raise errors.InvalidInput("at least one non-empty tag is required")
    sub, created = find_or_create(tx, workspace_id, identity, now)
    tagged = tag(tx, sub, wanted, now)
    return TagResult(store.with_tags(tx, sub), created, tagged)


def remove_tag(
    tx: Tx, workspace_id: str, identity: Identity, name: str, now: datetime
) -> tuple[Subscriber, bool]:
    """POST /subscribers/tags/remove. An unknown subscriber is NotFound: removing a tag from nobody
    should not create somebody. Returns (subscriber, whether the tag was on them)."""
    if not identity.email and not identity.external_id:
        raise errors.InvalidInput("an email or an externalId is required to identify the subscriber")
    sub = find(tx, workspace_id, identity)
    if sub is None:
        raise errors.NotFound(f"no subscriber with {_describe(identity)}")
    removed = untag(tx, sub, [name], now)
    return store.with_tags(tx, sub), bool(removed)


def _describe(identity: Identity) -> str:
    if identity.email:
        return f"email {identity.email!r}"
    return f"externalId {identity.external_id!r}"


BULK_MAX = 500


@dataclass(frozen=True)
class BulkTagged:
    requested: int
    matched: int
    updated: int
    unchanged: int
    not_found_emails: list[str]
    not_found_external_ids: list[str]
    not_found_ids: list[str]
    tags: list[str]


def bulk_tags(
    tx: Tx,
    workspace_id: str,
    *,
    add: bool,
    names: Sequence[str],
    emails: Sequence[str],
    external_ids: Sequence[str],
    subscriber_ids: Sequence[str],
    now: datetime,
) -> BulkTagged:
    """Add or remove tags on up to 500 existing subscribers. Unknown identifiers are reported, never
    created: the call reconciles tags, it does not import contacts."""
    wanted = clean_tags(names)
    if not wanted:
        raise errors.InvalidInput("at least one non-empty tag is required")
    requested = len(emails) + len(external_ids) + len(subscriber_ids)
    if requested == 0:
        raise errors.InvalidInput("send emails, externalIds or subscriberIds")
    if requested > BULK_MAX:
        raise errors.InvalidInput(f"at most {BULK_MAX} subscribers per request")
    by_email = store.find_many(tx, workspace_id, emails=emails)
    by_external = store.find_many(tx, workspace_id, external_ids=external_ids)
    by_id = store.find_many(tx, workspace_id, subscriber_ids=subscriber_ids)
    email_keys = {store.email_key(s.email) for s in by_email if s.email}
    external = {s.external_id for s in by_external}
    known_ids = {s.id for s in by_id}
    matched = {s.id: s for s in [*by_email, *by_external, *by_id]}
    updated = 0
    for sub in sorted(matched.values(), key=lambda s: s.id):
        changed = tag(tx, sub, wanted, now).added if add else untag(tx, sub, wanted, now)
        if changed:
            updated += 1
            store.save(tx, sub.with_changes(updated_at=now))
    return BulkTagged(
        requested=requested,
        matched=len(matched),
        updated=updated,
        unchanged=len(matched) - updated,
        not_found_emails=[e for e in emails if store.email_key(e) not in email_keys],
        not_found_external_ids=[x for x in external_ids if x not in external],
        not_found_ids=[i for i in subscriber_ids if i not in known_ids],
        tags=wanted,
    )


# -- list membership by email ----------------------------------------------------------------------


@dataclass(frozen=True)
class ListAddResult:
    email: str
    created: bool
    updated: bool
    skipped: bool
    added_to_list: bool


def add_to_list(
    tx: Tx, workspace_id: str, list_id: str, emails: Sequence[str], strategy: str, now: datetime
) -> list[ListAddResult]:
    """POST /lists/{id}/subscribers: each email becomes a subscriber if new and joins the list, whatever
    the duplicate strategy (which governs only the profile fields, and this call carries none)."""
    item = lists.require(tx, workspace_id, list_id)
    if len(emails) > BULK_MAX:
        raise errors.InvalidInput(f"at most {BULK_MAX} emails per request")
    out = []
    for email in emails:
        saved = create(tx, workspace_id, SubscriberInput(email=email), strategy, now)
        joined = lists.join(tx, workspace_id, saved.subscriber.id, item, now)
        out.append(ListAddResult(email, saved.created, saved.updated, saved.skipped, joined))
    return out


# -- custom events ---------------------------------------------------------------------------------

# Sequenzy rejects history older than its 5-year import window; a clock far ahead is a client bug.
HISTORY_WINDOW = timedelta(days=5 * 365)
FUTURE_TOLERANCE = timedelta(days=1)
EVENTS_PER_REQUEST = 100


@dataclass(frozen=True)
class EventInput:
    name: str
    event_id: str | None = None
    occurred_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Triggered:
    event: event_store.Event
    duplicate: bool
    definition_created: bool


@dataclass(frozen=True)
class TriggerResult:
    subscriber: Subscriber
    created: bool
    events: list[Triggered]


def _check_event(data: EventInput, now: datetime) -> None:
    if not data.name.strip():
        raise errors.InvalidInput("an event name is required")
    if data.occurred_at is not None:
        if data.occurred_at - now > FUTURE_TOLERANCE:
            raise errors.InvalidInput("occurredAt is more than a day in the future")
        if now - data.occurred_at > HISTORY_WINDOW:
            raise errors.InvalidInput("occurredAt is older than the 5-year history window")


def trigger(
    tx: Tx,
    workspace_id: str,
    identity: Identity,
    items: Sequence[EventInput],
    now: datetime,
    *,
    source: str = "sequenzy",
) -> TriggerResult:
    """Append custom events for one subscriber, created if new. An `eventId` is a strict idempotency key
    (`event:<eventId>`): a replay returns the original event with duplicate=true and changes nothing,
    not even the subscriber's names or attributes. Event names are made canonical, so a vendor alias
    such as "Started Checkout" lands as ecommerce.checkout_started."""
    if not items:
        raise errors.InvalidInput("at least one event is required")
    if len(items) > EVENTS_PER_REQUEST:
        raise errors.InvalidInput(f"at most {EVENTS_PER_REQUEST} events per request")
    for item in items:
        _check_event(item, now)
    replays = {
        item.event_id: event_store.find_by_key(tx, workspace_id, f"event:{item.event_id}")
        for item in items
        if item.event_id is not None
    }
    originals = [replays.get(item.event_id) if item.event_id is not None else None for item in items]
    if all(originals):
        # Every event is a replay: answer as the first time did, and apply nothing again.
        first = originals[0]
        assert first is not None
        sub = None if first.subscriber_id is None else store.find_by_id(tx, workspace_id, first.subscriber_id)
        if sub is not None:
            return TriggerResult(
                store.with_tags(tx, sub), False, [Triggered(e, True, False) for e in originals if e]
            )
    sub, created = find_or_create(tx, workspace_id, identity, now)
    results = []
    for item in items:
        name = events.canonical_name(item.name.strip())
        definition_created = not store.event_name_seen(tx, workspace_id, name)
        recorded = events.record(
            tx,
            workspace_id,
            name=name,
            source=source,
            subscriber_id=sub.id,
            properties=dict(item.properties),
            now=now,
            occurred_at=item.occurred_at,
            idempotency_key=None if item.event_id is None else f"event:{item.event_id}",
        )
        results.append(
            Triggered(recorded.event, recorded.duplicate, definition_created and not recorded.duplicate)
        )
    return TriggerResult(store.with_tags(tx, sub), created, results)
