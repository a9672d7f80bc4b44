"""A dispatch batch runs set-wise (core/dispatch_reads.py, scheduler/worker.dispatch_batch): what its events
do to each other inside the batch (enroll, stop, enroll again, dedupe) comes out as if each ran alone, one
poison event fails alone, and the statements a batch runs do not grow with the number of checkouts in it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cartback.core import events as core_events
from cartback.core import sequences, subscribers
from cartback.scheduler import worker
from cartback.store import enrollments as enrollment_store
from cartback.store.db import Database
from cartback.store.tables import enrollments, events

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
POISON = "test.poison"

ABANDONED = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    # Any order of the subscriber stops every live run of theirs, whichever checkout it was for.
    "stopOnOrder": True,
    "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Your cart", "html": "<p>back</p>"}],
}


def _seed(db: Database, ws: str, script: list[tuple[str, str, str | None]]) -> dict[str, str]:
    """The sequence, a subscriber per email, and the script's events (email, event name, checkoutId) one
    second apart; returns the subscriber ids by email."""

    def seed(tx: sa.Connection) -> dict[str, str]:
        sequences.create(tx, ws, ABANDONED, T0, status="active")
        people: dict[str, str] = {}
        for i, (email, name, checkout_id) in enumerate(script):
            if email not in people:
                people[email] = subscribers.upsert(tx, ws, subscribers.Identity(email=email), T0)[0].id
            core_events.record(
                tx,
                ws,
                name=name,
                source="api",
                subscriber_id=people[email],
                properties={"checkoutId": checkout_id} if checkout_id else {},
                now=T0 + timedelta(seconds=i),
            )
        return people

    return db.write_sync(seed)


def _runs(db: Database, ws: str) -> list[tuple[str, str, str]]:
    """(subscriber id, checkoutId, status) of every run, oldest first."""
    rows = db.read_sync(
        lambda tx: tx.execute(
            sa.select(enrollments)
            .where(enrollments.c.workspace_id == ws)
            .order_by(enrollments.c.trigger_received_at)
        ).all()
    )
    return [(r.subscriber_id, r.context["event"]["checkoutId"], r.status) for r in rows]


def test_a_batch_with_a_poison_event_enrolls_and_stops_as_one_event_at_a_time(db, make_workspace):
    ws = make_workspace().id
    people = _seed(
        db,
        ws,
        [
            ("a@example.com", "ecommerce.checkout_started", "a1"),
            ("b@example.com", "ecommerce.checkout_started", "b1"),
            ("c@example.com", POISON, None),
            ("a@example.com", "ecommerce.order_placed", "a1"),  # stops a's run of this same batch
            ("b@example.com", "ecommerce.checkout_started", "b1"),  # b1 has a live run already
            ("c@example.com", "ecommerce.checkout_started", "c1"),  # c's failed event holds nothing up
            ("a@example.com", "ecommerce.checkout_started", "a2"),  # after a's order: a new run
        ],
    )
    a, b, c = people["a@example.com"], people["b@example.com"], people["c@example.com"]
    seen: list[tuple[str, str]] = []

    def hook(tx: sa.Connection, event: Any, now: datetime, cache: dict[Any, Any]) -> None:
        if event.name == POISON:
            raise RuntimeError("poison")
        if event.name.startswith("ecommerce."):
            seen.append((event.subscriber_id, event.name))

    done = db.write_sync(lambda tx: worker.dispatch_batch(tx, T0 + timedelta(minutes=1), 500, [hook]))

    assert done == 7 + 3  # and each new subscriber's subscriber.created
    assert _runs(db, ws) == [
        (a, "a1", "stopped"),
        (b, "b1", "active"),
        (c, "c1", "active"),
        (a, "a2", "active"),
    ]
    stopped = next(
        r
        for r in db.read_sync(lambda tx: enrollment_store.for_subscriber(tx, ws, a))
        if r.status == "stopped"
    )
    history = db.read_sync(lambda tx: enrollment_store.history(tx, ws, stopped.id))
    # Enrolled already waiting on the sequence's first step, a delay (automations._parked).
    assert [(h.action, h.detail) for h in history] == [
        ("enrolled", "by event ecommerce.checkout_started"),
        ("waiting", f"delay until {stopped.context['due']['at']}"),
        ("stopped", "the subscriber placed an order"),
    ]
    # Every event is dispatched, the poison one included (it was logged and skipped), and never again; what
    # is left is what the batch recorded itself (the stopped run's end, for webhooks).
    undispatched = db.read_sync(
        lambda tx: (
            tx.execute(sa.select(events.c.name).where(events.c.dispatched_at.is_(None))).scalars().all()
        )
    )
    assert undispatched == ["sequence.finished"]
    # Once the batch failed, each event ran again alone, in order; the hooks saw all but the poison one.
    checkout, order = "ecommerce.checkout_started", "ecommerce.order_placed"
    assert seen[-6:] == [
        (a, checkout),
        (b, checkout),
        (a, order),
        (b, checkout),
        (c, checkout),
        (a, checkout),
    ]


@pytest.mark.parametrize("checkouts", [5, 40])
def test_a_batch_runs_the_same_statements_whatever_its_size(db, make_workspace, checkouts):
    """Set-wise: 5 or 40 checkouts of different people, one batch, the same number of statements."""
    ws = make_workspace().id
    _seed(
        db,
        ws,
        [
            (f"p{i}-{secrets.token_hex(2)}@example.com", "ecommerce.checkout_started", f"c{i}")
            for i in range(checkouts)
        ],
    )
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def job(tx: sa.Connection) -> int:
        sa.event.listen(tx, "before_cursor_execute", count)
        try:
            return worker.dispatch_batch(tx, T0 + timedelta(minutes=1), 500, [lambda *a: None])
        finally:
            sa.event.remove(tx, "before_cursor_execute", count)

    done = db.write_sync(job)
    assert done == 2 * checkouts  # and each new subscriber's subscriber.created
    assert len(_runs(db, ws)) == checkouts
    savepoints = [s for s in statements if s.lstrip().upper().startswith("SAVEPOINT")]
    assert len(savepoints) == 1, "\n".join(statements)
    # Taking the events (on PostgreSQL after locking partitions); the runs, sequences started (per event
    # name) and subscribers concerned; one insert each for the runs and their history; marking the events;
    # the savepoint's start and release.
    assert len(statements) <= 11, "\n".join(statements)


@pytest.mark.parametrize(
    ("stop", "parked"),
    [
        ({"stopOnOrder": True}, True),
        # A stop on the subscriber's state may already hold: the run's first step checks it at once.
        ({"stopCondition": {"type": "has_tag", "value": "vip"}}, False),
    ],
)
def test_a_new_run_starts_waiting_on_a_first_delay_unless_its_first_step_may_stop_it(
    db, make_workspace, stop, parked
):
    ws = make_workspace().id
    now = T0 + timedelta(minutes=1)

    def seed(tx: sa.Connection) -> None:
        definition = {key: value for key, value in ABANDONED.items() if key != "stopOnOrder"}
        sequences.create(tx, ws, {**definition, **stop}, T0, status="active")
        sub = subscribers.upsert(tx, ws, subscribers.Identity(email="p@example.com"), T0)[0]
        core_events.record(
            tx,
            ws,
            name="ecommerce.checkout_started",
            source="api",
            subscriber_id=sub.id,
            properties={"checkoutId": "p1"},
            now=T0,
        )

    db.write_sync(seed)
    db.write_sync(lambda tx: worker.dispatch_batch(tx, now, 500, []))

    [run] = db.read_sync(
        lambda tx: tx.execute(sa.select(enrollments).where(enrollments.c.workspace_id == ws)).all()
    )
    history = db.read_sync(lambda tx: enrollment_store.history(tx, ws, run.id))
    due = now + timedelta(hours=1)
    if parked:
        assert run.next_run_at.replace(tzinfo=UTC) == due
        assert run.context["due"] == {"node": run.current_node_id, "at": due.isoformat()}
        assert [(h.action, h.detail) for h in history] == [
            ("enrolled", "by event ecommerce.checkout_started"),
            ("waiting", f"delay until {due.isoformat()}"),
        ]
    else:
        assert run.next_run_at.replace(tzinfo=UTC) == now and "due" not in run.context
        assert [h.action for h in history] == ["enrolled"]
