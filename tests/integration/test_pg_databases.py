"""Tests on PostgreSQL stay apart (tests/conftest.py PgDatabases): whatever one test leaves (a waiting
enrollment, a queued message, a connection still open) is gone when the next test takes the database.
A database shared by the session once let a leftover enrollment change another test's counts."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from cartback.core import checkouts, sequences, subscribers
from cartback.store import workspaces
from cartback.store.db import Database, sqlalchemy_url
from cartback.store.tables import enrollments, metadata
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ONE_EMAIL = {
    "name": "Abandoned",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Still there?", "html": "<p>Hi</p>"}],
}


def _leave_a_waiting_enrollment(url: str) -> None:
    db = Database(url)
    try:
        ws = db.write_sync(lambda tx: workspaces.create_workspace(tx, "leftovers", T0)).id
        db.write_sync(lambda tx: sequences.create(tx, ws, ONE_EMAIL, T0, status="active"))
        data = checkouts.CheckoutInput(
            checkout_id="c1", customer=subscribers.Identity(email="jane@example.com"), currency="USD"
        )
        db.write_sync(lambda tx: checkouts.record_checkout(tx, ws, data, T0))
        run_until_idle(db, FrozenClock(T0))
        waiting = db.read_sync(
            lambda tx: tx.execute(
                sa.select(sa.func.count()).where(enrollments.c.status == "active")
            ).scalar_one()
        )
        assert waiting == 1
    finally:
        db.close()


def _rows(url: str) -> dict[str, int]:
    db = Database(url)
    try:
        return db.read_sync(
            lambda tx: {
                name: tx.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in metadata.tables.items()
            }
        )
    finally:
        db.close()


def test_postgres_databases_come_back_empty_after_a_test_left_work_and_a_connection(pg_databases):
    url = pg_databases.take()
    _leave_a_waiting_enrollment(url)
    # A server of the test still connected, in an open transaction, when the test ends.
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    straggler = engine.connect()
    straggler.execute(sa.text("SELECT 1 FROM workspaces FOR UPDATE"))
    pg_databases.give_back(url)
    try:
        again = pg_databases.take()
        assert again == url  # the same database, reused: emptied rather than copied again
        assert {name: n for name, n in _rows(again).items() if n} == {}
        pg_databases.give_back(again)
    finally:
        straggler.invalidate()  # its server process was ended by take()
        engine.dispose()
    fresh = [pg_databases.take(), pg_databases.take()]
    try:
        for url in fresh:
            assert {name: n for name, n in _rows(url).items() if n} == {}
    finally:
        for url in fresh:
            pg_databases.give_back(url)
