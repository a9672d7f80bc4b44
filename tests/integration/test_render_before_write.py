"""Emails are rendered before the write that stores them (core/mail.Drafts): a tenant's heavy template
renders while the single writer goes on committing every other workspace's work, and the write that
stores the message and moves the step past it stays one short transaction (at most once per step). On
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cartback.core import automations, checkouts, mail, sequences, subscribers, transactional
from cartback.store import timers
from cartback.store.db import Database
from cartback.store.tables import enrollments, messages
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHECKOUT = "ecommerce.checkout_started"
# Within every render limit, and still about 0.15 s of CPU per field: a template a tenant may save.
HEAVY = (
    "{% assign s = 'x' | append: 'y' %}{% for i in (1..2500) %}"
    "{% assign t = s | append: s | append: s %}{% assign u = t | upcase %}{% endfor %}"
)


def _sequence(db: Database, workspace_id: str, subject: str, html: str) -> None:
    body = {
        "name": "Abandoned",
        "trigger": "event_received",
        "eventName": CHECKOUT,
        "steps": [{"type": "email", "delay": {"hours": 1}, "subject": subject, "html": html}],
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
