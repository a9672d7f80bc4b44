"""Subscriber rows and their tags. Every function takes the workspace id first: no query runs unscoped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback import addresses, ids
from cartback.store import driver
from cartback.store.db import Tx
from cartback.store.tables import events, list_members, subscriber_tags, subscribers, tags


@dataclass(frozen=True)
class Subscriber:
    id: str
    workspace_id: str
    email: str | None
    external_id: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    phone_country: str | None
    sms_consent: bool
    status: str
    attributes: dict[str, Any]
    timezone: str | None
    created_at: datetime
    updated_at: datetime
    unsubscribed_at: datetime | None
    anonymous_id: str | None = None
    tags: tuple[str, ...] = field(default=())

    def with_changes(self, **changes: Any) -> Subscriber:
        return replace(self, **changes)


_COLUMNS = [f.name for f in fields(Subscriber) if f.name != "tags"]


# Built once with bind parameters, so SQLAlchemy need not rebuild them and their cache keys on every call.
_FIND_BY_EMAIL_KEY = sa.select(subscribers).where(
    subscribers.c.workspace_id == sa.bindparam("workspace_id"),
    subscribers.c.email_key == sa.bindparam("email_key"),
)


def email_key(email: str) -> str:
    """The key subscribers and suppressions are unique and looked up by (`addresses.key`)."""
    return addresses.key(email)


def _from_row(row: Row[Any]) -> Subscriber:
    values = {name: getattr(row, name) for name in _COLUMNS}
    values["attributes"] = dict(values["attributes"] or {})
    return Subscriber(**values)


def find_by_email(tx: Tx, workspace_id: str, email: str) -> Subscriber | None:
    row = tx.execute(
        _FIND_BY_EMAIL_KEY, {"workspace_id": workspace_id, "email_key": email_key(email)}
    ).first()
    return None if row is None else _from_row(row)


_FIND_MANY_BY_EMAIL_KEY = sa.select(subscribers).where(
    subscribers.c.workspace_id == sa.bindparam("workspace_id"),
    subscribers.c.email_key.in_(sa.bindparam("email_keys", expanding=True)),
)


def find_many_by_email_key(tx: Tx, workspace_id: str, keys: Sequence[str]) -> dict[str, Subscriber]:
    """Subscribers by `email_key`, in one query: {key: subscriber}; keys nobody has are left out."""
    if not keys:
        return {}
    rows = tx.execute(_FIND_MANY_BY_EMAIL_KEY, {"workspace_id": workspace_id, "email_keys": list(keys)})
    return {row.email_key: _from_row(row) for row in rows}


def find_by_external_id(tx: Tx, workspace_id: str, external_id: str) -> Subscriber | None:
    row = tx.execute(
        sa.select(subscribers).where(
            subscribers.c.workspace_id == workspace_id, subscribers.c.external_id == external_id
        )
    ).first()
    return None if row is None else _from_row(row)


def find_by_phone(tx: Tx, workspace_id: str, phone: str) -> Subscriber | None:
    """The oldest subscriber with this phone number (phones are not unique: Sequenzy never made them so)."""
    row = tx.execute(
        sa.select(subscribers)
        .where(subscribers.c.workspace_id == workspace_id, subscribers.c.phone == phone)
        .order_by(subscribers.c.id)
        .limit(1)
    ).first()
    return None if row is None else _from_row(row)


def find_by_anonymous_id(tx: Tx, workspace_id: str, anonymous_id: str) -> Subscriber | None:
    row = tx.execute(
        sa.select(subscribers).where(
            subscribers.c.workspace_id == workspace_id, subscribers.c.anonymous_id == anonymous_id
        )
    ).first()
    return None if row is None else _from_row(row)


_HELD_ANONYMOUS_IDS = sa.select(subscribers.c.anonymous_id).where(
    subscribers.c.workspace_id == sa.bindparam("workspace_id"),
    subscribers.c.anonymous_id.in_(sa.bindparam("anonymous_ids", expanding=True)),
)


def held_anonymous_ids(tx: Tx, workspace_id: str, anonymous_ids: Sequence[str]) -> set[str]:
    """Which of these anonymous ids a subscriber holds, in one query."""
    if not anonymous_ids:
        return set()
    rows = tx.execute(
        _HELD_ANONYMOUS_IDS, {"workspace_id": workspace_id, "anonymous_ids": list(anonymous_ids)}
    )
    return set(rows.scalars())


_FIND_BY_ID = sa.select(subscribers).where(
    subscribers.c.workspace_id == sa.bindparam("workspace_id"), subscribers.c.id == sa.bindparam("id")
)


_FIND_MANY_BY_ID = sa.select(subscribers).where(
    subscribers.c.workspace_id == sa.bindparam("workspace_id"),
    subscribers.c.id.in_(sa.bindparam("ids", expanding=True)),
)


def find_by_id(tx: Tx, workspace_id: str, subscriber_id: str) -> Subscriber | None:
    row = tx.execute(_FIND_BY_ID, {"workspace_id": workspace_id, "id": subscriber_id}).first()
    return None if row is None else _from_row(row)


def find_many_by_id(tx: Tx, workspace_id: str, subscriber_ids: Sequence[str]) -> dict[str, Subscriber]:
    """Several subscribers (without their tags), by id, in one query; ids that do not exist are left out."""
    if not subscriber_ids:
        return {}
    rows = tx.execute(_FIND_MANY_BY_ID, {"workspace_id": workspace_id, "ids": list(subscriber_ids)}).all()
    return {row.id: _from_row(row) for row in rows}


def find_many_with_tags(tx: Tx, workspace_id: str, subscriber_ids: Sequence[str]) -> dict[str, Subscriber]:
    """Several subscribers with their tags, by id, in two queries; ids that do not exist are left out."""
    if not subscriber_ids:
        return {}
    found = find_many_by_id(tx, workspace_id, subscriber_ids)
    tagged = tag_names(tx, workspace_id, list(found))
    return {sid: replace(sub, tags=tagged[sid]) for sid, sub in found.items()}


def new(workspace_id: str, now: datetime, **values: Any) -> Subscriber:
    """A subscriber not yet stored, with defaults filled in."""
    base: dict[str, Any] = dict(
        id=ids.new_id("sub"),
        workspace_id=workspace_id,
        email=None,
        external_id=None,
        first_name=None,
        last_name=None,
        phone=None,
        phone_country=None,
        sms_consent=False,
        status="active",
        attributes={},
        timezone=None,
        created_at=now,
        updated_at=now,
        unsubscribed_at=None,
        anonymous_id=None,
    )
    base.update(values)
    return Subscriber(**base)


def insert(tx: Tx, sub: Subscriber) -> None:
    insert_many(tx, [sub])


_INSERT_MANY = driver.Insert(subscribers, [*_COLUMNS, "email_key"])


def insert_many(tx: Tx, subs: Sequence[Subscriber]) -> None:
    """New subscribers, with one executemany."""
    _INSERT_MANY.run(
        tx,
        [
            [getattr(sub, name) for name in _COLUMNS] + [email_key(sub.email) if sub.email else None]
            for sub in subs
        ],
    )


def save(tx: Tx, sub: Subscriber) -> None:
    """Write every column of an existing subscriber back."""
    values = {
        name: getattr(sub, name) for name in _COLUMNS if name not in ("id", "workspace_id", "created_at")
    }
    values["email_key"] = email_key(sub.email) if sub.email else None
    tx.execute(
        subscribers.update()
        .where(subscribers.c.workspace_id == sub.workspace_id, subscribers.c.id == sub.id)
        .values(**values)
    )


def backdate(tx: Tx, workspace_id: str, subscriber_id: str, created_at: datetime) -> None:
    """Move the signup date earlier (an import of older history); `save` never touches created_at."""
    tx.execute(
        subscribers.update()
        .where(
            subscribers.c.workspace_id == workspace_id,
            subscribers.c.id == subscriber_id,
            subscribers.c.created_at > created_at,
        )
        .values(created_at=created_at)
    )


def delete(tx: Tx, workspace_id: str, subscriber_id: str) -> bool:
    result = tx.execute(
        subscribers.delete().where(
            subscribers.c.workspace_id == workspace_id, subscribers.c.id == subscriber_id
        )
    )
    return result.rowcount > 0


# -- tags ------------------------------------------------------------------------------------------


def tag_names(tx: Tx, workspace_id: str, subscriber_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Tags of several subscribers in one query, sorted by name."""
    if not subscriber_ids:
        return {}
    rows = tx.execute(
        sa.select(subscriber_tags.c.subscriber_id, tags.c.name)
        .join(tags, tags.c.id == subscriber_tags.c.tag_id)
        .where(
            subscriber_tags.c.workspace_id == workspace_id,
            subscriber_tags.c.subscriber_id.in_(subscriber_ids),
        )
        .order_by(tags.c.name)
    ).all()
    out: dict[str, list[str]] = {sid: [] for sid in subscriber_ids}
    for sid, name in rows:
        out[sid].append(name)
    return {sid: tuple(names) for sid, names in out.items()}


def with_tags(tx: Tx, sub: Subscriber) -> Subscriber:
    return replace(sub, tags=tag_names(tx, sub.workspace_id, [sub.id])[sub.id])


def ensure_tags(
    tx: Tx, workspace_id: str, names: Iterable[str], now: datetime
) -> tuple[dict[str, str], list[str]]:
    """Return ({name: tag id}, names created now)."""
    wanted = list(dict.fromkeys(n for n in names))
    if not wanted:
        return {}, []
    existing = dict(
        tx.execute(
            sa.select(tags.c.name, tags.c.id).where(
                tags.c.workspace_id == workspace_id, tags.c.name.in_(wanted)
            )
        ).all()
    )
    created = [n for n in wanted if n not in existing]
    for name in created:
        tag_id = ids.new_id("tag")
        tx.execute(tags.insert().values(id=tag_id, workspace_id=workspace_id, name=name, created_at=now))
        existing[name] = tag_id
    return existing, created


def add_tags(
    tx: Tx, workspace_id: str, subscriber_id: str, names: Iterable[str], now: datetime
) -> tuple[list[str], list[str]]:
    """Tag a subscriber; return (tags newly on the subscriber, tags newly created in the workspace)."""
    tag_ids, created = ensure_tags(tx, workspace_id, names, now)
    if not tag_ids:
        return [], created
    have = set(
        tx.execute(
            sa.select(subscriber_tags.c.tag_id).where(
                subscriber_tags.c.workspace_id == workspace_id,
                subscriber_tags.c.subscriber_id == subscriber_id,
                subscriber_tags.c.tag_id.in_(list(tag_ids.values())),
            )
        ).scalars()
    )
    added = [name for name, tag_id in tag_ids.items() if tag_id not in have]
    if added:
        tx.execute(
            subscriber_tags.insert(),
            [
                dict(
                    workspace_id=workspace_id, subscriber_id=subscriber_id, tag_id=tag_ids[n], created_at=now
                )
                for n in added
            ],
        )
    return added, created


def remove_tags(tx: Tx, workspace_id: str, subscriber_id: str, names: Iterable[str]) -> list[str]:
    """Untag a subscriber; return the tags that were on it."""
    names = list(names)
    if not names:
        return []
    rows = tx.execute(
        sa.select(tags.c.id, tags.c.name)
        .join(subscriber_tags, subscriber_tags.c.tag_id == tags.c.id)
        .where(
            subscriber_tags.c.workspace_id == workspace_id,
            subscriber_tags.c.subscriber_id == subscriber_id,
            tags.c.name.in_(names),
        )
    ).all()
    if rows:
        tx.execute(
            subscriber_tags.delete().where(
                subscriber_tags.c.workspace_id == workspace_id,
                subscriber_tags.c.subscriber_id == subscriber_id,
                subscriber_tags.c.tag_id.in_([r.id for r in rows]),
            )
        )
    return [r.name for r in rows]


def replace_tags(tx: Tx, workspace_id: str, subscriber_id: str, names: Iterable[str], now: datetime) -> None:
    names = list(dict.fromkeys(names))
    current = tag_names(tx, workspace_id, [subscriber_id])[subscriber_id]
    remove_tags(tx, workspace_id, subscriber_id, [n for n in current if n not in names])
    add_tags(tx, workspace_id, subscriber_id, names, now)


def find_many(
    tx: Tx,
    workspace_id: str,
    *,
    emails: Sequence[str] = (),
    external_ids: Sequence[str] = (),
    subscriber_ids: Sequence[str] = (),
) -> list[Subscriber]:
    """Everyone matching any of the given emails (case-insensitive), externalIds or ids, in one query."""
    conditions = []
    if emails:
        conditions.append(subscribers.c.email_key.in_(sorted({email_key(e) for e in emails})))
    if external_ids:
        conditions.append(subscribers.c.external_id.in_(sorted(set(external_ids))))
    if subscriber_ids:
        conditions.append(subscribers.c.id.in_(sorted(set(subscriber_ids))))
    if not conditions:
        return []
    rows = tx.execute(
        sa.select(subscribers).where(subscribers.c.workspace_id == workspace_id, sa.or_(*conditions))
    ).all()
    return [_from_row(r) for r in rows]


# -- listing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """What GET /subscribers narrows by; None or empty means no narrowing."""

    status: str | None = None
    email_contains: str | None = None
    query: str | None = None
    # Subscribers must carry every one of these tags.
    tags: tuple[str, ...] = ()
    list_id: str | None = None


def _contains(column: Any, needle: str) -> Any:
    return sa.func.lower(column).contains(needle.lower(), autoescape=True)


def _where(workspace_id: str, where: Filter) -> list[Any]:
    conditions: list[Any] = [subscribers.c.workspace_id == workspace_id]
    if where.status:
        conditions.append(subscribers.c.status == where.status)
    if where.email_contains:
        conditions.append(_contains(subscribers.c.email, where.email_contains))
    if where.query:
        conditions.append(
            sa.or_(
                _contains(subscribers.c.email, where.query),
                _contains(subscribers.c.first_name, where.query),
                _contains(subscribers.c.last_name, where.query),
                _contains(subscribers.c.external_id, where.query),
            )
        )
    for name in where.tags:
        conditions.append(
            sa.exists().where(
                subscriber_tags.c.subscriber_id == subscribers.c.id,
                subscriber_tags.c.workspace_id == workspace_id,
                tags.c.id == subscriber_tags.c.tag_id,
                tags.c.name == name,
            )
        )
    if where.list_id is not None:
        conditions.append(
            sa.exists().where(
                list_members.c.subscriber_id == subscribers.c.id,
                list_members.c.workspace_id == workspace_id,
                list_members.c.list_id == where.list_id,
                list_members.c.unsubscribed_at.is_(None),
            )
        )
    return conditions


def search(
    tx: Tx,
    workspace_id: str,
    where: Filter,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, str] | None = None,
) -> list[Subscriber]:
    """Newest first (createdAt, then id, both descending, as Sequenzy orders them). `after` is the
    (created_at, id) of the last row already seen: keyset paging stays stable while rows come and go."""
    conditions = _where(workspace_id, where)
    if after is not None:
        created_at, sub_id = after
        conditions.append(
            sa.or_(
                subscribers.c.created_at < created_at,
                sa.and_(subscribers.c.created_at == created_at, subscribers.c.id < sub_id),
            )
        )
    rows = tx.execute(
        sa.select(subscribers)
        .where(*conditions)
        .order_by(subscribers.c.created_at.desc(), subscribers.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    found = [_from_row(r) for r in rows]
    names = tag_names(tx, workspace_id, [s.id for s in found])
    return [replace(s, tags=names[s.id]) for s in found]


def count(tx: Tx, workspace_id: str, where: Filter) -> int:
    return int(
        tx.execute(
            sa.select(sa.func.count()).select_from(subscribers).where(*_where(workspace_id, where))
        ).scalar_one()
    )


# -- activity --------------------------------------------------------------------------------------


def event_name_seen(tx: Tx, workspace_id: str, name: str) -> bool:
    """Whether the workspace has any event of this name: Sequenzy's 'event definition exists'.
    An EXISTS on the (workspace_id, name, occurred_at) index, so it costs one index probe."""
    return bool(
        tx.execute(
            sa.select(sa.exists().where(events.c.workspace_id == workspace_id, events.c.name == name))
        ).scalar()
    )


# -- profile listing (the Klaviyo surface) -----------------------------------------------------------


@dataclass(frozen=True)
class ProfileQuery:
    """Exact identifier matches (any of the values given per field; None: no condition), time bounds
    (exclusive), and a keyset page in `sort` order (`created`, `updated`, `email` or `id`)."""

    ids: tuple[str, ...] | None = None
    emails: tuple[str, ...] | None = None
    phones: tuple[str, ...] | None = None
    external_ids: tuple[str, ...] | None = None
    anonymous_ids: tuple[str, ...] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    sort: str = "id"
    descending: bool = False
    after: tuple[Any, str] | None = None


PROFILE_SORTS = {"created": "created_at", "updated": "updated_at", "email": "email_key", "id": "id"}


def sort_value(sub: Subscriber, sort: str) -> Any:
    """The value a page in this order continues from."""
    if sort == "email":
        return email_key(sub.email) if sub.email else ""
    return getattr(sub, PROFILE_SORTS[sort])


def profile_page(tx: Tx, workspace_id: str, q: ProfileQuery, limit: int) -> list[Subscriber]:
    query = sa.select(subscribers).where(subscribers.c.workspace_id == workspace_id)
    for column, values in (
        (subscribers.c.id, q.ids),
        (subscribers.c.email_key, None if q.emails is None else tuple(email_key(e) for e in q.emails)),
        (subscribers.c.phone, q.phones),
        (subscribers.c.external_id, q.external_ids),
        (subscribers.c.anonymous_id, q.anonymous_ids),
    ):
        if values is not None:
            query = query.where(column.in_(values))
    for column, after, before in (
        (subscribers.c.created_at, q.created_after, q.created_before),
        (subscribers.c.updated_at, q.updated_after, q.updated_before),
    ):
        if after is not None:
            query = query.where(column > after)
        if before is not None:
            query = query.where(column < before)
    column = subscribers.c[PROFILE_SORTS[q.sort]]
    value = sa.func.coalesce(column, "") if q.sort == "email" else column
    if q.after is not None:
        last_value, last_id = q.after
        if q.sort == "id":
            query = query.where(subscribers.c.id < last_id if q.descending else subscribers.c.id > last_id)
        else:
            bound = sa.tuple_(sa.literal(last_value, column.type), sa.literal(last_id))
            key = sa.tuple_(value, subscribers.c.id)
            query = query.where(key < bound if q.descending else key > bound)
    if q.descending:
        query = query.order_by(value.desc(), subscribers.c.id.desc())
    else:
        query = query.order_by(value, subscribers.c.id)
    return [_from_row(r) for r in tx.execute(query.limit(limit)).all()]
