"""PostgreSQL dispatch in subscriber partitions (store/timers.py): dispatchers side by side take disjoint
sets of subscribers, each subscriber's events stay with one dispatcher and in order, and one that finds
every partition taken gets nothing rather than someone else's events. On SQLite's single writer, a
backlog is worked off in larger dispatches instead."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cartback.core import events as core_events
from cartback.core import subscribers
from cartback.core.clock import FrozenClock
from cartback.scheduler.worker import Worker
from cartback.store import timers, workspaces
from cartback.store.db import Database
from cartback.store.tables import events

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _seed(db: Database, people: int, per_person: int) -> tuple[str, dict[str, list[str]]]:
    """A workspace with `per_person` events for each of `people` subscribers, interleaved in time; returns
    the workspace and each subscriber's event ids in the order received."""

    def seed(tx: sa.Connection) -> tuple[str, dict[str, list[str]]]:
        ws = workspaces.create_workspace(tx, f"w-{secrets.token_hex(4)}", T0).id
        subs = [
            subscribers.upsert(tx, ws, subscribers.Identity(email=f"p{i}@example.com"), T0)[0]
            for i in range(people)
        ]
        order: dict[str, list[str]] = defaultdict(list)
        for n in range(per_person):
            for i, sub in enumerate(subs):
                recorded = core_events.record(
                    tx,
                    ws,
                    name="site.viewed",
                    source="api",
                    subscriber_id=sub.id,
                    properties={"n": n},
                    now=T0 + timedelta(seconds=n * people + i),
                )
                order[sub.id].append(recorded.event.id)
        return ws, dict(order)

    return db.write_sync(seed)


def _count_in(db: Database, ws: str) -> int:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.workspace_id == ws)
        ).scalar_one()
    )


def _undispatched_in(db: Database, ws: str) -> int:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.workspace_id == ws, events.c.dispatched_at.is_(None))
        ).scalar_one()
    )


def _dispatch_rounds(db: Database, **worker_options: int) -> list[int]:
    """Events dispatched by each round of one worker, until a round finds nothing."""

    async def run() -> list[int]:
        await db.start()
        try:
            worker = Worker(db, FrozenClock(T0 + timedelta(hours=1)), **worker_options)
            rounds = [await worker.dispatch_events()]
            while rounds[-1]:
                rounds.append(await worker.dispatch_events())
            return rounds
        finally:
            await db.stop()

    return asyncio.run(run())


def test_side_by_side_dispatchers_split_subscribers_and_keep_each_in_order(pg_database):
    db = Database(pg_database)
    try:
        ws, order = _seed(db, people=40, per_person=3)
        half = timers.DISPATCH_PARTITIONS // 2
        with db.write_engine.begin() as one, db.write_engine.begin() as two, db.write_engine.begin() as three:
            first = timers.take_undispatched(one, 1000, share=half)
            second = timers.take_undispatched(two, 1000, share=half)
            # Both hold every partition between them now: a third dispatcher must wait, not share.
            assert timers.take_undispatched(three, 1000) == []
        seen: dict[str, list[str]] = defaultdict(list)
        owner: dict[str, int] = {}
        for which, batch in enumerate((first, second)):
            for event in batch:
                if event.workspace_id != ws:
                    continue  # left undispatched by another test in this database
                assert owner.setdefault(event.subscriber_id, which) == which, "a subscriber split in two"
                seen[event.subscriber_id].append(event.id)
        assert first and second, "both dispatchers should have had work"
        # Every event once (the seeded ones and each subscriber's subscriber.created), each subscriber's in
        # the order received.
        assert {sid: ids[-len(order[sid]) :] for sid, ids in seen.items()} == order
        assert sum(len(ids) for ids in seen.values()) == _count_in(db, ws)
    finally:
        db.close()


def test_a_worker_dispatches_over_several_connections(pg_database):
    db = Database(pg_database)
    try:
        ws, _ = _seed(db, people=30, per_person=2)
        rounds = _dispatch_rounds(db, connections=4)
        assert sum(rounds) >= 60 and _undispatched_in(db, ws) == 0
    finally:
        db.close()


def test_a_worker_fans_out_only_while_a_backlog_lasts(pg_database):
    """Woken by a few commits, a round dispatches on one connection (one transaction, not four); a round
    that takes a full batch has found a backlog, and the next one runs four dispatchers side by side."""
    db = Database(pg_database)
    try:
        ws, _ = _seed(db, people=30, per_person=2)
        rounds = _dispatch_rounds(db, connections=4, batch_size=5)
        assert rounds[0] == 5, "a first round runs one dispatcher, which takes one batch"
        assert rounds[1] > 5, "a full batch means a backlog: the next round runs several dispatchers"
        assert _undispatched_in(db, ws) == 0
    finally:
        db.close()


def test_on_sqlite_a_worker_dispatches_more_per_round_while_a_backlog_lasts(tmp_path, sqlite_template):
    """Each round that took all it could doubles the next one's share, up to eight batches; a round that
    finds less than that goes back to one batch."""
    path = tmp_path / "cartback.db"
    shutil.copyfile(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    try:
        ws, _ = _seed(db, people=40, per_person=3)
        backlog = _undispatched_in(db, ws)
        rounds = _dispatch_rounds(db, batch_size=5)
        assert rounds[:5] == [5, 10, 20, 40, 40]
        assert sum(rounds) == backlog and rounds[-1] == 0
        assert _undispatched_in(db, ws) == 0
    finally:
        db.close()
