"""Worker.stop_within: a round that will not finish in time is cancelled, and the worker's leases are
given back all the same, so another worker can claim the work at once; a stop asked during a round that
does finish ends the worker when the round does, not a tick later."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from cartback.core import checkouts, sequences, subscribers
from cartback.core.clock import system_clock
from cartback.scheduler.worker import Worker
from cartback.store import deliveries
from cartback.store.db import Database
from cartback.store.tables import message_delivery, messages
from cartback.testing import run_until_idle

FLOW = {
    "name": "one email",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "subject": "Hi", "html": "<p>{{ event.checkoutId }}</p>"}],
}


def queued_message(db: Database, workspace_id: str) -> str:
    """A message due for sending now, as the scheduler leaves it."""
    now = system_clock.now()

    def write(tx: Any) -> None:
        sequences.create(tx, workspace_id, FLOW, now, status="active")
        data = checkouts.CheckoutInput(
            checkout_id="c1", customer=subscribers.Identity(email=f"a-{workspace_id}@example.com")
        )
        checkouts.record_checkout(tx, workspace_id, data, now)

    db.write_sync(write)
    run_until_idle(db, system_clock, owner="seeder")
    return db.read_sync(
        lambda tx: tx.execute(sa.select(messages.c.id).where(messages.c.workspace_id == workspace_id))
    ).scalar_one()


def lease_owner(db: Database, message_id: str) -> str | None:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(message_delivery.c.lease_owner).where(message_delivery.c.message_id == message_id)
        ).scalar_one()
    )


def test_stop_within_cancels_a_stuck_round_and_releases_its_leases(db, make_workspace) -> None:
    tenant = make_workspace()
    message_id = queued_message(db, tenant.id)
    claimed = asyncio.Event()
    held: list[str] = []

    async def stuck_sender(worker: Worker) -> int:
        """Claims the message, then hangs like a send to an SMTP server that never answers."""
        now = worker.clock.now()
        got = await worker.db.write(
            lambda tx: deliveries.claim_due(tx, worker.owner, now, lease=worker.lease, limit=10)
        )
        held.extend(got)
        claimed.set()
        await asyncio.sleep(3600)
        return len(got)

    async def main() -> float:
        live = Database(db.url)
        await live.start()
        try:
            worker = Worker(live, system_clock, tick_seconds=0.05, lease_seconds=600)
            worker.duties.append(stuck_sender)
            task = asyncio.create_task(worker.run())
            await asyncio.wait_for(claimed.wait(), 20)
            assert lease_owner(db, message_id) == worker.owner
            started = time.monotonic()
            await worker.stop_within(task, 0.3)
            took = time.monotonic() - started
            assert task.done()
            return took
        finally:
            await live.stop()

    took = asyncio.run(main())
    assert message_id in held
    assert took < 2.0
    assert lease_owner(db, message_id) is None
    # Another worker takes it at once, long before the 600 s lease could have expired.
    later = system_clock.now() + timedelta(seconds=1)
    again = db.write_sync(
        lambda tx: deliveries.claim_due(tx, "next", later, lease=timedelta(seconds=60), limit=10)
    )
    assert message_id in again


def test_stop_asked_during_a_round_ends_the_worker_with_the_round_not_a_tick_later(db) -> None:
    in_round, release = asyncio.Event(), asyncio.Event()

    async def slow_duty(worker: Worker) -> int:
        in_round.set()
        await release.wait()
        return 0

    async def main() -> float:
        live = Database(db.url)
        await live.start()
        try:
            worker = Worker(live, system_clock, tick_seconds=30)
            worker.duties.append(slow_duty)
            task = asyncio.create_task(worker.run())
            await asyncio.wait_for(in_round.wait(), 20)
            worker.stop()  # while the round runs, as a shutdown signal may land
            started = time.monotonic()
            release.set()
            await asyncio.wait_for(task, 20)
            return time.monotonic() - started
        finally:
            await live.stop()

    assert asyncio.run(main()) < 2.0
