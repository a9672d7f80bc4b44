"""The append-only event log. Rows are inserted, never updated."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from cartback.store import driver
from cartback.store.db import Tx
from cartback.store.tables import events


@dataclass(frozen=True)
class Event:
    id: str
    workspace_id: str
    subscriber_id: str | None
    name: str
    source: str
    properties: dict[str, Any]
    occurred_at: datetime
    received_at: datetime
    idempotency_key: str | None
    historical: bool
    # Numeric value in major units, for metric aggregates (see core/events.value_of).
    value: float | None = None


# The columns that make an Event, in its fields' order.
COLUMNS = [f.name for f in fields(Event)]


def from_row(row: Row[Any]) -> Event:
    return Event(
        row.id,
        row.workspace_id,
        row.subscriber_id,
        row.name,
        row.source,
        dict(row.properties),
        row.occurred_at,
        row.received_at,
        row.idempotency_key,
        row.historical,
        row.value,
    )


# Built once with bind parameters, so SQLAlchemy need not rebuild them and their cache keys on every call.
_INSERT = events.insert()
_FIND_BY_KEY = sa.select(events).where(
    events.c.workspace_id == sa.bindparam("workspace_id"),
    events.c.idempotency_key == sa.bindparam("idempotency_key"),
)


def subscriber_key(subscriber_id: str | None) -> int | None:
    """The first 8 bytes of BLAKE2b of the id, as a signed 64-bit integer. Two subscribers share a key
    with odds of about n² / 2^65 (one in 37 million for a million subscribers): then a unique count
    would be one short."""
    if subscriber_id is None:
        return None
    digest = hashlib.blake2b(subscriber_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def append(tx: Tx, event: Event) -> None:
    tx.execute(_INSERT, _values(event))


def append_many(tx: Tx, batch: list[Event]) -> None:
    """Append events with one executemany; a used idempotency key fails it, as it fails `append`."""
    _APPEND.run(tx, [_row(e) for e in batch])


def append_new(tx: Tx, batch: list[Event]) -> None:
    """Append events with one executemany, leaving out any whose (workspace, idempotency key) is taken,
    by the log or earlier in `batch` (ON CONFLICT DO NOTHING)."""
    if batch:
        insert = _INSERT_NEW_PG if tx.dialect.name == "postgresql" else _INSERT_NEW_SQLITE
        tx.execute(insert, [_values(e) for e in batch])


_KEY = ["workspace_id", "idempotency_key"]
_INSERT_NEW_PG = postgresql.insert(events).on_conflict_do_nothing(index_elements=_KEY)
_INSERT_NEW_SQLITE = sqlite.insert(events).on_conflict_do_nothing(index_elements=_KEY)


_VALUE_COLUMNS = (
    "id",
    "workspace_id",
    "subscriber_id",
    "name",
    "source",
    "properties",
    "occurred_at",
    "received_at",
    "idempotency_key",
    "historical",
    "value",
    "subscriber_key",
)
_APPEND = driver.Insert(events, _VALUE_COLUMNS)


def _row(event: Event) -> list[Any]:
    """The event's column values, in _VALUE_COLUMNS order."""
    return [
        event.id,
        event.workspace_id,
        event.subscriber_id,
        event.name,
        event.source,
        event.properties,
        event.occurred_at,
        event.received_at,
        event.idempotency_key,
        event.historical,
        event.value,
        subscriber_key(event.subscriber_id),
    ]


def _values(event: Event) -> dict[str, Any]:
    return dict(zip(_VALUE_COLUMNS, _row(event), strict=True))


def find_by_key(tx: Tx, workspace_id: str, idempotency_key: str) -> Event | None:
    row = tx.execute(_FIND_BY_KEY, {"workspace_id": workspace_id, "idempotency_key": idempotency_key}).first()
    return None if row is None else from_row(row)


def set_key(tx: Tx, workspace_id: str, event_id: str, idempotency_key: str) -> None:
    tx.execute(
        events.update()
        .where(events.c.workspace_id == workspace_id, events.c.id == event_id)
        .values(idempotency_key=idempotency_key)
    )


def list_for_subscriber(tx: Tx, workspace_id: str, subscriber_id: str, limit: int = 50) -> list[Event]:
    rows = tx.execute(
        sa.select(events)
        .where(events.c.workspace_id == workspace_id, events.c.subscriber_id == subscriber_id)
        .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        .limit(limit)
    ).all()
    return [from_row(r) for r in rows]


def count(tx: Tx, workspace_id: str, name: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(events).where(events.c.workspace_id == workspace_id)
    if name is not None:
        query = query.where(events.c.name == name)
    return int(tx.execute(query).scalar_one())


def for_subscriber_since(
    tx: Tx, workspace_id: str, subscriber_id: str, since: datetime, names: list[str]
) -> list[Event]:
    """Events of these names received at or after `since`, oldest first: what stop conditions look at."""
    rows = tx.execute(
        sa.select(events)
        .where(
            events.c.workspace_id == workspace_id,
            events.c.subscriber_id == subscriber_id,
            events.c.name.in_(names),
            events.c.received_at >= since,
        )
        .order_by(events.c.received_at, events.c.id)
    ).all()
    return [from_row(r) for r in rows]


_FOR_SUBSCRIBERS_SINCE = (
    sa.select(events)
    .where(
        events.c.workspace_id == sa.bindparam("workspace_id"),
        events.c.subscriber_id.in_(sa.bindparam("subscriber_ids", expanding=True)),
        events.c.name.in_(sa.bindparam("names", expanding=True)),
        events.c.received_at >= sa.bindparam("since"),
    )
    .order_by(events.c.received_at, events.c.id)
)


def for_subscribers_since(
    tx: Tx, workspace_id: str, subscriber_ids: list[str], since: datetime, names: list[str]
) -> dict[str, list[Event]]:
    """for_subscriber_since for several subscribers in one query: {subscriber id: events oldest first}."""
    out: dict[str, list[Event]] = {sid: [] for sid in subscriber_ids}
    if not subscriber_ids or not names:
        return out
    params = {"workspace_id": workspace_id, "subscriber_ids": subscriber_ids, "names": names, "since": since}
    for row in tx.execute(_FOR_SUBSCRIBERS_SINCE, params).all():
        out[row.subscriber_id].append(from_row(row))
    return out


def find_by_id(tx: Tx, workspace_id: str, event_id: str) -> Event | None:
    row = tx.execute(
        sa.select(events).where(events.c.workspace_id == workspace_id, events.c.id == event_id)
    ).first()
    return None if row is None else from_row(row)


# Each step seeks the next name on the (workspace_id, name, occurred_at, ...) index, so listing the
# distinct names costs one index probe per name, not a scan of the workspace's events.
_DISTINCT_NAMES = sa.text(
    """
    WITH RECURSIVE names(name) AS (
        SELECT MIN(name) FROM events WHERE workspace_id = :workspace_id
        UNION ALL
        SELECT (SELECT MIN(e.name) FROM events e WHERE e.workspace_id = :workspace_id AND e.name > n.name)
        FROM names n WHERE n.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
    """
)


def distinct_names(tx: Tx, workspace_id: str) -> list[str]:
    """Every event name the workspace has, in order."""
    return [row[0] for row in tx.execute(_DISTINCT_NAMES, {"workspace_id": workspace_id})]


def name_seen(tx: Tx, workspace_id: str, name: str) -> bool:
    """Whether the workspace has ever received an event of this name (one index probe)."""
    query = (
        sa.select(events.c.id).where(events.c.workspace_id == workspace_id, events.c.name == name).limit(1)
    )
    return tx.execute(query).first() is not None


def name_span(tx: Tx, workspace_id: str, name: str) -> tuple[datetime | None, datetime | None]:
    """When the first and the latest event of this name occurred. Two queries: SQLite answers a lone
    MIN or MAX from the index, but scans the range when both are asked at once."""
    where = (events.c.workspace_id == workspace_id, events.c.name == name)
    first = tx.execute(sa.select(sa.func.min(events.c.occurred_at)).where(*where)).scalar_one()
    last = tx.execute(sa.select(sa.func.max(events.c.occurred_at)).where(*where)).scalar_one()
    return first, last


@dataclass(frozen=True)
class Window:
    """Which events a page shows: names (None: all), one subscriber, occurred_at bounds, and where the
    previous page stopped (occurred_at, id) in the order asked."""

    names: tuple[str, ...] | None = None
    subscriber_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    after: tuple[datetime, str] | None = None
    descending: bool = False


def page(tx: Tx, workspace_id: str, window: Window, limit: int) -> list[Event]:
    """Events ordered by (occurred_at, id), ascending or descending, after the cursor."""
    query = sa.select(events).where(events.c.workspace_id == workspace_id)
    if window.names is not None:
        query = query.where(events.c.name.in_(window.names))
    if window.subscriber_id is not None:
        query = query.where(events.c.subscriber_id == window.subscriber_id)
    if window.since is not None:
        query = query.where(events.c.occurred_at >= window.since)
    if window.until is not None:
        query = query.where(events.c.occurred_at < window.until)
    key = sa.tuple_(events.c.occurred_at, events.c.id)
    if window.after is not None:
        at, last_id = window.after
        boundary = sa.tuple_(sa.literal(at, events.c.occurred_at.type), sa.literal(last_id))
        query = query.where(key < boundary if window.descending else key > boundary)
    if window.descending:
        query = query.order_by(events.c.occurred_at.desc(), events.c.id.desc())
    else:
        query = query.order_by(events.c.occurred_at, events.c.id)
    return [from_row(r) for r in tx.execute(query.limit(limit)).all()]
