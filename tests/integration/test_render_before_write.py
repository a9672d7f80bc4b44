"""Emails are rendered before the write that stores them (core/mail.Drafts): a tenant's heavy template
renders while the single writer goes on committing every other workspace's work, and the write that
stores the message and moves the step past it stays one short transaction (at most once per step). On
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cartback.core import automations, checkouts, mail, sequences, subscribers, transactional
from cartback.delivery import render
from cartback.scheduler import worker
from cartback.scheduler.worker import Worker
from cartback.store import timers
from cartback.store.db import Database
from cartback.store.tables import checkouts as checkout_rows
from cartback.store.tables import enrollments, message_bodies, messages
from cartback.store.tables import subscribers as subscriber_rows
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHECKOUT = "ecommerce.checkout_started"
# Within every render limit, and still about 0.15 s of CPU per field: a template a tenant may save.
HEAVY = (
    "{% assign s = 'x' | append: 'y' %}{% for i in (1..2500) %}"
    "{% assign t = s | append: s | append: s %}{% assign u = t | upcase %}{% endfor %}"
)


def _sequence(db: Database, workspace_id: str, subject: str, html: str, **extra: Any) -> None:
    body = {
        "name": "Abandoned",
        "trigger": "event_received",
        "eventName": CHECKOUT,
        "steps": [{"type": "email", "delay": {"hours": 1}, "subject": subject, "html": html}],
        **extra,
    }
    db.write_sync(lambda tx: sequences.create(tx, workspace_id, body, T0, status="active"))


def _checkout_job(workspace_id: str, checkout_id: str, email: str, now: datetime) -> Any:
    data = checkouts.CheckoutInput(
        checkout_id=checkout_id,
        customer=subscribers.Identity(email=email, first_name="Jane"),
        currency="USD",
        total_cents=6450,
        checkout_url=f"https://shop.example.com/c/{checkout_id}",
        items=[{"productId": "p1", "title": "Logo tee", "quantity": 1, "priceCents": 6450}],
    )
    return lambda tx: checkouts.record_checkout(tx, workspace_id, data, now)


def _rows(db: Database, table: sa.Table, workspace_id: str) -> list[Any]:
    return db.read_sync(
        lambda tx: tx.execute(sa.select(table).where(table.c.workspace_id == workspace_id)).all()
    )


def test_a_batch_of_steps_stores_the_emails_composed_before_its_write(db, make_workspace):
    """The drafts composed in a read transaction are the ones the write stores: every email of the batch
    is found there (none rendered in the write), with its content; a second write of the same runs
    finds the steps done and stores nothing more."""
    ws = make_workspace().id
    _sequence(db, ws, "{{ checkout.items[0].title }}, {{ subscriber.firstName }}", "<p>Hi</p>")
    clock = FrozenClock(T0)
    for i in range(3):
        db.write_sync(_checkout_job(ws, f"c{i}", f"p{i}@example.com", T0))
    run_until_idle(db, clock)
    clock.advance(hours=2)
    now = clock.now()
    claimed = db.write_sync(lambda tx: timers.claim_due(tx, "w1", now, lease=timedelta(minutes=5), limit=10))
    assert len(claimed) == 3
    drafts = db.read_sync(lambda tx: automations.compose_ahead(tx, claimed, "w1"))
    assert len(drafts) == 3
    outcomes = db.write_sync(lambda tx: automations.advance_batch(tx, claimed, "w1", now, drafts=drafts))
    assert outcomes == ["completed"] * 3
    assert (drafts.hits, len(drafts)) == (3, 0)
    stored = _rows(db, messages, ws)
    assert sorted(m.to_email for m in stored) == [f"p{i}@example.com" for i in range(3)]
    assert {m.subject for m in stored} == {"Logo tee, Jane"}
    assert [r.status for r in _rows(db, enrollments, ws)] == ["completed"] * 3


def test_new_runs_at_their_first_delay_compose_nothing_ahead(db, make_workspace):
    """A run just enrolled waits at its first delay: its email is an hour away and is composed when it
    falls due, not now (where the draft would only be thrown away). Such a run is enrolled waiting and
    not claimed at all; one whose first step may stop it (a stop on a tag) is claimed to start its wait,
    and composing ahead for it renders nothing."""
    ws = make_workspace().id
    _sequence(db, ws, "{{ checkout.items[0].title }}", "<p>Hi</p>")
    _sequence(
        db,
        ws,
        "{{ checkout.items[0].title }}",
        "<p>Hi</p>",
        stopCondition={"type": "has_tag", "value": "vip"},
    )
    for i in range(3):
        db.write_sync(_checkout_job(ws, f"c{i}", f"p{i}@example.com", T0))
    db.write_sync(lambda tx: worker.dispatch_batch(tx, T0, 500))
    assert len(_rows(db, enrollments, ws)) == 6
    claimed = db.write_sync(lambda tx: timers.claim_due(tx, "w1", T0, lease=timedelta(minutes=5), limit=10))
    assert len(claimed) == 3  # the tag-stopped sequence's runs only
    drafts = db.read_sync(lambda tx: automations.compose_ahead(tx, claimed, "w1"))
    assert len(drafts) == 0
    outcomes = db.write_sync(lambda tx: automations.advance_batch(tx, claimed, "w1", T0, drafts=drafts))
    assert outcomes == ["waiting"] * 3
    assert _rows(db, messages, ws) == []


def test_a_transactional_send_stores_the_emails_composed_before_its_write(db, make_workspace):
    ws = make_workspace().id
    req = transactional.SendRequest(
        to=["a@example.com", "b@example.com"],
        subject="Hi {{ name }}",
        html="<p>{{ name }}</p>",
        variables={"name": "Jane"},
        idempotency_key="k1",
        request_hash="h1",
    )
    options = mail.Options()
    drafts = db.read_sync(lambda tx: transactional.compose_ahead(tx, ws, req, options, T0))
    assert len(drafts) == 2
    result = db.write_sync(lambda tx: transactional.send(tx, ws, req, options, T0, drafts=drafts))
    assert drafts.hits == 2 and len(drafts) == 0
    assert [r.status for r in result.recipients] == ["queued", "queued"]
    assert {m.subject for m in _rows(db, messages, ws)} == {"Hi Jane"}
    # A replay renders nothing ahead and stores nothing more.
    again = db.read_sync(lambda tx: transactional.compose_ahead(tx, ws, req, options, T0))
    assert len(again) == 0
    replay = db.write_sync(lambda tx: transactional.send(tx, ws, req, options, T0, drafts=again))
    assert replay.replay and len(_rows(db, messages, ws)) == 2


def test_a_marketing_send_to_a_new_address_is_composed_before_its_write(db, make_workspace):
    """A marketing send creates the subscriber it mails, and its email may name them: the composing pass
    renders it for the subscriber the write will create, with the id the write gives them, so the write
    takes that draft instead of rendering."""
    ws = make_workspace().id
    req = transactional.SendRequest(
        to=["new@example.com"],
        email_type="marketing",
        subject="Hi {{ subscriber.email }}",
        html="<p>You are {{ subscriber.id }} ({{ subscriber.status }}, {{ subscriber.externalId }})</p>",
        subscriber_external_id="ext-1",
    )
    options = mail.Options()
    drafts = db.read_sync(lambda tx: transactional.compose_ahead(tx, ws, req, options, T0))
    assert (len(drafts), drafts.hits) == (1, 0)
    # Nothing is created by composing: the write alone does.
    assert _rows(db, subscriber_rows, ws) == []
    composed = drafts.misses
    result = db.write_sync(lambda tx: transactional.send(tx, ws, req, options, T0, drafts=drafts))
    # The write took the draft and rendered nothing itself.
    assert (drafts.hits, drafts.misses, len(drafts)) == (1, composed, 0)
    [sub] = _rows(db, subscriber_rows, ws)
    [message] = _rows(db, messages, ws)
    assert (sub.email, sub.external_id, sub.status) == ("new@example.com", "ext-1", "active")
    assert result.recipients[0].subscriber_id == message.subscriber_id == sub.id
    assert message.subject == "Hi new@example.com"
    [body] = _rows(db, message_bodies, ws)
    assert f"You are {sub.id} (active, ext-1)" in body.html


def test_a_heavy_render_in_one_workspace_holds_up_no_commit_of_another(db, make_workspace, monkeypatch):
    """Workspace A's run reaches an email whose render is held (a template filter waiting on an event)
    until the test lets it go. While it is held, workspace B's checkout commits and is read back, and A's
    step has not: the render runs before A's write, on no thread that holds a write transaction.
    Rendered inside the write (as before compose_ahead), the render would run on the writer's thread and
    B's commit would wait behind it; the test says which. No clock decides anything: the only timeouts
    are there so that a broken run fails instead of hanging."""
    held, release = threading.Event(), threading.Event()
    armed = threading.Event()
    render_threads: list[str] = []

    def hold(value: object) -> object:
        # Saving the sequence renders the template on a sample context: only the worker's render waits.
        if armed.is_set():
            render_threads.append(threading.current_thread().name)
            held.set()
            release.wait(timeout=120)
        return value

    monkeypatch.setitem(render._HTML.filters, "hold", hold)
    # In this process, where the filter is; the app's render processes would not know it.
    monkeypatch.setattr(render.PROCESSES, "size", 0, raising=False)
    a, b = make_workspace().id, make_workspace().id
    _sequence(db, a, "Hi", "<p>{{ 'Hi' | hold }}</p>")
    clock = FrozenClock(T0)
    db.write_sync(_checkout_job(a, "a1", "a1@example.com", T0))
    run_until_idle(db, clock)
    clock.advance(hours=2)
    armed.set()

    async def run() -> None:
        await db.start()
        worker = Worker(db, clock, connections=1)
        steps = asyncio.ensure_future(worker.run_due_steps())
        try:
            assert await asyncio.to_thread(held.wait, 60), "the render never started"
            # The writer thread is where every write transaction runs (store/db.Database.write).
            assert not [t for t in render_threads if t.startswith("cartback-writer")], (
                f"rendered inside the write: {render_threads}"
            )
            await asyncio.wait_for(db.write(_checkout_job(b, "b1", "b1@example.com", clock.now())), 60)
            b_rows = await db.read(
                lambda tx: tx.execute(
                    sa.select(checkout_rows.c.checkout_id).where(checkout_rows.c.workspace_id == b)
                ).all()
            )
            assert [r.checkout_id for r in b_rows] == ["b1"]
            # A's render is still held and its step uncommitted while B committed and answered.
            assert not steps.done() and not release.is_set()
            assert (
                await db.read(
                    lambda tx: tx.execute(
                        sa.select(sa.func.count()).where(messages.c.workspace_id == a)
                    ).scalar_one()
                )
                == 0
            )
        finally:
            release.set()
            ran = await asyncio.wait_for(steps, 60)
            await db.stop()
        assert ran == 1

    asyncio.run(run())
    [body] = _rows(db, message_bodies, a)
    assert "<p>Hi</p>" in body.html
    assert len(render_threads) == 1
