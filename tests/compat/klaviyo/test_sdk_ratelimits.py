"""The official `klaviyo-api` SDK against a `cartback serve` limited to 3 requests/s per key: one attempt
meets ApiException 429 with an integer Retry-After (the SDK raises on an HTTP-date); with its retries it
waits as told and every create_event succeeds; another key is unaffected."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException


def event(n: int, prefix: str) -> dict:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"n": n},
                "time": datetime.now(UTC).isoformat(),
                "unique_id": f"{prefix}-{n}",
                "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed Product"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "limited@example.com"}}},
            },
        }
    }


@pytest.fixture
def limited(start_server, db_url):  # type: ignore[no-untyped-def]
    return start_server(db_url, env={"CARTBACK_RATE_LIMIT_BURST": "3", "CARTBACK_RATE_LIMIT_STEADY": "0"})


def test_sdk_one_attempt_sees_429_with_integer_retry_after(limited, make_workspace):
    klaviyo = KlaviyoAPI(api_key=make_workspace().key, test_host=limited.url, max_retries=1, max_delay=1)
    with pytest.raises(ApiException) as info:
        for n in range(50):
            klaviyo.Events.create_event(event(n, "once"))
    assert info.value.status == 429
    headers = info.value.headers
    assert headers["Retry-After"] == "1"
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("3", "0")
    assert '"code":"throttled"' in info.value.body.replace(" ", "")


def test_sdk_with_retries_backs_off_and_every_event_is_accepted(limited, make_workspace, db):
    tenant = make_workspace()
    klaviyo = KlaviyoAPI(api_key=tenant.key, test_host=limited.url, max_retries=3, max_delay=2)
    started = time.monotonic()
    for n in range(8):
        assert klaviyo.Events.create_event(event(n, "retry")) is None  # 202
    # 8 events at 3 per second cannot fit in one second: the SDK met 429s and waited them out.
    assert time.monotonic() - started >= 1.0

    import sqlalchemy as sa

    from cartback.store.tables import events

    stored = db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.workspace_id == tenant.id, events.c.source == "klaviyo")
        ).scalar_one()
    )
    assert stored == 8


def test_sdk_another_key_is_unaffected(limited, make_workspace):
    busy = KlaviyoAPI(api_key=make_workspace().key, test_host=limited.url, max_retries=1, max_delay=1)
    with pytest.raises(ApiException, match="429"):
        for n in range(50):
            busy.Events.create_event(event(n, "busy"))
    calm = KlaviyoAPI(api_key=make_workspace().key, test_host=limited.url, max_retries=1, max_delay=1)
    assert calm.Events.create_event(event(0, "calm")) is None
