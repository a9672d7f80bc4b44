"""A claimed batch of steps runs set-wise (core/batch_reads.py): the rows its steps read are fetched once
for the batch. These tests hold it to the results of running each step alone, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cartback.core import checkouts, orders, sequences, subscribers
from cartback.scheduler.worker import Worker
from cartback.store import enrollments as enrollment_store
from cartback.store import sequences as sequence_store
from cartback.store import suppressions as suppression_store
from cartback.store.db import Database
from cartback.store.tables import enrollments, events, messages
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHECKOUT = "ecommerce.checkout_started"


def _sequence(db: Database, workspace_id: str, body: dict[str, Any]) -> sequence_store.Sequence:
    return db.write_sync(lambda tx: sequences.create(tx, workspace_id, body, T0, status="active"))


def _checkout(db: Database, workspace_id: str, checkout_id: str, email: str, now: datetime) -> None:
    data = checkouts.CheckoutInput(
        checkout_id=checkout_id,
        customer=subscribers.Identity(email=email, first_name="Jane"),
        currency="USD",
        total_cents=6450,
        checkout_url=f"https://shop.example.com/c/{checkout_id}",
        items=[{"productId": "p1", "title": "Logo tee", "quantity": 1, "priceCents": 6450}],
    )
    db.write_sync(lambda tx: checkouts.record_checkout(tx, workspace_id, data, now))


def _order(
    db: Database, workspace_id: str, order_id: str, checkout_id: str, email: str, now: datetime
) -> None:
    data = orders.OrderInput(
        order_id=order_id,
        customer=subscribers.Identity(email=email),
        currency="USD",
        total_cents=6450,
        properties={"checkoutId": checkout_id},
    )
    db.write_sync(lambda tx: orders.record_order(tx, workspace_id, data, now))


def _rows(db: Database, table: sa.Table, workspace_id: str) -> list[Any]:
    return db.read_sync(
        lambda tx: tx.execute(sa.select(table).where(table.c.workspace_id == workspace_id)).all()
    )


ABANDONED = {
    "name": "Abandoned",
    "trigger": "event_received",
    "eventName": CHECKOUT,
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": "ecommerce.order_placed",
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "steps": [
        {
            "type": "email",
            "delay": {"hours": 1},
            "subject": "Your {{ checkout.items[0].title }}",
            "html": "<p>Hi {{ subscriber.firstName }}</p><a href='{{ event.checkoutUrl }}'>back</a>",
        }
    ],
}


def test_a_batch_stops_sends_and_skips_as_each_step_would_alone(db, make_workspace):
    """One batch mixes a run whose own order arrived (stopped), a run whose subscriber ordered the same
    checkoutId *before* enrolling (that order predates the run and must not count, though the batch reads
    events from the earliest run's start), a suppressed address (skipped) and a plain one (sent, with the
    checkout snapshot read for the batch)."""
    ws = make_workspace().id
    _sequence(db, ws, ABANDONED)
    clock = FrozenClock(T0)
    _checkout(db, ws, "A", "a@example.com", T0)
    _checkout(db, ws, "S", "s@example.com", T0)
    _order(db, ws, "ord-early", "L", "late@example.com", T0 + timedelta(seconds=10))
    _checkout(db, ws, "L", "late@example.com", T0 + timedelta(seconds=20))
    _checkout(db, ws, "O", "o@example.com", T0 + timedelta(seconds=30))
    clock.advance(seconds=30)
    run_until_idle(db, clock)
    _order(db, ws, "ord-O", "O", "o@example.com", T0 + timedelta(minutes=5))
    # As if the dispatcher had not reached the order yet: only the step-time re-check can stop O.
    db.write_sync(
        lambda tx: tx.execute(
            events.update()
            .where(events.c.workspace_id == ws, events.c.dispatched_at.is_(None))
            .values(dispatched_at=T0 + timedelta(minutes=5))
        )
    )
    # A bounce recorded for the address alone (the subscriber stays active, so only the send is blocked).
    db.write_sync(
        lambda tx: suppression_store.add(
            tx, ws, "s@example.com", "bounced", "smtp", T0 + timedelta(minutes=6)
        )
    )
    clock.advance(hours=2)
    # One claim takes all four: they run in one advance_batch.
    assert run_until_idle(db, clock) == 4
    sent = {m.to_email: m for m in _rows(db, messages, ws)}
    assert sorted(sent) == ["a@example.com", "late@example.com"]
    assert sent["a@example.com"].subject == "Your Logo tee"  # the checkout snapshot, read set-wise
    runs = {r.dedupe_key or r.id: r for r in _rows(db, enrollments, ws)}
    by_cart = {r.context["event"]["checkoutId"]: r for r in runs.values()}
    assert by_cart["O"].status == "stopped"
    assert by_cart["O"].stop_reason.startswith("stop condition: ecommerce.order_placed")
    assert by_cart["L"].status == "completed" and by_cart["A"].status == "completed"
    assert by_cart["S"].status == "completed"  # its email step was skipped: suppressed


def test_a_later_run_of_the_same_subscriber_sees_what_an_earlier_one_changed(db, make_workspace):
    """Two runs of one subscriber due together: the first tags them, the second stops on that tag. Rows
    read up front for the batch would say "no tag"; the second run must read afresh."""
    ws = make_workspace().id
    _sequence(
        db,
        ws,
        {
            "name": "tagger",
            "trigger": "event_received",
            "eventName": CHECKOUT,
            "enrollmentMode": "unlimited",
            "steps": [
                {"nodeType": "action_add_tag", "delay": {"minutes": 1}, "config": {"tagName": "vip"}},
            ],
        },
    )
    _sequence(
        db,
        ws,
        {
            "name": "stopper",
            "trigger": "event_received",
            "eventName": CHECKOUT,
            "enrollmentMode": "unlimited",
            "stopCondition": {"type": "has_tag", "value": "vip"},
            "steps": [{"type": "email", "delay": {"minutes": 2}, "subject": "Hi", "text": "x"}],
        },
    )
    clock = FrozenClock(T0)
    _checkout(db, ws, "A", "a@example.com", T0)
    run_until_idle(db, clock)
    clock.advance(minutes=3)  # both due: the tagger (due first) runs first in the batch
    run_until_idle(db, clock)
    assert _rows(db, messages, ws) == []
    stopped = [r for r in _rows(db, enrollments, ws) if r.status == "stopped"]
    assert [r.stop_reason for r in stopped] == ["stop condition: subscriber has tag 'vip'"]


def test_a_failing_step_holds_up_no_other_in_its_batch(db, make_workspace):
    """A run whose step raises makes the set-wise batch fail; the worker then runs the batch one step at a
    time, so the others are sent and only the failing run stays where it was."""
    ws = make_workspace().id
    good = _sequence(db, ws, {**ABANDONED, "name": "good"})
    bad = _sequence(db, ws, {**ABANDONED, "name": "bad", "enrollmentMode": "unlimited"})
    clock = FrozenClock(T0)
    for i in range(3):
        _checkout(db, ws, f"c{i}", f"u{i}@example.com", T0)
    run_until_idle(db, clock)
    # Break the second sequence's email node after enrolment: a node without its config raises.
    nodes = [
        {k: v for k, v in n.items() if k != "config"} if n["type"] == "email" else n
        for n in bad.definition["nodes"]
    ]
    db.write_sync(
        lambda tx: sequence_store.save(tx, replace(bad, definition={**bad.definition, "nodes": nodes}))
    )
    clock.advance(hours=2)

    async def run() -> int:
        await db.start()
        try:
            return await Worker(db, clock).run_due_steps()
        finally:
            await db.stop()

    assert asyncio.run(run()) == 6
    rows = _rows(db, enrollments, ws)
    assert sorted(r.status for r in rows if r.sequence_id == good.id) == ["completed"] * 3
    broken = [r for r in rows if r.sequence_id == bad.id]
    assert [r.status for r in broken] == ["active"] * 3
    assert len(_rows(db, messages, ws)) == 3
    # Each failure is kept with its reason, and the run waits out a backoff instead of its lease.
    for run_ in broken:
        assert run_.lease_owner is None and run_.next_run_at == clock.now() + timedelta(seconds=30)
        assert run_.context["failures"] == 1
        [error] = [
            h
            for h in db.read_sync(lambda tx, r=run_: enrollment_store.history(tx, ws, r.id))
            if h.action == "error"
        ]
        assert error.detail.startswith(f"step {run_.current_node_id} failed: ")
    # Retire the broken runs: the PostgreSQL database is shared with later tests' workers.
    db.write_sync(
        lambda tx: tx.execute(
            enrollments.update()
            .where(enrollments.c.sequence_id == bad.id)
            .values(status="cancelled", next_run_at=None, lease_owner=None, lease_until=None)
        )
    )


@pytest.mark.parametrize(
    ("html", "reason"),
    [
        ("<p>{{ 10 | divided_by: 0 }}</p>", "html: divided_by: can't divide by 0 at line 1, column 12"),
        (
            "<p>{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}</p>",
            "html: template exceeds the resource limits: more than 10,000 loop iterations"
            " at line 1, column 7",
        ),
    ],
    ids=["filter-error", "over-the-limits"],
)
def test_a_step_whose_template_cannot_render_fails_its_run_alone(db, make_workspace, html, reason):
    """Workspace A's stored step renders into an error (a filter's impossible argument; a template over
    the resource limits, saved before the check at save or over them only on this run's data); its runs
    are claimed in one batch with workspace B's. B's messages are queued in that same round, set-wise;
    A's run ends failed with the step and the reason, at once, instead of being claimed again at every
    lease expiry."""
    a, b = make_workspace().id, make_workspace().id
    bad = _sequence(db, a, {**ABANDONED, "name": "bad"})
    _sequence(db, b, {**ABANDONED, "name": "good"})
    nodes = [
        {**n, "config": {**n["config"], "html": html}} if n["type"] == "email" else n
        for n in bad.definition["nodes"]
    ]
    db.write_sync(
        lambda tx: sequence_store.save(tx, replace(bad, definition={**bad.definition, "nodes": nodes}))
    )
    clock = FrozenClock(T0)
    _checkout(db, b, "b1", "b1@example.com", T0)
    _checkout(db, a, "a1", "a1@example.com", T0 + timedelta(seconds=1))
    _checkout(db, b, "b2", "b2@example.com", T0 + timedelta(seconds=2))
    run_until_idle(db, clock)
    clock.advance(hours=2)

    async def run() -> tuple[int, Worker]:
        await db.start()
        try:
            worker = Worker(db, clock)
            return await worker.run_due_steps(), worker
        finally:
            await db.stop()

    ran, _ = asyncio.run(run())
    assert ran == 3
    assert sorted(m.to_email for m in _rows(db, messages, b)) == ["b1@example.com", "b2@example.com"]
    assert _rows(db, messages, a) == []
    [failed] = _rows(db, enrollments, a)
    node = next(n["id"] for n in nodes if n["type"] == "email")
    assert failed.status == "failed" and failed.next_run_at is None and failed.lease_owner is None
    assert failed.stop_reason == f"step {node}: the email cannot be rendered: {reason}"
    history = db.read_sync(lambda tx: enrollment_store.history(tx, a, failed.id))
    assert ("failed", failed.stop_reason) in [(h.action, h.detail) for h in history]
    assert [r.status for r in _rows(db, enrollments, b)] == ["completed", "completed"]
