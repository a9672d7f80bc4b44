"""The official `segment-analytics-python` client against a `cartback serve` limited to 2 requests/s per
key: its background consumer meets 429s with an integer Retry-After, pauses as told, and every call is
stored in the end, none reported as failed."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from segment.analytics import Client

from cartback.store.db import Database
from cartback.store.tables import events


def test_sdk_backs_off_on_429_and_delivers_everything(start_server, db_url, make_workspace):
    server = start_server(db_url, env={"CARTBACK_RATE_LIMIT_BURST": "2", "CARTBACK_RATE_LIMIT_STEADY": "0"})
    tenant = make_workspace()
    failures: list[Exception] = []
    # One message per request, so 8 calls are 8 requests against a budget of 2 per second.
    client = Client(
        tenant.key,
        host=server.url,
        upload_size=1,
        upload_interval=0.01,
        on_error=lambda e, b: failures.append(e),
    )
    ids = [str(uuid.uuid4()) for _ in range(8)]
    started = time.monotonic()
    try:
        for n, message_id in enumerate(ids):
            client.track("cust_rl", "Product Viewed", {"n": n}, message_id=message_id)
        client.flush()
    finally:
        client.shutdown()
    assert failures == []
    assert time.monotonic() - started >= 2.0  # 8 requests at 2 per second: it waited out the 429s

    db = Database(db_url)
    try:
        stored = db.read_sync(
            lambda tx: (
                tx.execute(
                    sa.select(events.c.idempotency_key).where(
                        events.c.workspace_id == tenant.id, events.c.source == "segment"
                    )
                )
                .scalars()
                .all()
            )
        )
    finally:
        db.close()
    assert len(stored) == 8
    assert all(any(i in key for key in stored) for i in ids)
