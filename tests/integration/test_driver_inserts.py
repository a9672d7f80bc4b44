"""The hot ingest inserts run on the driver on SQLite (store/driver.py): what they store is what the same
rows inserted through SQLAlchemy store, byte for byte, and their errors are SQLAlchemy's; on PostgreSQL
they go through SQLAlchemy as before."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cartback.core import sequences
from cartback.store import checkouts as checkout_store
from cartback.store import enrollments as enrollment_store
from cartback.store import events as event_store
from cartback.store import subscribers as subscriber_store
from cartback.store import tables, timers
from cartback.store.db import Database, constraint_of

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
ELSEWHERE = timezone(timedelta(hours=-5, minutes=-30))
PROPERTIES = {
    "text": 'ünïcödé \u2028 \U0001f600 "q" \\ </script>',
    "nested": {"a": [1, 2.5, True, None, "x", {"b": -0.0}], "empty": {}},
    "big": 2**62,
    "float": 158.97,
}


def _event(workspace_id: str, n: int, **changes: object) -> event_store.Event:
    base = event_store.Event(
        id=f"ev_{n}",
        workspace_id=workspace_id,
        subscriber_id=f"sub_{n}",
        name="ecommerce.checkout_started",
        source="klaviyo",
        properties=PROPERTIES,
        occurred_at=datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=ELSEWHERE),
        received_at=NOW,
        idempotency_key=f"checkout:c{n}",
        historical=False,
        value=158.97,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _events(workspace_id: str, first: int) -> list[event_store.Event]:
    return [
        _event(workspace_id, first),
        _event(
            workspace_id, first + 1, subscriber_id=None, idempotency_key=None, value=None, historical=True
        ),
        _event(workspace_id, first + 2, properties={}, occurred_at=NOW),
    ]


def _subscribers(workspace_id: str, first: int) -> list[subscriber_store.Subscriber]:
    one = subscriber_store.new(
        workspace_id,
        NOW,
        id=f"sub_{first}",
        email=f"Jane.{first}@Example.com",
        first_name="Jane",
        last_name=None,
        attributes=PROPERTIES,
        phone="+15005550006",
        anonymous_id=f"anon-{first}",
    )
    two = subscriber_store.new(
        workspace_id, NOW, id=f"sub_{first + 1}", external_id=f"ext-{first}", attributes={}
    )
    return [
        one,
        replace(two, sms_consent=True, unsubscribed_at=NOW.astimezone(ELSEWHERE), timezone="Europe/Oslo"),
    ]


def _checkouts(workspace_id: str, first: int) -> list[checkout_store.Checkout]:
    base = checkout_store.Checkout(
        id=f"co_{first}",
        workspace_id=workspace_id,
        checkout_id=f"c{first}",
        subscriber_id=f"sub_{first}",
        event_id=f"ev_{first}",
        currency="USD",
        total_cents=15897,
        checkout_url="https://shop.example.com/c/1",
        items=[{"productId": "p1", "title": "Sweater", "quantity": 1, "priceCents": 8900}],
        properties=PROPERTIES,
        order_id=None,
        created_at=NOW,
        updated_at=NOW.astimezone(ELSEWHERE),
    )
    bare = replace(base, id=f"co_{first + 1}", checkout_id=f"c{first + 1}", currency=None, total_cents=None)
    return [base, replace(bare, checkout_url=None, items=[], properties={})]


def _raw(db: Database, table: sa.Table, workspace_id: str) -> list[tuple]:
    """The rows as the driver returns them (no type processing), without their ids."""
    other_ids = {"id", "subscriber_id", "event_id", "checkout_id", "idempotency_key", "email", "email_key"}
    other_ids |= {"anonymous_id", "external_id", "subscriber_key", "sequence_id", "enrollment_id"}
    other_ids |= {"trigger_event_id", "dedupe_key"}
    kept = [c.name for c in table.columns if c.name not in other_ids]
    query = sa.text(f"SELECT {', '.join(kept)} FROM {table.name} WHERE workspace_id = :w ORDER BY id")
    return db.read_sync(lambda tx: [tuple(r) for r in tx.execute(query, {"w": workspace_id})])


def _through_sqlalchemy(table: sa.Table, rows: list[dict]) -> object:
    return lambda tx: tx.execute(table.insert(), rows)


@pytest.mark.parametrize("kind", ["events", "subscribers", "checkouts"])
def test_driver_inserts_store_what_sqlalchemy_stores(db: Database, make_workspace, kind):
    driver_ws, sqlalchemy_ws = make_workspace(), make_workspace()
    if kind == "events":
        table = tables.events
        db.write_sync(lambda tx: event_store.append_many(tx, _events(driver_ws.id, 0)))
        rows = [event_store._values(e) for e in _events(sqlalchemy_ws.id, 10)]
    elif kind == "subscribers":
        table = tables.subscribers
        db.write_sync(lambda tx: subscriber_store.insert_many(tx, _subscribers(driver_ws.id, 0)))
        rows = []
        for sub in _subscribers(sqlalchemy_ws.id, 10):
            values = {name: getattr(sub, name) for name in subscriber_store._COLUMNS}
            rows.append({**values, "email_key": subscriber_store.email_key(sub.email) if sub.email else None})
    else:
        table = tables.checkouts
        db.write_sync(lambda tx: checkout_store.insert_many(tx, _checkouts(driver_ws.id, 0)))
        rows = [{n: getattr(c, n) for n in checkout_store._COLUMNS} for c in _checkouts(sqlalchemy_ws.id, 10)]
    db.write_sync(_through_sqlalchemy(table, rows))

    stored = _raw(db, table, driver_ws.id)
    assert len(stored) == len(rows)
    # Same bytes, workspace id aside.
    strip = lambda rs, ws: [tuple("<ws>" if v == ws else v for v in r) for r in rs]  # noqa: E731
    assert strip(stored, driver_ws.id) == strip(_raw(db, table, sqlalchemy_ws.id), sqlalchemy_ws.id)
    # And read back through the store as they were given.
    if kind == "events":
        read = db.read_sync(lambda tx: event_store.find_by_key(tx, driver_ws.id, "checkout:c0"))
        assert read == replace(_events(driver_ws.id, 0)[0], occurred_at=read.occurred_at)
        assert read.occurred_at == _events(driver_ws.id, 0)[0].occurred_at


def test_a_driver_insert_fails_as_sqlalchemy_would(db: Database, make_workspace):
    ws = make_workspace()
    db.write_sync(lambda tx: event_store.append_many(tx, _events(ws.id, 0)))
    again = [_event(ws.id, 5, idempotency_key="checkout:c0")]  # a used idempotency key
    with db.write_engine.begin() as tx, pytest.raises(IntegrityError) as through_driver:
        event_store.append_many(tx, again)
    with db.write_engine.begin() as tx, pytest.raises(IntegrityError) as through_sqlalchemy:
        tx.execute(tables.events.insert(), [event_store._values(e) for e in again])
    assert constraint_of(through_driver.value) == constraint_of(through_sqlalchemy.value)
    assert through_driver.value.hide_parameters
    assert db.read_sync(lambda tx: event_store.find_by_key(tx, ws.id, "checkout:c0")).id == "ev_0"


def test_on_sqlite_the_insert_bypasses_sqlalchemy(db: Database, make_workspace):
    ws = make_workspace()
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(db.write_engine, "before_cursor_execute", seen)
    try:
        db.write_sync(lambda tx: event_store.append_many(tx, _events(ws.id, 0)))
    finally:
        sa.event.remove(db.write_engine, "before_cursor_execute", seen)
    inserts = [s for s in statements if s.startswith("INSERT INTO events")]
    assert inserts == ([] if db.dialect == "sqlite" else [inserts[0]])


def test_the_dispatchers_read_gives_what_sqlalchemy_gives(db: Database, make_workspace):
    """store/timers.take_undispatched reads on the driver on SQLite: the same events, in the same order,
    as reading the rows through SQLAlchemy; and no statement of it goes through SQLAlchemy there."""
    ws = make_workspace()
    db.write_sync(lambda tx: event_store.append_many(tx, _events(ws.id, 0) + _events(ws.id, 3)))
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(db.write_engine, "before_cursor_execute", seen)
    try:
        taken = db.write_sync(lambda tx: timers.take_undispatched(tx, 4))
    finally:
        sa.event.remove(db.write_engine, "before_cursor_execute", seen)
    query = (
        sa.select(tables.events)
        .where(tables.events.c.workspace_id == ws.id)
        .order_by(tables.events.c.received_at, tables.events.c.id)
    )
    through_sqlalchemy = db.read_sync(lambda tx: [event_store.from_row(r) for r in tx.execute(query)])
    assert taken == through_sqlalchemy[:4]
    assert taken[0].properties == PROPERTIES and taken[0].occurred_at.tzinfo is UTC
    assert [e.historical for e in taken] == [False, True, False, False]
    selects = [s for s in statements if "FROM events" in s]
    assert (selects == []) == (db.dialect == "sqlite"), statements


def _runs(workspace_id: str, sequence_id: str, first: int) -> list[enrollment_store.Enrollment]:
    base = enrollment_store.Enrollment(
        id=f"enr_{first}",
        workspace_id=workspace_id,
        sequence_id=sequence_id,
        subscriber_id=f"sub_{first}",
        trigger_event_id=f"ev_{first}",
        trigger_received_at=NOW,
        context={"event": PROPERTIES, "due": "2026-12-01T13:00:00Z"},
        dedupe_key=f"sub_{first}:c{first}",
        status="waiting",
        current_node_id="n1",
        next_run_at=NOW.astimezone(ELSEWHERE) + timedelta(hours=1),
        lease_owner=None,
        lease_until=None,
        stop_reason=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=None,
    )
    bare = replace(
        base, id=f"enr_{first + 1}", trigger_event_id=None, context={}, dedupe_key=None, current_node_id=None
    )
    return [base, replace(bare, status="stopped", next_run_at=None, stop_reason="order", finished_at=NOW)]


def test_enrollment_inserts_store_what_sqlalchemy_stores(db: Database, make_workspace):
    """The dispatcher's new runs and their history (store/enrollments.insert_many, record_many)."""
    driver_ws, sqlalchemy_ws = make_workspace(), make_workspace()

    def sequence(workspace_id: str) -> str:
        definition = {
            "name": "Abandoned checkout",
            "trigger": "event_received",
            "eventName": "ecommerce.checkout_started",
            "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Cart", "html": "<p>back</p>"}],
        }
        return db.write_sync(lambda tx: sequences.create(tx, workspace_id, definition, NOW)).id

    ours, theirs = (
        _runs(driver_ws.id, sequence(driver_ws.id), 0),
        _runs(sqlalchemy_ws.id, sequence(sqlalchemy_ws.id), 10),
    )
    history = lambda runs: [  # noqa: E731
        enrollment_store.history_row(runs[0], "waiting", NOW, node_id="n1", detail="until 13:00"),
        enrollment_store.history_row(runs[1], "stopped", NOW.astimezone(ELSEWHERE)),
    ]

    def through_driver(tx: sa.Connection) -> None:
        enrollment_store.insert_many(tx, ours)
        enrollment_store.record_many(tx, history(ours))

    def through_sqlalchemy(tx: sa.Connection) -> None:
        tx.execute(
            tables.enrollments.insert(),
            [{n: getattr(e, n) for n in enrollment_store._COLUMNS} for e in theirs],
        )
        tx.execute(tables.enrollment_history.insert(), history(theirs))

    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(db.write_engine, "before_cursor_execute", seen)
    try:
        db.write_sync(through_driver)
    finally:
        sa.event.remove(db.write_engine, "before_cursor_execute", seen)
    assert (not any(s.startswith("INSERT") for s in statements)) == (db.dialect == "sqlite"), statements
    db.write_sync(through_sqlalchemy)
    strip = lambda rs, ws: [tuple("<ws>" if v == ws else v for v in r) for r in rs]  # noqa: E731
    for table in (tables.enrollments, tables.enrollment_history):
        stored = _raw(db, table, driver_ws.id)
        assert len(stored) == 2
        # History ids are random: rows compared in a fixed order of their values.
        ordered = lambda rs, ws: sorted(strip(rs, ws), key=repr)  # noqa: E731
        assert ordered(stored, driver_ws.id) == ordered(_raw(db, table, sqlalchemy_ws.id), sqlalchemy_ws.id)
    read = db.read_sync(lambda tx: enrollment_store.get(tx, driver_ws.id, "enr_0"))
    assert read == ours[0]
