"""Strict idempotency under concurrency, against real `cartback serve` processes: 50 identical requests
at once (what a retrying SDK or a double-firing webhook produces) store one record and all get the same ids,
also when two server processes on one database race each other for the same key."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import checkouts, events, orders, subscribers

N = 50

CHECKOUT = {
    "checkoutId": "chk-burst",
    "customer": {"email": "burst@example.com", "firstName": "Burst"},
    "totalCents": 8850,
    "currency": "USD",
    "items": [{"productId": "SKU-1", "title": "Protein Powder", "quantity": 1, "priceCents": 8850}],
}
EVENT = {
    "email": "burst@example.com",
    "event": "plan.upgraded",
    "eventId": "evt-burst",
    "properties": {"plan": "gold"},
}
ORDER = {
    "orderId": "ord-burst",
    "currency": "USD",
    "totalCents": 6450,
    "customer": {"email": "burst@example.com"},
    "properties": {"checkoutId": "chk-burst"},
}

pytestmark = pytest.mark.slow


async def _burst(urls: Sequence[str], key: str, body: object, n: int = N) -> list[httpx.Response]:
    """`n` copies of one POST, released together over `n` connections, spread round-robin over `urls`."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        go = asyncio.Event()

        async def one(url: str) -> httpx.Response:
            await go.wait()
            return await client.post(url, json=body)

        tasks = [asyncio.create_task(one(urls[i % len(urls)])) for i in range(n)]
        await asyncio.sleep(0.05)
        go.set()
        return await asyncio.gather(*tasks)


def burst(urls: Sequence[str], key: str, body: object, n: int = N) -> list[httpx.Response]:
    responses = asyncio.run(_burst(urls, key, body, n))
    for res in responses:
        assert res.status_code == 200, res.text
    return responses


def count(db: Database, table: sa.Table, workspace_id: str, *where: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.c.workspace_id == workspace_id, *where)
    return db.read_sync(lambda tx: tx.execute(query).scalar_one())


def assert_one_checkout(
    db: Database, workspace_id: str, responses: list[httpx.Response]
) -> dict[str, object]:
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies), bodies
    assert count(db, checkouts, workspace_id) == 1
    assert count(db, events, workspace_id, events.c.name == "ecommerce.checkout_started") == 1
    assert count(db, subscribers, workspace_id) == 1
    row = db.read_sync(
        lambda tx: tx.execute(sa.select(checkouts).where(checkouts.c.workspace_id == workspace_id)).one()
    )
    assert (row.checkout_id, row.subscriber_id, row.event_id) == (
        bodies[0]["checkoutId"],
        bodies[0]["subscriberId"],
        bodies[0]["eventId"],
    )
    return bodies[0]


def assert_one_order(db: Database, workspace_id: str, responses: list[httpx.Response]) -> None:
    bodies = [r.json() for r in responses]
    # Identical but for `duplicate`, which exactly one of them, the one that stored the order, answers false.
    assert [b["duplicate"] for b in bodies].count(False) == 1, bodies
    same = [{k: v for k, v in b.items() if k != "duplicate"} for b in bodies]
    assert all(b == same[0] for b in same), bodies
    assert len(same[0]["eventIds"]) == 1
    assert count(db, orders, workspace_id) == 1
    placed = count(db, events, workspace_id, events.c.name == "ecommerce.order_placed")
    assert placed == 1
    event_id = db.read_sync(
        lambda tx: tx.execute(
            sa.select(events.c.id).where(
                events.c.workspace_id == workspace_id, events.c.name == "ecommerce.order_placed"
            )
        ).scalar_one()
    )
    assert same[0]["eventIds"] == [event_id]


def test_concurrency_identical_checkouts_store_one_checkout(server, make_workspace, db):
    tenant = make_workspace()
    responses = burst([server.api + "/checkouts"], tenant.key, CHECKOUT)
    assert_one_checkout(db, tenant.id, responses)


def test_concurrency_identical_orders_store_one_order(server, make_workspace, db):
    tenant = make_workspace()
    responses = burst([server.api + "/orders"], tenant.key, ORDER)
    assert_one_order(db, tenant.id, responses)
    assert count(db, subscribers, tenant.id) == 1


def assert_one_event(db: Database, workspace_id: str, responses: list[httpx.Response]) -> None:
    bodies = [r.json() for r in responses]
    # Exactly one stored it; every replay answers duplicate with the original event's id.
    assert [b["duplicate"] for b in bodies].count(False) == 1, bodies
    assert len({b["event"]["id"] for b in bodies}) == 1, bodies
    assert len({b["subscriber"]["id"] for b in bodies}) == 1, bodies
    assert count(db, events, workspace_id, events.c.idempotency_key == f"event:{EVENT['eventId']}") == 1
    assert count(db, events, workspace_id, events.c.name == EVENT["event"]) == 1
    assert count(db, subscribers, workspace_id) == 1


def test_concurrency_identical_event_ids_store_one_event(server, make_workspace, db):
    tenant = make_workspace()
    responses = burst([server.api + "/subscribers/events"], tenant.key, EVENT)
    assert_one_event(db, tenant.id, responses)


@pytest.mark.parametrize(
    ("db_url", "topology"),
    [("postgres", "two servers"), ("postgres", "serve --processes 2"), ("sqlite", "serve --processes 2")],
    indirect=["db_url"],
)
def test_concurrency_two_processes_on_one_database_store_one_record(
    start_server, db_url, topology, make_workspace, db
):
    """Checkouts, orders and custom events, sent to two servers on one PostgreSQL database, or to one
    `serve --processes 2` (whose children each take about half of the burst's connections). Each process
    has its own group-commit writer, so the uniqueness race is decided by the database: on PostgreSQL the
    loser's job hits an IntegrityError and is re-run, finding the winner's row; on SQLite the second writer
    to take the write lock finds the first one's row. Several rounds, each on fresh keys, make it likely
    that the processes really collide."""
    if topology == "two servers":
        urls = [start_server(db_url).api, start_server(db_url).api]
    else:
        urls = [start_server(db_url, args=["--processes", "2"]).api]
    for round_ in range(4):
        tenant = make_workspace()
        checkout = {**CHECKOUT, "checkoutId": f"chk-race-{round_}"}
        bodies = burst([u + "/checkouts" for u in urls], tenant.key, checkout)
        stored = assert_one_checkout(db, tenant.id, bodies)
        assert stored["checkoutId"] == f"chk-race-{round_}"

        order = {**ORDER, "orderId": f"ord-race-{round_}", "customer": {"email": f"race{round_}@example.com"}}
        assert_one_order(db, tenant.id, burst([u + "/orders" for u in urls], tenant.key, order))
        assert count(db, subscribers, tenant.id) == 2

        event = {**EVENT, "email": f"race{round_}@example.com"}
        responses = burst([u + "/subscribers/events" for u in urls], tenant.key, event)
        bodies = [r.json() for r in responses]
        assert [b["duplicate"] for b in bodies].count(False) == 1, bodies
        assert len({b["event"]["id"] for b in bodies}) == 1, bodies
        assert count(db, events, tenant.id, events.c.idempotency_key == f"event:{EVENT['eventId']}") == 1
