"""Metric aggregates and the attribution store on real SQLite and PostgreSQL: buckets in a time zone,
count / sum / unique, grouping by $flow and $attributed_flow, and an order attributed at most once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cartback import errors, ids
from cartback.core import aggregates, attribution, events
from cartback.store import attributions as attribution_store
from cartback.store import events as event_store
from cartback.store.tables import attributions

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # the weekend Paris moves to summer time


def record(db, ws: str, name: str, at: datetime, subscriber: str | None, **props) -> str:
    def write(tx):
        return events.record(
            tx,
            ws,
            name=name,
            source="test",
            subscriber_id=subscriber,
            properties=props,
            now=at,
            occurred_at=at,
        ).event.id

    return db.write_sync(write)


def aggregate(db, ws: str, **kwargs) -> aggregates.Result:
    query = aggregates.Query(**{"name": events.ORDER_PLACED, "measurements": ("count",), **kwargs})
    return db.read_sync(lambda tx: aggregates.aggregate(tx, ws, query))


def test_aggregates_count_sum_unique_per_day_in_a_time_zone(db, make_workspace):
    ws = make_workspace().id
    # Paris: 28 March is UTC+1, 29 March UTC+2 from 01:00 UTC.
    record(db, ws, events.ORDER_PLACED, datetime(2026, 3, 28, 22, 30, tzinfo=UTC), "sub_a", value=10.5)
    record(db, ws, events.ORDER_PLACED, datetime(2026, 3, 28, 23, 30, tzinfo=UTC), "sub_a", value=4)
    record(
        db,
        ws,
        events.ORDER_PLACED,
        datetime(2026, 3, 29, 21, 59, tzinfo=UTC),
        "sub_b",
        totalCents=250,
        currency="EUR",
    )
    record(db, ws, events.ORDER_PLACED, datetime(2026, 3, 29, 22, 0, tzinfo=UTC), "sub_c", value=1)
    record(db, ws, events.CHECKOUT_STARTED, datetime(2026, 3, 29, 10, 0, tzinfo=UTC), "sub_d", value=99)
    record(
        db, make_workspace().id, events.ORDER_PLACED, datetime(2026, 3, 29, 10, 0, tzinfo=UTC), "x", value=7
    )

    got = aggregate(
        db,
        ws,
        measurements=("count", "sum_value", "unique"),
        start=datetime(2026, 3, 27, 23, 0, tzinfo=UTC),
        end=datetime(2026, 3, 30, 22, 0, tzinfo=UTC),
        timezone="Europe/Paris",
    )
    assert [d.isoformat() for d in got.dates] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    (row,) = got.rows
    assert row.dimensions == []
    # 22:30 UTC on the 28th is still the 28th in Paris; 23:30 is the 29th; 21:59 UTC on the 29th is 23:59.
    assert row.measurements == {"count": [1, 2, 1], "sum_value": [10.5, 6.5, 1.0], "unique": [1, 2, 1]}

    utc = aggregate(
        db,
        ws,
        start=datetime(2026, 3, 28, tzinfo=UTC),
        end=datetime(2026, 3, 30, tzinfo=UTC),
        interval="hour",
    )
    assert len(utc.dates) == 48 and sum(utc.rows[0].measurements["count"]) == 4


def test_aggregates_by_flow_and_by_attributed_flow(db, make_workspace):
    ws = make_workspace().id
    at = T0
    record(db, ws, "email.clicked", at, "sub_a", sequenceId="seq_1", messageId="m1")
    record(db, ws, "email.clicked", at, "sub_b", sequenceId="seq_1", messageId="m2")
    record(db, ws, "email.clicked", at, "sub_b", sequenceId="seq_2", messageId="m3")
    record(db, ws, "email.clicked", at, "sub_c")
    got = aggregate(
        db,
        ws,
        name="email.clicked",
        measurements=("count", "unique"),
        start=T0 - timedelta(hours=1),
        end=T0 + timedelta(hours=1),
        by=("$flow",),
    )
    assert {tuple(r.dimensions): r.measurements for r in got.rows} == {
        ("",): {"count": [1], "unique": [1]},
        ("seq_1",): {"count": [2], "unique": [2]},
        ("seq_2",): {"count": [1], "unique": [1]},
    }

    recovered = record(
        db, ws, events.ORDER_PLACED, at, "sub_a", orderId="o1", totalCents=5000, currency="USD"
    )
    record(db, ws, events.ORDER_PLACED, at, "sub_a", orderId="o2", totalCents=1200, currency="USD")
    record(db, ws, events.ORDER_PLACED, at, "sub_z", orderId="o3", totalCents=300, currency="USD")
    db.write_sync(
        lambda tx: attribution_store.insert(
            tx,
            attribution_store.Attribution(
                id=ids.new_id("att"),
                workspace_id=ws,
                order_id="o1",
                order_event_id=recovered,
                subscriber_id="sub_a",
                sequence_id="seq_1",
                enrollment_id=None,
                message_id="m1",
                node_id="n1",
                kind="click",
                touched_at=at,
                ordered_at=at,
                amount_cents=5000,
                currency="USD",
                attributed_at=at,
                value=50.0,
            ),
        )
    )
    got = aggregate(
        db,
        ws,
        measurements=("count", "sum_value", "unique"),
        start=T0 - timedelta(days=1),
        end=T0 + timedelta(days=1),
        by=("$attributed_flow",),
    )
    assert {tuple(r.dimensions): r.measurements for r in got.rows} == {
        ("",): {"count": [0, 2, 0], "sum_value": [0.0, 15.0, 0.0], "unique": [0, 2, 0]},
        ("seq_1",): {"count": [0, 1, 0], "sum_value": [0.0, 50.0, 0.0], "unique": [0, 1, 0]},
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"measurements": ("median",)},
        {"measurements": ()},
        {"by": ("$message",)},
        {"interval": "minute"},
        {"timezone": "Mars/Olympus"},
        {"end": T0 - timedelta(days=3)},
        {"start": T0 - timedelta(days=400)},
        {"start": T0 - timedelta(days=300), "interval": "hour"},
    ],
)
def test_aggregates_bad_queries_are_invalid_input(db, make_workspace, bad):
    ws = make_workspace().id
    with pytest.raises(errors.InvalidInput):
        aggregate(db, ws, **{"start": T0 - timedelta(days=2), "end": T0, **bad})


def test_attribution_is_written_once_per_order(db, make_workspace):
    ws = make_workspace().id
    event_id = record(db, ws, events.ORDER_PLACED, T0, "sub_a", orderId="o1", totalCents=100, currency="USD")

    def make(order_event_id: str) -> attribution_store.Attribution:
        return attribution_store.Attribution(
            id=ids.new_id("att"),
            workspace_id=ws,
            order_id="o1",
            order_event_id=order_event_id,
            subscriber_id="sub_a",
            sequence_id="seq_1",
            enrollment_id=None,
            message_id="m1",
            node_id="n1",
            kind="click",
            touched_at=T0,
            ordered_at=T0,
            amount_cents=100,
            currency="USD",
            attributed_at=T0,
        )

    db.write_sync(lambda tx: attribution_store.insert(tx, make(event_id)))
    # The constraint holds even for a writer that skipped the check.
    with pytest.raises(errors.Conflict):
        db.write_sync(lambda tx: attribution_store.insert(tx, make("evt_other")))

    # attribute() on the same order's event (a replayed dispatch) changes nothing.
    def replay(tx):
        (event,) = [e for e in event_store.list_for_subscriber(tx, ws, "sub_a") if e.id == event_id]
        return attribution.attribute(tx, event, T0 + timedelta(minutes=1))

    assert db.write_sync(replay) is None
    rows = db.read_sync(
        lambda tx: tx.execute(
            sa.select(attributions.c.order_event_id).where(attributions.c.workspace_id == ws)
        ).all()
    )
    assert [r[0] for r in rows] == [event_id]
