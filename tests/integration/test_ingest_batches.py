"""Klaviyo's and Segment's requests applied several per group commit (core.ingest.apply_many through
Database.write_each), against applying them one after the other: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cartback import errors
from cartback.core import checkouts, ingest, orders, subscribers
from cartback.store.db import Database
from cartback.store.tables import checkouts as checkout_rows
from cartback.store.tables import events, segment_messages
from cartback.store.tables import subscribers as subscriber_rows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def started(checkout_id: str, email: str | None = None, **customer: Any) -> ingest.CheckoutStarted:
    profile_id = customer.pop("profile_id", None)
    return ingest.CheckoutStarted(
        checkouts.CheckoutInput(
            checkout_id=checkout_id,
            customer=subscribers.Identity(email=email, **customer),
            currency="USD",
            total_cents=1200,
            items=[{"productId": "p1", "title": "Sweater", "quantity": 1}],
            source="segment",
        ),
        profile_id=profile_id,
    )


def placed(order_id: str, email: str, checkout_id: str) -> ingest.OrderStatusChange:
    return ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=subscribers.Identity(email=email),
            currency="USD",
            total_cents=1200,
            properties={"checkoutId": checkout_id},
            source="segment",
        )
    )


def msg(action: ingest.Action, message_id: str | None = None) -> ingest.Message:
    return ingest.Message(action, message_id=message_id)


def _shape(db: Database, workspace_id: str) -> dict[str, Any]:
    """What a workspace holds, ids aside: people, each person's events in order, checkouts, messageIds."""

    def read(tx: Any) -> dict[str, Any]:
        people = {
            r.id: (r.email, r.external_id, r.anonymous_id, r.first_name, r.last_name)
            for r in tx.execute(
                sa.select(subscriber_rows).where(subscriber_rows.c.workspace_id == workspace_id)
            )
        }
        timeline: dict[Any, list[tuple[Any, ...]]] = {}
        for r in tx.execute(sa.select(events).where(events.c.workspace_id == workspace_id)):
            timeline.setdefault(people.get(r.subscriber_id), []).append(
                (r.received_at, r.name, r.idempotency_key)
            )
        carts = sorted(
            (r.checkout_id, people.get(r.subscriber_id), r.order_id, r.total_cents)
            for r in tx.execute(sa.select(checkout_rows).where(checkout_rows.c.workspace_id == workspace_id))
        )
        remembered = sorted(
            tx.execute(
                sa.select(segment_messages.c.message_id, segment_messages.c.received_at).where(
                    segment_messages.c.workspace_id == workspace_id
                )
            ).all()
        )
        return {
            "people": sorted(people.values(), key=repr),
            # Each person's events with the time they were received, which the dispatcher orders by.
            "timeline": {k: sorted(v, key=repr) for k, v in timeline.items()},
            "checkouts": carts,
            "messages": [tuple(r) for r in remembered],
        }

    return db.read_sync(read)


def _requests(workspace_id: str, other_id: str, anon_holder: str) -> list[ingest.Request]:
    at = [NOW + timedelta(seconds=i) for i in range(10)]
    return [
        # A Segment batch: new people (one by email and anonymous id), a messageId repeated inside it.
        ingest.Request(
            workspace_id,
            [
                msg(started("c1", "a@x.io", anonymous_id="anon-a"), "m1"),
                msg(started("c2", "b@x.io"), "m2"),
                msg(started("c1", "a@x.io", anonymous_id="anon-a"), "m1"),
            ],
            at[0],
        ),
        # Another request of the same commit repeating m2 (a retry): a replay, nothing applied.
        ingest.Request(workspace_id, [msg(started("c2", "b@x.io", first_name="Retry"), "m2")], at[1]),
        # A person identified first, then their checkout: the later name wins.
        ingest.Request(
            workspace_id,
            [
                msg(ingest.ProfileChange(subscribers.Identity(email="c@x.io", first_name="Cleo")), "m3"),
                msg(started("c3", "c@x.io", first_name="Cleopatra"), "m4"),
            ],
            at[2],
        ),
        # An order naming a checkout not stored yet, then that checkout: not linked, as one by one.
        ingest.Request(
            workspace_id,
            [msg(placed("o1", "d@x.io", "c4"), "m5"), msg(started("c4", "e@x.io"), "m6")],
            at[3],
        ),
        # The anonymous profile of a device, then an email on that device: the profiles merge.
        ingest.Request(workspace_id, [msg(started("c5", "f@x.io", anonymous_id=anon_holder), "m7")], at[4]),
        # A checkout under an email an earlier request of the commit used, by another anonymous id.
        ingest.Request(workspace_id, [msg(started("c6", "A@x.io", anonymous_id="anon-a2"))], at[5]),
        # An anonymous id an earlier request gave someone else: a shared device.
        ingest.Request(workspace_id, [msg(started("c7", "g@x.io", anonymous_id="anon-a"))], at[6]),
        # Named by external id and alias.
        ingest.Request(
            workspace_id,
            [
                msg(ingest.Alias(previous_id="anon-h", user_id="user-h")),
                msg(started("c8", None, external_id="user-h")),
            ],
            at[7],
        ),
        # A Klaviyo event with no messageId, a retry of a stored checkout, and another workspace.
        ingest.Request(workspace_id, [msg(started("c-old", "old@x.io"))], at[8]),
        ingest.Request(other_id, [msg(started("c1", "a@x.io", anonymous_id="anon-a"), "m1")], at[9]),
    ]


def _seed(db: Database, workspace_id: str) -> str:
    """A stored checkout, and an anonymous profile with a checkout of its own; the anonymous id."""
    db.write_sync(lambda tx: ingest.apply(tx, workspace_id, [msg(started("c-old", "old@x.io"))], NOW))
    db.write_sync(
        lambda tx: ingest.apply(tx, workspace_id, [msg(started("c-anon", anonymous_id="dev-1"))], NOW)
    )
    return "dev-1"


def test_a_commit_of_requests_agrees_with_applying_them_one_by_one(db: Database, make_workspace):
    ws, other = make_workspace(), make_workspace()
    holder = _seed(db, ws.id)
    requests = _requests(ws.id, other.id, holder)
    outcomes = db.write_sync(lambda tx: ingest.apply_many(tx, requests))

    ws_2, other_2 = make_workspace(), make_workspace()
    _seed(db, ws_2.id)
    moved = {ws.id: ws_2.id, other.id: other_2.id}
    one_by_one = [
        db.write_sync(lambda tx, r=r: ingest.apply(tx, moved[r.workspace_id], r.messages, r.now))
        for r in _requests(ws.id, other.id, holder)
    ]

    assert outcomes == one_by_one
    assert [(o.applied, o.replayed) for o in outcomes[:2]] == [(2, 1), (0, 1)]
    assert _shape(db, ws.id) == _shape(db, ws_2.id)
    assert _shape(db, other.id) == _shape(db, other_2.id)
    shape = _shape(db, ws.id)
    assert ("c4", ("e@x.io", None, None, None, None), None, 1200) in shape["checkouts"]
    assert ("c-anon", ("f@x.io", None, holder, None, None), None, 1200) in shape["checkouts"]
    assert ("c3", ("c@x.io", None, None, "Cleopatra", None), None, 1200) in shape["checkouts"]


def test_requests_in_one_group_commit_fail_alone_and_share_message_ids(db: Database, make_workspace):
    """Requests queued together share one commit and one apply_many; one that cannot be applied (an
    unknown profile id) fails alone, and a messageId sent by two of them is applied once."""
    ws = make_workspace()

    async def run() -> list[Any]:
        await db.start()
        try:
            requests = [
                ingest.Request(ws.id, [msg(started(f"c{i}", f"p{i}@x.io"), f"m{i}")], NOW) for i in range(20)
            ]
            requests.append(ingest.Request(ws.id, [msg(started("c0", "p0@x.io"), "m0")], NOW))
            requests.append(ingest.Request(ws.id, [msg(started("bad", profile_id="sub_nobody"))], NOW))
            return await asyncio.gather(
                *(db.write_each(ingest.apply_many, r) for r in requests), return_exceptions=True
            )
        finally:
            await db.stop()

    results = asyncio.run(run())
    assert isinstance(results[-1], errors.InvalidInput)
    assert results[:20] == [ingest.Outcome(applied=1, replayed=0)] * 20
    assert results[20] == ingest.Outcome(applied=0, replayed=1)
    assert db.stats.largest_batch > 1 and db.stats.retried_batches >= 1
    shape = _shape(db, ws.id)
    assert len(shape["checkouts"]) == 20 and len(shape["people"]) == 20
    assert len(shape["messages"]) == 20
