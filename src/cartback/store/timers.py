"""Claiming due work: enrollments whose next step is due (leased like every kind of work, store/leases.py),
and events the dispatcher has not seen yet (taken by subscriber partition on PostgreSQL, below)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from cartback.store import driver, leases
from cartback.store import events as event_store
from cartback.store.db import Tx
from cartback.store.tables import enrollments, events

# PostgreSQL: undispatched events fall into DISPATCH_PARTITIONS partitions by a hash of their subscriber,
# and a dispatcher holds a transaction-scoped advisory lock (_DISPATCH_LOCK, partition) on each partition
# it takes from. So a subscriber's events are handled by one dispatcher at a time, in order, while several
# dispatchers (processes, or connections of one process) work on different subscribers side by side.
_DISPATCH_LOCK = 727275
DISPATCH_PARTITIONS = 16  # a power of two: the partition is the hash's low bits
_IN_PARTITIONS = sa.text(
    f"(hashtext(coalesce(events.subscriber_id, '')) & {DISPATCH_PARTITIONS - 1}) = ANY(:partitions)"
)
_LOCK_PARTITIONS = sa.text(
    # OFFSET 0 keeps the planner from pushing the lock call into the sorted subquery, where it would run
    # (and lock) for every partition; out here it runs row by row until LIMIT is met.
    "SELECT p FROM (SELECT p FROM generate_series(0, :n - 1) AS p "
    "ORDER BY (p - :start + :n) % :n OFFSET 0) AS t "
    "WHERE pg_try_advisory_xact_lock(:key, p) LIMIT :share"
)


def claim_due(tx: Tx, owner: str, now: datetime, *, lease: timedelta, limit: int) -> list[str]:
    """Lease up to `limit` due enrollments to `owner`; return their ids, earliest due first. An expired lease
    (its worker died) is fair game again."""
    return leases.claim(tx, leases.ENROLLMENTS, owner, now, lease=lease, limit=limit)


def due_times(tx: Tx, enrollment_ids: list[str]) -> list[datetime]:
    """When each of these enrollments fell due (for the lateness metric; read right after claiming)."""
    if not enrollment_ids:
        return []
    return [
        t
        for t in tx.execute(
            sa.select(enrollments.c.next_run_at).where(enrollments.c.id.in_(enrollment_ids))
        ).scalars()
        if t is not None
    ]


def next_due(tx: Tx, now: datetime) -> datetime | None:
    """The earliest next_run_at this worker could claim: rows another worker holds a live lease on are left
    out, or a worker idling beside a busy one would see them as overdue and poll without pause. (A lease that
    expires is noticed within a tick, which the caller caps the sleep at.)"""
    value: datetime | None = tx.execute(
        sa.select(sa.func.min(enrollments.c.next_run_at)).where(
            *leases.ENROLLMENTS.waiting, leases.free(leases.ENROLLMENTS, now)
        )
    ).scalar_one()
    if value is not None and value.tzinfo is None:  # SQLite aggregates bypass the column type
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


_UNDISPATCHED = driver.Select(
    events,
    event_store.COLUMNS,
    where="dispatched_at IS NULL",
    order="received_at, id",
)


def take_undispatched(tx: Tx, limit: int, *, share: int = DISPATCH_PARTITIONS) -> list[event_store.Event]:
    """The oldest events no dispatcher has handled. On PostgreSQL only those of the (at most `share`)
    partitions this transaction could lock, starting at a random one so that dispatchers spread out; none
    if every partition is being dispatched by someone else now."""
    if _UNDISPATCHED.applies(tx):
        return [event_store.Event(*row) for row in _UNDISPATCHED.run(tx, [limit])]
    query = sa.select(events).where(events.c.dispatched_at.is_(None))
    if tx.dialect.name == "postgresql":
        params = {
            "n": DISPATCH_PARTITIONS,
            "start": secrets.randbelow(DISPATCH_PARTITIONS),
            "key": _DISPATCH_LOCK,
            "share": max(1, min(share, DISPATCH_PARTITIONS)),
        }
        locked = list(tx.execute(_LOCK_PARTITIONS, params).scalars())
        if not locked:
            return []
        if len(locked) < DISPATCH_PARTITIONS:
            query = query.where(_IN_PARTITIONS.bindparams(partitions=locked))
    rows = tx.execute(query.order_by(events.c.received_at, events.c.id).limit(limit)).all()
    return [event_store.from_row(r) for r in rows]


def mark_dispatched(tx: Tx, event_ids: list[str], now: datetime) -> None:
    if event_ids:
        tx.execute(events.update().where(events.c.id.in_(event_ids)).values(dispatched_at=now))
