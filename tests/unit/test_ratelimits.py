"""The request budget (core/ratelimits.py) on a frozen clock: windows, leases shared by several nodes,
refunds, and the headers' numbers."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import pytest

from cartback.api import ratelimits as middleware
from cartback.core import ratelimits
from cartback.testing import FrozenClock

START = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)  # on a minute boundary


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def take(limiter: ratelimits.Limiter, n: int, bucket: str = "b") -> list[ratelimits.Decision]:
    return [await limiter.acquire(bucket) for _ in range(n)]


def test_ratelimits_burst_denies_past_the_limit_until_the_next_second():
    clock = FrozenClock(START)
    limiter = ratelimits.Limiter(ratelimits.Policy(burst=5, steady=0), ratelimits.MemoryCounter(), clock)

    async def scenario() -> None:
        first = await take(limiter, 5)
        assert all(d.allowed for d in first)
        assert [d.remaining for d in first] == [4, 3, 2, 1, 0]
        assert {(d.limit, d.window, d.reset) for d in first} == {(5, 1, 1)}
        denied = await limiter.acquire("b")
        assert (denied.allowed, denied.limit, denied.remaining, denied.retry_after) == (False, 5, 0, 1)
        clock.advance(seconds=1)
        assert (await limiter.acquire("b")).allowed

    run(scenario())


def test_ratelimits_steady_minute_limit_answers_the_seconds_left_in_the_minute():
    clock = FrozenClock(START)
    limiter = ratelimits.Limiter(ratelimits.Policy(burst=100, steady=3), ratelimits.MemoryCounter(), clock)

    async def scenario() -> None:
        ok = await take(limiter, 3)
        assert all(d.allowed for d in ok)
        # Past two-thirds of the minute budget the minute window is the one closest to running out.
        assert (ok[-1].limit, ok[-1].window, ok[-1].remaining, ok[-1].reset) == (3, 60, 0, 60)
        clock.advance(seconds=20.5)
        denied = await limiter.acquire("b")
        assert not denied.allowed
        assert (denied.limit, denied.window, denied.retry_after) == (3, 60, 40)
        clock.advance(seconds=39.5)
        assert (await limiter.acquire("b")).allowed

    run(scenario())


def test_ratelimits_buckets_are_independent():
    clock = FrozenClock(START)
    limiter = ratelimits.Limiter(ratelimits.Policy(burst=2, steady=0), ratelimits.MemoryCounter(), clock)

    async def scenario() -> None:
        assert [d.allowed for d in await take(limiter, 3, "key-a")] == [True, True, False]
        assert [d.allowed for d in await take(limiter, 2, "key-b")] == [True, True]

    run(scenario())


def test_ratelimits_two_nodes_leasing_from_one_counter_never_exceed_the_limit():
    clock = FrozenClock(START)
    shared = ratelimits.MemoryCounter()
    policy = ratelimits.Policy(burst=50, steady=0)
    nodes = [ratelimits.Limiter(policy, shared, clock, lease_size=4) for _ in range(2)]

    async def scenario() -> None:
        allowed = 0
        for i in range(200):
            allowed += (await nodes[i % 2].acquire("b")).allowed
        assert allowed == 50  # both keep asking, so no lease is left unspent
        # Leases, not requests, reached the counter: 50 / 4 per node plus the two refusals.
        assert sum(n.leases_taken for n in nodes) <= 50 // 4 + 4

    run(scenario())


def test_ratelimits_denial_is_remembered_without_asking_the_counter_again():
    clock = FrozenClock(START)
    limiter = ratelimits.Limiter(ratelimits.Policy(burst=3, steady=0), ratelimits.MemoryCounter(), clock)

    async def scenario() -> None:
        await take(limiter, 4)
        asked = limiter.leases_taken
        assert not any(d.allowed for d in await take(limiter, 50))
        assert limiter.leases_taken == asked

    run(scenario())


def test_ratelimits_unspent_lease_goes_back_to_the_minute_budget():
    clock = FrozenClock(START)
    policy = ratelimits.Policy(burst=1000, steady=20)
    limiter = ratelimits.Limiter(policy, ratelimits.MemoryCounter(), clock, lease_size=8)

    async def scenario() -> None:
        assert (await limiter.acquire("b")).allowed  # leases 8, spends 1
        clock.advance(seconds=1)  # the 7 left over belong to a past second
        allowed = 1 + sum(d.allowed for d in await take(limiter, 40))
        assert allowed == 20  # without the refund it would be 13

    run(scenario())


def test_ratelimits_concurrent_requests_share_one_lease():
    clock = FrozenClock(START)

    class SlowCounter(ratelimits.MemoryCounter):
        calls = 0

        async def take(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            await asyncio.sleep(0.01)
            return await super().take(*args, **kwargs)

    counter = SlowCounter()
    limiter = ratelimits.Limiter(ratelimits.Policy(burst=1000, steady=0), counter, clock, lease_size=50)

    async def scenario() -> None:
        decisions = await asyncio.gather(*(limiter.acquire("b") for _ in range(40)))
        assert all(d.allowed for d in decisions)
        assert counter.calls == 1

    run(scenario())


def test_ratelimits_unreachable_counter_limits_per_node_instead_of_failing():
    clock = FrozenClock(START)

    class Down:
        async def take(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise ConnectionError("database down")

    limiter = ratelimits.Limiter(ratelimits.Policy(burst=4, steady=0), Down(), clock)

    async def scenario() -> None:
        assert [d.allowed for d in await take(limiter, 2)] == [True, True]

    run(scenario())


def test_ratelimits_policy_lease_size_and_header():
    assert ratelimits.Policy(350, 3500).lease_size() == 21
    assert ratelimits.Policy(5, 0).lease_size() == 1
    assert ratelimits.Policy(1000, 10).lease_size() == 1
    assert ratelimits.Policy(350, 3500).header() == "350;w=1, 3500;w=60"
    assert ratelimits.Policy(0, 60).header() == "60;w=60"
    assert not ratelimits.Policy(0, 0).enabled


def test_ratelimits_grant_treats_a_window_ahead_of_ours_as_current():
    policy = ratelimits.Policy(burst=10, steady=0)
    # Another node's clock is one second ahead and already used 8 of its second.
    got = ratelimits.grant((101, 8, 1, 8), 5, 100, 0, 0, policy)
    assert (got.granted, got.second, got.second_used) == (2, 101, 10)


def _basic(user: str, password: str = "") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Bearer cb_abc", ("cb_abc",)),
        (b"bearer   cb_abc ", ("cb_abc",)),
        (b"Klaviyo-API-Key cb_k", ("cb_k",)),
        (_basic("cb_seg"), ("cb_seg",)),
        (_basic("x", "cb_pw"), ("cb_pw", "x")),
        (b"Basic not-base64!", ()),
        (b"Bearer ", ()),
        (b"Token cb_abc", ()),
    ],
)
def test_ratelimits_credentials_read_every_surface_form(value: bytes, expected: tuple[str, ...]):
    headers = [(b"content-type", b"application/json"), (b"authorization", value)]
    assert middleware.credentials(headers) == expected


def test_ratelimits_surface_is_the_longest_prefix():
    assert middleware.surface_of("/api/v1/checkouts") == "/api/v1"
    assert middleware.surface_of("/api/events") == "/api"
    assert middleware.surface_of("/v1/batch") == "/v1"
    assert middleware.surface_of("/api") == "/api"
    assert middleware.surface_of("/apiary") is None
    assert middleware.surface_of("/healthz") is None
