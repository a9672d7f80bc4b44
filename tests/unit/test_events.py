from __future__ import annotations

from datetime import timedelta

import pytest

from cartback.core import events
from cartback.core.clock import FrozenClock
from cartback.store import workspaces
from cartback.store.db import Database


@pytest.fixture
def memdb(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    db.migrate()
    yield db
    db.close()


def test_canonical_name_maps_vendor_aliases():
    assert events.canonical_name("Started Checkout") == "ecommerce.checkout_started"
    assert events.canonical_name("Checkout Started") == "ecommerce.checkout_started"
    assert events.canonical_name("Order Completed") == "ecommerce.order_placed"
    assert events.canonical_name("custom.thing") == "custom.thing"


def test_record_marks_old_events_historical_and_dedupes_by_key(memdb):
    clock = FrozenClock()
    ws = memdb.write_sync(lambda tx: workspaces.create_workspace(tx, "w", clock.now()))

    def rec(tx, occurred):
        return events.record(
            tx,
            ws.id,
            name="x",
            source="sequenzy",
            subscriber_id=None,
            properties={},
            now=clock.now(),
            occurred_at=occurred,
            idempotency_key="event:1",
        )

    first = memdb.write_sync(lambda tx: rec(tx, clock.now() - timedelta(hours=2)))
    again = memdb.write_sync(lambda tx: rec(tx, clock.now()))
    assert first.event.historical is True
    assert again.duplicate is True and again.event.id == first.event.id
    recent = memdb.write_sync(
        lambda tx: events.record(
            tx,
            ws.id,
            name="x",
            source="sequenzy",
            subscriber_id=None,
            properties={},
            now=clock.now(),
            occurred_at=clock.now() - timedelta(minutes=59),
        )
    )
    assert recent.event.historical is False
