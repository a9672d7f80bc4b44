"""Checkouts: the latest cart snapshot per (workspace, checkoutId)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback.store import driver
from cartback.store.db import Tx
from cartback.store.tables import checkouts, subscribers


@dataclass(frozen=True)
class Checkout:
    id: str
    workspace_id: str
    checkout_id: str
    subscriber_id: str
    event_id: str
    currency: str | None
    total_cents: int | None
    checkout_url: str | None
    items: list[dict[str, Any]]
    properties: dict[str, Any]
    order_id: str | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = list(Checkout.__dataclass_fields__)

# Built once with bind parameters: SQLAlchemy then finds the compiled form in its cache without rebuilding
# the statement and its cache key on every call, which cost more than running it on the ingest path.
_FIND = sa.select(checkouts).where(
    checkouts.c.workspace_id == sa.bindparam("workspace_id"),
    checkouts.c.checkout_id == sa.bindparam("checkout_id"),
)


def find(tx: Tx, workspace_id: str, checkout_id: str) -> Checkout | None:
    row = tx.execute(_FIND, {"workspace_id": workspace_id, "checkout_id": checkout_id}).first()
    if row is None:
        return None
    return Checkout(**{name: getattr(row, name) for name in _COLUMNS})


_FIND_MANY = sa.select(checkouts).where(
    checkouts.c.workspace_id == sa.bindparam("workspace_id"),
    checkouts.c.checkout_id.in_(sa.bindparam("checkout_ids", expanding=True)),
)


def find_many(tx: Tx, workspace_id: str, checkout_ids: list[str]) -> dict[str, Checkout]:
    """Several checkouts by checkoutId, in one query; ids that do not exist are left out."""
    if not checkout_ids:
        return {}
    rows = tx.execute(_FIND_MANY, {"workspace_id": workspace_id, "checkout_ids": checkout_ids}).all()
    return {row.checkout_id: Checkout(**{name: getattr(row, name) for name in _COLUMNS}) for row in rows}


@dataclass(frozen=True)
class Taken:
    """Which of some checkoutIds, email keys and anonymous ids a workspace already has."""

    checkout_ids: set[str]
    email_keys: set[str]
    anonymous_ids: set[str]


_WS: Any = sa.bindparam("workspace_id")
_TAKEN = sa.union_all(
    sa.select(sa.literal_column("'c'"), checkouts.c.checkout_id).where(
        checkouts.c.workspace_id == _WS,
        checkouts.c.checkout_id.in_(sa.bindparam("checkout_ids", expanding=True)),
    ),
    sa.select(sa.literal_column("'e'"), subscribers.c.email_key).where(
        subscribers.c.workspace_id == _WS,
        subscribers.c.email_key.in_(sa.bindparam("email_keys", expanding=True)),
    ),
    sa.select(sa.literal_column("'a'"), subscribers.c.anonymous_id).where(
        subscribers.c.workspace_id == _WS,
        subscribers.c.anonymous_id.in_(sa.bindparam("anonymous_ids", expanding=True)),
    ),
)


def taken(
    tx: Tx, workspace_id: str, checkout_ids: list[str], email_keys: list[str], anonymous_ids: list[str]
) -> Taken:
    """The three lookups of a set-wise checkout batch in one query: one round trip, not three."""
    found: dict[str, set[str]] = {"c": set(), "e": set(), "a": set()}
    if checkout_ids or email_keys or anonymous_ids:
        params = {
            "workspace_id": workspace_id,
            "checkout_ids": checkout_ids,
            "email_keys": email_keys,
            "anonymous_ids": anonymous_ids,
        }
        for kind, value in tx.execute(_TAKEN, params):
            found[kind].add(value)
    return Taken(found["c"], found["e"], found["a"])


def insert(tx: Tx, checkout: Checkout) -> None:
    insert_many(tx, [checkout])


_INSERT_MANY = driver.Insert(checkouts, _COLUMNS)


def insert_many(tx: Tx, batch: list[Checkout]) -> None:
    """New checkouts, with one executemany."""
    _INSERT_MANY.run(tx, [[getattr(c, name) for name in _COLUMNS] for c in batch])


def update_snapshot(tx: Tx, checkout: Checkout) -> None:
    tx.execute(
        checkouts.update()
        .where(checkouts.c.workspace_id == checkout.workspace_id, checkouts.c.id == checkout.id)
        .values(
            currency=checkout.currency,
            total_cents=checkout.total_cents,
            checkout_url=checkout.checkout_url,
            items=checkout.items,
            properties=checkout.properties,
            updated_at=checkout.updated_at,
        )
    )


def link_order(tx: Tx, workspace_id: str, checkout_id: str, order_id: str, now: datetime) -> None:
    tx.execute(
        checkouts.update()
        .where(
            checkouts.c.workspace_id == workspace_id,
            checkouts.c.checkout_id == checkout_id,
            checkouts.c.order_id.is_(None),
        )
        .values(order_id=order_id, updated_at=now)
    )
