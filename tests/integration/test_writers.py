"""Several group-commit writers on PostgreSQL (store/db.py): batches commit side by side, and two writers
storing the same new checkout at once still store it once and answer both requests with its ids."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cartback.core import checkouts, subscribers
from cartback.store import events as event_store
from cartback.store.db import Database, Tx, constraint_of, pipelined
from cartback.store.tables import checkouts as checkout_rows
from cartback.store.tables import events

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _request(workspace_id: str, checkout_id: str, email: str) -> checkouts.CheckoutRequest:
    data = checkouts.CheckoutInput(checkout_id=checkout_id, customer=subscribers.Identity(email=email))
    return checkouts.CheckoutRequest(workspace_id, data, NOW)


def _record_and_hold(request: checkouts.CheckoutRequest, release: threading.Event):
    """A job that records a checkout, then keeps its transaction open until `release` is set."""

    def job(tx: Tx) -> checkouts.CheckoutRecorded:
        answer = checkouts.record_checkouts(tx, [request])[0]
        assert release.wait(10), "never released"
        return answer

    return job


@pytest.fixture
def pg_db(db_url: str):
    if not db_url.startswith("postgres"):
        pytest.skip("several writers are for PostgreSQL; SQLite has one")
    database = Database(db_url, writers=2)
    yield database
    database.close()


def test_sqlite_keeps_one_writer(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'one.db'}", writers=4)
    assert database.writers == 1
    database.close()


def test_a_batch_commits_while_another_writer_is_busy(pg_db: Database, make_workspace):
    """With one writer the second checkout would wait for the first batch's commit."""
    ws = make_workspace()
    release = threading.Event()

    async def run() -> tuple[checkouts.CheckoutRecorded, checkouts.CheckoutRecorded, int]:
        await pg_db.start()
        try:
            held = asyncio.create_task(
                pg_db.write(_record_and_hold(_request(ws.id, "c1", "a@x.io"), release))
            )
            await asyncio.sleep(0.2)  # the first writer now holds c1's transaction open
            second = await asyncio.wait_for(
                pg_db.write_each(checkouts.record_checkouts, _request(ws.id, "c2", "b@x.io")), 5
            )
            visible = await pg_db.read(
                lambda tx: tx.execute(sa.select(sa.func.count()).select_from(checkout_rows)).scalar_one()
            )
            release.set()
            return await held, second, visible
        finally:
            release.set()
            await pg_db.stop()

    first, second, visible = asyncio.run(run())
    assert second.created and first.created
    assert visible == 1  # c2 committed while c1 was not


def test_the_same_new_checkout_on_two_writers_is_stored_once(pg_db: Database, make_workspace):
    """The second writer finds nothing (the first has not committed), inserts, waits on the first's
    uncommitted row, loses the race when it commits, and runs again: it then finds the checkout and answers
    with the same ids."""
    ws = make_workspace()
    release = threading.Event()

    async def run() -> tuple[checkouts.CheckoutRecorded, checkouts.CheckoutRecorded]:
        await pg_db.start()
        try:
            held = asyncio.create_task(
                pg_db.write(_record_and_hold(_request(ws.id, "c1", "a@x.io"), release))
            )
            await asyncio.sleep(0.2)
            retry = asyncio.create_task(
                pg_db.write_each(checkouts.record_checkouts, _request(ws.id, "c1", "a@x.io"))
            )
            await asyncio.sleep(0.5)  # the retry is now blocked on the first's uncommitted rows
            assert not retry.done()
            release.set()
            return await held, await asyncio.wait_for(retry, 10)
        finally:
            release.set()
            await pg_db.stop()

    first, retry = asyncio.run(run())
    assert first.created and not retry.created
    assert (retry.subscriber_id, retry.event_id) == (first.subscriber_id, first.event_id)
    assert pg_db.stats.retried_batches >= 1
    stored = pg_db.read_sync(
        lambda tx: tx.execute(sa.select(events.c.id).where(events.c.idempotency_key == "checkout:c1")).all()
    )
    assert len(stored) == 1


def test_pipelined_writes_fail_with_the_sqlalchemy_error(db: Database, make_workspace):
    """On PostgreSQL a pipelined statement's error arrives at the end of the block; it must still be the
    IntegrityError naming the constraint, which decides whether a job is re-run after a race."""
    ws = make_workspace()
    event = checkouts._checkout_event(ws.id, _request(ws.id, "c1", "a@x.io").data, None, NOW)  # type: ignore[arg-type]
    db.write_sync(lambda tx: event_store.append_many(tx, [event]))

    def again(tx: Tx) -> None:
        with pipelined(tx):
            event_store.append_many(tx, [event.__class__(**{**event.__dict__, "id": "evt_other"})])

    with db.write_engine.begin() as tx, pytest.raises(IntegrityError) as caught:
        again(tx)
    assert constraint_of(caught.value) == "uq_events_workspace_id_idempotency_key"
