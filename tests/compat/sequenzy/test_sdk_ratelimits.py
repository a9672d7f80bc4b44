"""The official `sequenzy` SDK against a `cartback serve` with a small rate limit (5 requests/s per key):
without retries it sees a 429 ApiError (the SDK declares no 429 for checkouts) with an integer
Retry-After; with retries it backs off and succeeds; another key is unaffected."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sequenzy import Sequenzy
from sequenzy.core.api_error import ApiError
from sequenzy.types import CommerceCustomer

CUSTOMER = CommerceCustomer(email="limited@example.com")


@pytest.fixture
def limited(start_server, db_url):  # type: ignore[no-untyped-def]
    env = {"CARTBACK_RATE_LIMIT_BURST": "5", "CARTBACK_RATE_LIMIT_STEADY": "0"}
    return start_server(db_url, env=env)


@pytest.fixture
def sdk(limited) -> Iterator[Callable[..., tuple[Sequenzy, list[httpx.Response]]]]:  # type: ignore[no-untyped-def]
    """An SDK client for a key, and the raw responses it received (retries included)."""
    clients: list[httpx.Client] = []

    def make(key: str, max_retries: int) -> tuple[Sequenzy, list[httpx.Response]]:
        seen: list[httpx.Response] = []
        http = httpx.Client(timeout=10, event_hooks={"response": [seen.append]})
        clients.append(http)
        return Sequenzy(api_key=key, base_url=limited.api, max_retries=max_retries, httpx_client=http), seen

    yield make
    for http in clients:
        http.close()


def test_sdk_rate_limited_without_retries_raises_with_retry_after(sdk, make_workspace):
    client, seen = sdk(make_workspace().key, 0)
    with pytest.raises(ApiError) as info:
        for n in range(50):
            client.orders.track_checkout_started(checkout_id=f"chk_rl_{n}", customer=CUSTOMER)
    assert info.value.status_code == 429
    assert info.value.body["success"] is False and info.value.body["code"] == "rate_limited"
    headers = info.value.headers
    assert headers["retry-after"] == "1"
    assert headers["ratelimit-limit"] == "5" and headers["ratelimit-remaining"] == "0"
    assert headers["ratelimit-reset"].isdigit()
    assert all("ratelimit-remaining" in r.headers for r in seen)


def test_sdk_with_retries_backs_off_and_every_call_succeeds(sdk, make_workspace):
    tenant = make_workspace()
    client, seen = sdk(tenant.key, 4)
    started = time.monotonic()
    for n in range(14):
        result = client.orders.track_checkout_started(checkout_id=f"chk_retry_{n}", customer=CUSTOMER)
        assert result.success is True and result.checkout_id == f"chk_retry_{n}"
    # 14 calls at 5 per second cannot all fit in one second: the SDK met 429s and waited them out.
    refused = [r for r in seen if r.status_code == 429]
    assert refused, "the limit never triggered"
    assert all(r.headers["retry-after"].isdigit() for r in refused)
    assert [r.status_code for r in seen].count(200) == 14
    assert time.monotonic() - started >= 1.0


def test_sdk_another_key_is_unaffected_while_one_is_limited(sdk, make_workspace):
    busy, _ = sdk(make_workspace().key, 0)
    with pytest.raises(ApiError, match="429"):
        for n in range(50):
            busy.orders.track_checkout_started(checkout_id=f"chk_busy_{n}", customer=CUSTOMER)
    calm, seen = sdk(make_workspace().key, 0)
    assert calm.orders.track_checkout_started(checkout_id="chk_calm", customer=CUSTOMER).success is True
    assert seen[-1].headers["ratelimit-remaining"] == "4"
