"""A 2xx means committed: stream 2,000 distinct requests (checkouts, and custom events keyed by eventId) at a
real `cartback serve` (one process, and two on one port) over several connections,
`kill -9` it mid-stream, and check that every acknowledged request is stored exactly once. Then restart it,
retry whatever had no 2xx (as the SDK does), replay everything, and check that all 2,000 are stored exactly
once and that the replays get the ids handed out before the crash."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import checkouts, events

TOTAL = 2000
KILL_AFTER = 800
CONNECTIONS = 8

pytestmark = pytest.mark.slow


def checkout(i: int) -> dict[str, object]:
    return {
        "checkoutId": f"chk-{i:04d}",
        # Fewer customers than checkouts, so concurrent requests also share subscriber rows.
        "customer": {"email": f"buyer{i % 97}@example.com"},
        "totalCents": 100 + i,
        "currency": "USD",
        "items": [{"productId": f"SKU-{i % 13}", "title": "Thing", "quantity": 1 + i % 3, "priceCents": 100}],
    }


def custom_event(i: int) -> dict[str, object]:
    return {
        "email": f"buyer{i % 97}@example.com",
        "event": "page.viewed",
        "eventId": f"evt-{i:04d}",
        "properties": {"n": i},
    }


def is_event(i: int) -> bool:
    """One request in four is a custom event, the others checkouts."""
    return i % 4 == 3


def key_of(i: int) -> str:
    """The idempotency key the store files request `i` under."""
    return f"event:evt-{i:04d}" if is_event(i) else f"checkout:chk-{i:04d}"


def ids_of(i: int, body: dict[str, Any]) -> tuple[str, str]:
    """(subscriber id, event id) from the answer to request `i`."""
    if is_event(i):
        return body["subscriber"]["id"], body["event"]["id"]
    assert body["checkoutId"] == f"chk-{i:04d}"
    return body["subscriberId"], body["eventId"]


@dataclass
class Stream:
    """What the client saw: the body of every 2xx, by request number."""

    acked: dict[int, tuple[str, str]] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)


async def send_all(api: str, key: str, todo: list[int], stream: Stream, on_ack=None) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in todo:
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30, limits=limits
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                try:
                    if is_event(i):
                        res = await client.post("/subscribers/events", json=custom_event(i))
                    else:
                        res = await client.post("/checkouts", json=checkout(i))
                except httpx.TransportError:
                    stream.failed.add(i)
                    continue
                if 200 <= res.status_code < 300:
                    stream.acked[i] = ids_of(i, res.json())
                    stream.failed.discard(i)
                    if on_ack is not None:
                        on_ack()
                else:
                    stream.failed.add(i)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))


def stored(db: Database, workspace_id: str) -> tuple[dict[str, tuple[str, str]], int]:
    """Idempotency key → (subscriber id, event id) of every request stored, and the number of event rows
    those keys came from (equal to the number of keys when nothing is duplicated). Each checkout row must
    agree with its ecommerce.checkout_started event, and there is one per checkout event."""

    def read(tx: sa.Connection) -> tuple[dict[str, tuple[str, str]], int]:
        logged = tx.execute(
            sa.select(events.c.idempotency_key, events.c.subscriber_id, events.c.id).where(
                events.c.workspace_id == workspace_id,
                events.c.name.in_(["ecommerce.checkout_started", "page.viewed"]),
            )
        ).all()
        by_key = {r.idempotency_key: (r.subscriber_id, r.id) for r in logged}
        carts = tx.execute(
            sa.select(checkouts.c.checkout_id, checkouts.c.subscriber_id, checkouts.c.event_id).where(
                checkouts.c.workspace_id == workspace_id
            )
        ).all()
        for cart in carts:
            assert by_key[f"checkout:{cart.checkout_id}"] == (cart.subscriber_id, cart.event_id)
        assert len(carts) == sum(k.startswith("checkout:") for k in by_key)
        return by_key, len(logged)

    return db.read_sync(read)


@pytest.mark.parametrize("processes", [1, 2])
def test_crash_every_acknowledged_event_survives_kill9_and_retries_store_once(
    start_server, db_url, processes, make_workspace, db
):
    # Two: `serve --processes 2`, whose children die with the parent the test kills.
    server = start_server(db_url, args=["--processes", str(processes)])
    tenant = make_workspace()
    stream = Stream()

    def on_ack() -> None:
        if len(stream.acked) == KILL_AFTER:
            server.kill9()

    asyncio.run(send_all(server.api, tenant.key, list(range(TOTAL)), stream, on_ack))
    assert server.proc is not None and server.proc.returncode == -9
    assert KILL_AFTER <= len(stream.acked) < TOTAL
    assert len(stream.acked) + len(stream.failed) == TOTAL

    # Right after the crash, before any restart: everything acknowledged is there, once, with its ids.
    by_key, rows = stored(db, tenant.id)
    assert rows == len(by_key)
    for i, ids in stream.acked.items():
        assert by_key.get(key_of(i)) == ids, i
    unacked_but_stored = {i for i in stream.failed if key_of(i) in by_key}

    # Restart on the same database; the client retries what had no 2xx, as the SDK would.
    server.start()
    before_crash = dict(stream.acked)
    asyncio.run(send_all(server.api, tenant.key, sorted(stream.failed), stream))
    assert not stream.failed
    assert len(stream.acked) == TOTAL

    by_key, rows = stored(db, tenant.id)
    assert len(by_key) == rows == TOTAL
    assert {key_of(i) for i in range(TOTAL)} == set(by_key)
    for i, ids in stream.acked.items():
        assert by_key[key_of(i)] == ids, i
    # A request committed just before the kill but never answered gets, on retry, the ids it was stored with.
    for i in unacked_but_stored:
        assert stream.acked[i] == by_key[key_of(i)]

    # Replays of what was acknowledged before the crash get the very same ids.
    replays = Stream()
    asyncio.run(send_all(server.api, tenant.key, sorted(before_crash), replays))
    assert not replays.failed
    assert replays.acked == before_crash
    assert stored(db, tenant.id)[1] == TOTAL
    print(f"acked before kill: {len(before_crash)}, committed but unanswered: {len(unacked_but_stored)}")
