"""The append-only event log. Rows are inserted, never updated."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

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
    """Append events with one executemany."""
    if batch:
        tx.execute(_INSERT, [_values(e) for e in batch])


def _values(event: Event) -> dict[str, Any]:
    return dict(
        id=event.id,
        workspace_id=event.workspace_id,
        subscriber_id=event.subscriber_id,
        name=event.name,
        source=event.source,
        properties=event.properties,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        idempotency_key=event.idempotency_key,
        historical=event.historical,
        value=event.value,
        subscriber_key=subscriber_key(event.subscriber_id),
    )


def used_keys(tx: Tx, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (workspace, idempotency key) pairs an event already has, in one query."""
    if not keys:
        return set()
    rows = tx.execute(
        _USED_KEYS,
        {"workspaces": sorted({w for w, _ in keys}), "keys": sorted({k for _, k in keys})},
    )
    return {(r.workspace_id, r.idempotency_key) for r in rows} & set(keys)


_USED_KEYS = sa.select(events.c.workspace_id, events.c.idempotency_key).where(
    events.c.workspace_id.in_(sa.bindparam("workspaces", expanding=True)),
    events.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
)


def find_by_key(tx: Tx, workspace_id: str, idempotency_key: str) -> Event | None:
    row = tx.execute(_FIND_BY_KEY, {"workspace_id": workspace_id, "idempotency_key": idempotency_key}).first()
    return None if row is None else from_row(row)


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
