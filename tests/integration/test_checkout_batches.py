"""Started checkouts recorded set-wise, several per group commit (core.checkouts.record_checkouts through
Database.write_each), against the one-by-one rule they must agree with: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cartback import errors
from cartback.core import checkouts, subscribers
from cartback.store.db import Database
from cartback.store.tables import checkouts as checkout_rows
from cartback.store.tables import events
from cartback.store.tables import subscribers as subscriber_rows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _checkout(checkout_id: str, email: str | None, **customer: str) -> checkouts.CheckoutInput:
    return checkouts.CheckoutInput(
        checkout_id=checkout_id,
        customer=subscribers.Identity(email=email, **customer),
        currency="USD",
        total_cents=1200,
        items=[{"productId": "p1", "title": "Sweater", "quantity": 1}],
    )


def _rows(db: Database, workspace_id: str) -> dict[str, list[tuple]]:
    def read(tx):
        def q(table, *cols, order=None):
            query = sa.select(*cols).where(table.c.workspace_id == workspace_id).order_by(*(order or cols))
            return [tuple(r) for r in tx.execute(query)]

        return {
            "subscribers": q(subscriber_rows, subscriber_rows.c.email, subscriber_rows.c.first_name),
            "events": q(events, events.c.name, events.c.idempotency_key, events.c.subscriber_id),
            "checkouts": q(checkout_rows, checkout_rows.c.checkout_id, checkout_rows.c.subscriber_id),
        }

    return db.read_sync(read)


def test_checkout_batch_agrees_with_one_by_one(db: Database, make_workspace):
    """A set mixing every case the set-wise path must leave to the one-by-one rule stores what recording
    them one after the other stores, and answers each request as that would."""
    known = make_workspace()
    other = make_workspace()
    db.write_sync(lambda tx: subscribers.upsert(tx, known.id, subscribers.Identity(email="old@x.io"), NOW))
    db.write_sync(lambda tx: checkouts.record_checkout(tx, known.id, _checkout("c-old", "old@x.io"), NOW))
    batch = [
        checkouts.CheckoutRequest(known.id, _checkout("c1", "new@x.io"), NOW),
        checkouts.CheckoutRequest(known.id, _checkout("c1", "new@x.io"), NOW),  # a concurrent retry
        checkouts.CheckoutRequest(known.id, _checkout("c2", "NEW@x.io"), NOW),  # same person, other case
        checkouts.CheckoutRequest(known.id, _checkout("c3", "old@x.io", first_name="Ann"), NOW),  # known
        checkouts.CheckoutRequest(known.id, _checkout("c-old", "old@x.io"), NOW),  # a retry of a stored one
        checkouts.CheckoutRequest(known.id, _checkout("c4", None, external_id="ext-1"), NOW),  # no email
        checkouts.CheckoutRequest(known.id, _checkout("c5", "both@x.io", external_id="ext-2"), NOW),
        checkouts.CheckoutRequest(other.id, _checkout("c1", "new@x.io"), NOW),  # another workspace
    ]
    answers = db.write_sync(lambda tx: checkouts.record_checkouts(tx, batch))

    ids = [(a.checkout_id, a.subscriber_id, a.event_id) for a in answers]
    assert ids[0] == ids[1] and answers[0].created and not answers[1].created
    assert answers[2].subscriber_id == answers[0].subscriber_id
    assert not answers[4].created
    assert answers[7].subscriber_id != answers[0].subscriber_id
    assert [a.checkout_id for a in answers] == [r.data.checkout_id for r in batch]

    # The same requests one by one, in two fresh workspaces: the same rows, ids aside.
    known_2, other_2 = make_workspace(), make_workspace()
    db.write_sync(lambda tx: subscribers.upsert(tx, known_2.id, subscribers.Identity(email="old@x.io"), NOW))
    db.write_sync(lambda tx: checkouts.record_checkout(tx, known_2.id, _checkout("c-old", "old@x.io"), NOW))
    moved = {known.id: known_2.id, other.id: other_2.id}
    for r in batch:
        db.write_sync(lambda tx, r=r: checkouts.record_checkout(tx, moved[r.workspace_id], r.data, r.now))

    def shape(workspace_id: str) -> dict[str, list[tuple]]:
        rows = _rows(db, workspace_id)
        by_id = {
            sid: email
            for email, sid in db.read_sync(
                lambda tx: tx.execute(
                    sa.select(subscriber_rows.c.email, subscriber_rows.c.id).where(
                        subscriber_rows.c.workspace_id == workspace_id
                    )
                ).all()
            )
        }
        return {
            "subscribers": rows["subscribers"],
            "events": sorted(((n, k, by_id.get(s)) for n, k, s in rows["events"]), key=repr),
            "checkouts": sorted(((c, by_id.get(s)) for c, s in rows["checkouts"]), key=repr),
        }

    assert shape(known.id) == shape(known_2.id)
    assert shape(other.id) == shape(other_2.id)


def test_checkout_batch_in_one_group_commit_isolates_a_failing_request(db: Database, make_workspace):
    """Many checkouts queued together share one commit and one set-wise call; one that cannot be recorded
    fails alone (the batch runs again with a savepoint per request) and the others are stored."""
    ws = make_workspace()

    async def run() -> list:
        await db.start()
        try:
            requests = [
                checkouts.CheckoutRequest(ws.id, _checkout(f"c{i}", f"p{i}@x.io"), NOW) for i in range(20)
            ]
            requests.append(checkouts.CheckoutRequest(ws.id, _checkout("nobody", None), NOW))
            return await asyncio.gather(
                *(db.write_each(checkouts.record_checkouts, r) for r in requests), return_exceptions=True
            )
        finally:
            await db.stop()

    results = asyncio.run(run())
    assert isinstance(results[-1], errors.InvalidInput)
    assert all(isinstance(r, checkouts.CheckoutRecorded) and r.created for r in results[:-1])
    assert db.stats.largest_batch > 1 and db.stats.retried_batches >= 1
    rows = _rows(db, ws.id)
    assert len(rows["checkouts"]) == 20 and len(rows["subscribers"]) == 20
    assert sorted(n for n, _k, _s in rows["events"]).count("ecommerce.checkout_started") == 20


@pytest.mark.parametrize("size", [1, 50])
def test_checkout_batch_answers_each_request_its_own_ids(db: Database, make_workspace, size):
    ws = make_workspace()
    batch = [checkouts.CheckoutRequest(ws.id, _checkout(f"k{i}", f"k{i}@x.io"), NOW) for i in range(size)]
    answers = db.write_sync(lambda tx: checkouts.record_checkouts(tx, batch))
    stored = db.read_sync(
        lambda tx: {
            r.checkout_id: (r.subscriber_id, r.event_id)
            for r in tx.execute(sa.select(checkout_rows).where(checkout_rows.c.workspace_id == ws.id))
        }
    )
    assert {a.checkout_id: (a.subscriber_id, a.event_id) for a in answers} == stored
