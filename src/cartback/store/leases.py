"""Leases: how workers share work that is due, so that one worker at a time holds each piece of it.

Three kinds of work are leased the same way: enrollments whose next step is due, messages due for a delivery
attempt and webhook deliveries due for a POST. A claim selects due rows whose lease is free or expired
(its worker died: fair game again), earliest due first, and stamps them with the claiming worker (the
owner) and when its lease ends. PostgreSQL lets several workers claim at once: the select locks what it
takes with `FOR UPDATE SKIP LOCKED`, so two claims never take the same row; SQLite has one writer at a
time (BEGIN IMMEDIATE), which serialises claims by itself.

A worker finishes its work only while it still holds the lease: the write that finishes it is restricted
to rows whose owner it still is (`held_by`), and finding none means another worker took the work over
after this one's lease expired (`errors.LeaseLost`, which the worker answers by dropping that work)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import Executable

from cartback import errors, statuses
from cartback.store.db import Tx
from cartback.store.tables import enrollments, message_delivery, webhook_deliveries


@dataclass(frozen=True)
class Leased:
    """A table of leased work: the column that names a row, the one that says when it is due, and what
    else a row must be to wait for a worker. Each table has `lease_owner` and `lease_until` columns."""

    table: sa.Table
    key: str
    due: str
    waiting: tuple[ColumnElement[bool], ...] = ()

    @property
    def owner(self) -> sa.Column[Any]:
        return self.table.c.lease_owner

    @property
    def until(self) -> sa.Column[Any]:
        return self.table.c.lease_until


ENROLLMENTS = Leased(
    enrollments, "id", "next_run_at", (enrollments.c.status.in_(statuses.values(statuses.LIVE)),)
)
MESSAGES = Leased(message_delivery, "message_id", "next_attempt_at")
WEBHOOKS = Leased(webhook_deliveries, "id", "next_attempt_at", (webhook_deliveries.c.status == "pending",))
KINDS = (ENROLLMENTS, MESSAGES, WEBHOOKS)

# Written with a row's final state (or its next due time): the lease given back with it.
RELEASED: Mapping[str, None] = {"lease_owner": None, "lease_until": None}


def free(kind: Leased, now: datetime) -> ColumnElement[bool]:
    """No worker holds the row's lease: never leased, given back, or expired (its worker died)."""
    return sa.or_(kind.until.is_(None), kind.until < now)


def held_by(kind: Leased, owner: Any) -> ColumnElement[bool]:
    """The row is leased to `owner` (a value or a bindparam, for statements built once)."""
    held: ColumnElement[bool] = kind.owner == owner
    return held


def any_due(tx: Tx, kind: Leased, now: datetime) -> bool:
    """Whether `claim` would find a row of `kind` now (asked on a read connection, it costs no write)."""
    return tx.execute(_due(kind, now).limit(1)).first() is not None


def claim(tx: Tx, kind: Leased, owner: str, now: datetime, *, lease: timedelta, limit: int) -> list[str]:
    """Lease up to `limit` due rows of `kind` to `owner` until `now + lease`; return their keys, earliest
    due first."""
    key, due = kind.table.c[kind.key], kind.table.c[kind.due]
    query = _due(kind, now).order_by(due).limit(limit)
    if tx.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    taken = list(tx.execute(query).scalars())
    if taken:
        tx.execute(
            kind.table.update().where(key.in_(taken)).values({kind.owner: owner, kind.until: now + lease})
        )
    return taken


def _due(kind: Leased, now: datetime) -> sa.Select[tuple[Any]]:
    key, due = kind.table.c[kind.key], kind.table.c[kind.due]
    return sa.select(key).where(*kind.waiting, due <= now, free(kind, now))


def write_held(tx: Tx, statement: Executable, params: Mapping[str, Any], item_id: str) -> None:
    """Run an UPDATE that finishes one piece of work and is restricted to rows the worker still holds
    (built with `held_by`). Touching none means another worker took the work over: `errors.LeaseLost`, so
    that nothing this worker wrote for it in the transaction commits."""
    if tx.execute(statement, params).rowcount == 0:
        raise errors.LeaseLost(item_id)


def release(tx: Tx, kind: Leased, owner: str) -> int:
    """Give back every lease of `kind` that `owner` holds (graceful shutdown): another worker may take
    the work at once rather than at lease expiry."""
    result = tx.execute(kind.table.update().where(held_by(kind, owner)).values(dict(RELEASED)))
    return result.rowcount
