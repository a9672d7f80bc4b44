"""Every test gets a database of its own (tests/conftest.py), so nothing one test leaves behind, such as
an enrollment waiting for its next step, can be claimed or counted by another. Both turns start from an
empty database and leave a waiting enrollment: whichever runs second would see the other's leftovers if
the database were shared (on PostgreSQL it was, for a whole session)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cartback.core import checkouts, sequences, subscribers
from cartback.store import timers
from cartback.store.tables import enrollments, workspaces
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WAIT_AN_HOUR = {
    "name": "Abandoned",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Still there?", "html": "<p>Hi</p>"}],
}


def _count(db, table: sa.Table) -> int:
    return int(db.read_sync(lambda tx: tx.execute(sa.select(sa.func.count()).select_from(table)).scalar()))


@pytest.mark.parametrize("turn", ["first", "second"])
def test_test_databases_start_empty_whatever_ran_before(db, make_workspace, turn):
    assert _count(db, workspaces) == 0
    assert _count(db, enrollments) == 0
    assert db.read_sync(lambda tx: timers.next_due(tx, T0)) is None

    ws = make_workspace().id
    db.write_sync(lambda tx: sequences.create(tx, ws, WAIT_AN_HOUR, T0, status="active"))
    checkout = checkouts.CheckoutInput(
        checkout_id=f"c-{turn}",
        customer=subscribers.Identity(email=f"{turn}@example.com"),
        currency="USD",
        total_cents=1000,
    )
    db.write_sync(lambda tx: checkouts.record_checkout(tx, ws, checkout, T0))
    run_until_idle(db, FrozenClock(T0))
    # Left behind on purpose: one enrollment waiting an hour for its email step, due for any later test
    # whose clock is past T0 + 1h.
    assert _count(db, enrollments) == 1
    assert db.read_sync(lambda tx: timers.next_due(tx, T0)) is not None
