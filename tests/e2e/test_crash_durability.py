"""A 2xx means committed: stream 2,000 distinct events at a real `cartback serve` over several connections,
`kill -9` it mid-stream, and check that every acknowledged request is stored exactly once. Then restart it,
retry whatever had no 2xx (as the SDK does), replay everything, and check that all 2,000 are stored exactly
once and that the replays get the ids handed out before the crash."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

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


@dataclass
class Stream:
    """What the client saw: the body of every 2xx, by request number."""

    acked: dict[int, dict[str, object]] = field(default_factory=dict)
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
                    res = await client.post("/checkouts", json=checkout(i))
                except httpx.TransportError:
                    stream.failed.add(i)
                    continue
                if 200 <= res.status_code < 300:
                    stream.acked[i] = res.json()
                    stream.failed.discard(i)
                    if on_ack is not None:
                        on_ack()
                else:
                    stream.failed.add(i)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))


def stored(db: Database, workspace_id: str) -> tuple[dict[str, tuple[str, str]], int, int]:
    """checkoutId → (subscriber id, event id) as stored, plus the raw row counts of checkouts and of
    checkout_started events (which equal the number of distinct keys when nothing is duplicated)."""

    def read(tx: sa.Connection) -> tuple[dict[str, tuple[str, str]], int, int]:
        rows = tx.execute(
            sa.select(checkouts.c.checkout_id, checkouts.c.subscriber_id, checkouts.c.event_id).where(
                checkouts.c.workspace_id == workspace_id
            )
        ).all()
        keys = tx.execute(
            sa.select(events.c.idempotency_key, events.c.id).where(
                events.c.workspace_id == workspace_id, events.c.name == "ecommerce.checkout_started"
            )
        ).all()
        event_by_key = dict(keys)
        assert len(event_by_key) == len(keys)
        for row in rows:
            assert event_by_key[f"checkout:{row.checkout_id}"] == row.event_id
        return {r.checkout_id: (r.subscriber_id, r.event_id) for r in rows}, len(rows), len(keys)

    return db.read_sync(read)


def test_crash_every_acknowledged_event_survives_kill9_and_retries_store_once(server, make_workspace, db):
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
    by_id, rows, keyed = stored(db, tenant.id)
    assert rows == len(by_id) and keyed == rows
    for i, body in stream.acked.items():
        assert by_id.get(f"chk-{i:04d}") == (body["subscriberId"], body["eventId"]), i
    unacked_but_stored = {f"chk-{i:04d}" for i in stream.failed} & set(by_id)

    # Restart on the same database; the client retries what had no 2xx, then replays everything.
    server.start()
    before_crash = dict(stream.acked)
    asyncio.run(send_all(server.api, tenant.key, sorted(stream.failed), stream))
    assert not stream.failed
    assert len(stream.acked) == TOTAL

    by_id, rows, keyed = stored(db, tenant.id)
    assert len(by_id) == rows == keyed == TOTAL
    for i, body in stream.acked.items():
        assert body["checkoutId"] == f"chk-{i:04d}"
        assert by_id[f"chk-{i:04d}"] == (body["subscriberId"], body["eventId"]), i
    # A request committed just before the kill but never answered keeps its ids when retried.
    for key in unacked_but_stored:
        assert stream.acked[int(key.removeprefix("chk-"))]["eventId"] == by_id[key][1]

    # Replays of what was acknowledged before the crash get the very same answers.
    replays = Stream()
    asyncio.run(send_all(server.api, tenant.key, sorted(before_crash), replays))
    assert not replays.failed
    assert replays.acked == before_crash
    assert stored(db, tenant.id)[1:] == (TOTAL, TOTAL)
    print(f"acked before kill: {len(before_crash)}, committed but unanswered: {len(unacked_but_stored)}")
