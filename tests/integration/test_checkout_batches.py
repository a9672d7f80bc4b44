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


def _cart(checkout_id: str, email: str | None, cents: int, **customer: str) -> checkouts.CheckoutInput:
    return checkouts.CheckoutInput(
        checkout_id=checkout_id,
        customer=subscribers.Identity(email=email, **customer),
        currency="USD",
        total_cents=cents,
        items=[{"productId": "p1", "title": "Sweater", "quantity": cents // 1200}],
    )


def _seed_retries(db: Database, workspace_id: str) -> None:
    """Ann (ext-a) with checkouts ca and cc, Bob with cb, every cart at 1200."""

    def seed(tx: sa.Connection) -> None:
        identity = subscribers.Identity(email="ann@x.io", external_id="ext-a", first_name="Ann")
        subscribers.upsert(tx, workspace_id, identity, NOW)
        for checkout_id, email in (("ca", "ann@x.io"), ("cc", "ann@x.io"), ("cb", "bob@x.io")):
            checkouts.record_checkout(tx, workspace_id, _cart(checkout_id, email, 1200), NOW)

    db.write_sync(seed)


def _state(db: Database, workspace_id: str) -> dict[str, list[tuple]]:
    def read(tx: sa.Connection) -> dict[str, list[tuple]]:
        people = tx.execute(
            sa.select(
                subscriber_rows.c.id,
                subscriber_rows.c.email,
                subscriber_rows.c.external_id,
                subscriber_rows.c.first_name,
            ).where(subscriber_rows.c.workspace_id == workspace_id)
        ).all()
        email_of = {p.id: p.email or p.external_id for p in people}
        carts = tx.execute(
            sa.select(
                checkout_rows.c.checkout_id,
                checkout_rows.c.subscriber_id,
                checkout_rows.c.total_cents,
                checkout_rows.c["items"],
            ).where(checkout_rows.c.workspace_id == workspace_id)
        ).all()
        names = tx.execute(
            sa.select(events.c.name, events.c.idempotency_key).where(events.c.workspace_id == workspace_id)
        ).all()
        return {
            "subscribers": sorted((p.email, p.external_id, p.first_name) for p in people),
            "checkouts": sorted((c[0], email_of[c[1]], c[2], repr(c[3])) for c in carts),
            "events": sorted(tuple(n) for n in names),
        }

    return db.read_sync(read)


def test_retries_in_a_batch_agree_with_one_by_one(db: Database, make_workspace):
    """Retries that would change nothing are answered set-wise, but not one that an earlier request of the
    batch changes what it is compared against: the same checkout's cart, or the same person found by
    another id. Those would restore what the earlier request changed, as they do one by one."""
    batch_ws, one_by_one_ws = make_workspace(), make_workspace()
    requests = [
        _cart("cb", "bob@x.io", 1200),  # unchanged: answered set-wise
        _cart("ca", "ann@x.io", 2400),  # a changed cart
        _cart("ca", "ann@x.io", 1200),  # as stored, but after the change above it changes it back
        _cart("cn", None, 1200, external_id="ext-a", first_name="Anna"),  # Ann, found by her external id
        _cart("cc", "ann@x.io", 1200, first_name="Ann"),  # as stored, but after the above: Anna -> Ann
        _cart("cb", "bob@x.io", 1200),  # unchanged again
    ]
    _seed_retries(db, batch_ws.id)
    batch = [checkouts.CheckoutRequest(batch_ws.id, data, NOW) for data in requests]
    answers = db.write_sync(lambda tx: checkouts.record_checkouts(tx, batch))

    _seed_retries(db, one_by_one_ws.id)
    alone = [
        db.write_sync(lambda tx, data=data: checkouts.record_checkout(tx, one_by_one_ws.id, data, NOW))
        for data in requests
    ]

    assert _state(db, batch_ws.id) == _state(db, one_by_one_ws.id)
    ann = _state(db, batch_ws.id)["subscribers"][0]
    assert ann == ("ann@x.io", "ext-a", "Ann")
    assert [a.created for a in answers] == [a.created for a in alone] == [False] * 3 + [True] + [False] * 2
    assert answers[0] == answers[5]
    assert answers[1].event_id == answers[2].event_id


def test_unchanged_retries_are_answered_with_a_query_or_two(db: Database, make_workspace):
    """A batch of retries that change nothing reads the checkouts and the people once, not each retry's."""
    ws = make_workspace()
    stored = [_cart(f"r{i}", f"r{i}@x.io", 1200) for i in range(30)]
    first = db.write_sync(
        lambda tx: checkouts.record_checkouts(tx, [checkouts.CheckoutRequest(ws.id, d, NOW) for d in stored])
    )
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    def retry(tx: sa.Connection) -> list[checkouts.CheckoutRecorded]:
        sa.event.listen(tx, "before_cursor_execute", count)
        try:
            return checkouts.record_checkouts(tx, [checkouts.CheckoutRequest(ws.id, d, NOW) for d in stored])
        finally:
            sa.event.remove(tx, "before_cursor_execute", count)

    again = db.write_sync(retry)
    assert [(a.checkout_id, a.subscriber_id, a.event_id) for a in again] == [
        (a.checkout_id, a.subscriber_id, a.event_id) for a in first
    ]
    assert not any(a.created for a in again)
    # record_new's look at what exists, then the checkouts and the people of the retries.
    assert len(statements) <= 3, "\n".join(statements)
