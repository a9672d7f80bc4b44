"""A worker that loses an enrollment's lease mid-batch (another worker took it over after the lease
expired) drops that enrollment quietly: the rest of the batch runs again set-wise without it, nothing is
logged as an error, and nothing is run one by one."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import sqlalchemy as sa

from cartback import testing
from cartback.core import checkouts, sequences, subscribers
from cartback.store.tables import enrollments, messages
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ONE_EMAIL = {
    "name": "Abandoned",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Still there?", "html": "<p>Hi</p>"}],
}


def test_lease_lost_drops_that_enrollment_quietly_and_runs_the_rest_set_wise(db, make_workspace, caplog):
    ws = make_workspace().id
    db.write_sync(lambda tx: sequences.create(tx, ws, ONE_EMAIL, T0, status="active"))
    for n in range(3):
        data = checkouts.CheckoutInput(
            checkout_id=f"c{n}", customer=subscribers.Identity(email=f"p{n}@example.com"), currency="USD"
        )
        db.write_sync(lambda tx, d=data: checkouts.record_checkout(tx, ws, d, T0))
    clock = FrozenClock(T0)
    run_until_idle(db, clock)
    [victim, *_] = sorted(
        db.read_sync(lambda tx: tx.execute(sa.select(enrollments.c.id, enrollments.c.subscriber_id)).all())
    )
    clock.advance(hours=2)

    # Another worker takes `victim` over just before this worker writes a step's outcome. It is done in
    # this worker's transaction (on SQLite no other connection could write then), and again in each re-run
    # of it, as a takeover committed elsewhere would be seen by each.
    stolen = []

    def steal(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE enrollments SET") and "enrollments.lease_owner" in statement:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            cursor.execute(f"UPDATE enrollments SET lease_owner = 'thief' WHERE id = {mark}", (victim.id,))
            stolen.append(victim.id)

    sa.event.listen(db.write_engine, "before_cursor_execute", steal)
    caplog.set_level(logging.INFO, logger="cartback.scheduler.worker")

    async def run() -> int:
        await db.start()
        try:
            return await testing.worker(db, clock).run_due_steps()
        finally:
            await db.stop()

    try:
        assert asyncio.run(run()) == 3
    finally:
        sa.event.remove(db.write_engine, "before_cursor_execute", steal)
    assert set(stolen) == {victim.id}
    owners = dict(
        db.read_sync(lambda tx: tx.execute(sa.select(enrollments.c.id, enrollments.c.lease_owner)).all())
    )
    assert owners.pop(victim.id) == "thief" and set(owners.values()) == {None}
    sent_to = db.read_sync(lambda tx: tx.execute(sa.select(messages.c.subscriber_id)).scalars().all())
    assert len(sent_to) == 2 and victim.subscriber_id not in sent_to
    worker_logs = [r for r in caplog.records if r.name == "cartback.scheduler.worker"]
    assert [r.levelno for r in worker_logs] == [logging.INFO]
    assert "taken over by another worker" in worker_logs[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
