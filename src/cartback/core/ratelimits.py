"""Request budgets per API key and surface: a burst per second and a steady rate per minute, both fixed
windows on the wall clock (so every node agrees where a window starts), both enforced.

The count of a window lives in a `Counter`. On SQLite served by one process that is `MemoryCounter`,
asked once per request, so the limit is exact. On PostgreSQL, and on SQLite served by several processes
(`serve --processes`), it is a row per bucket (store/ratelimits.py) that every API node shares; asking
it per request would cost a round trip (or a write transaction) each, so a node *leases* budget in
chunks: one `take` moves `chunk` requests from the shared count to the node, and the node spends them
from memory. Most requests therefore touch no database. The shared count never grants more than the
limit, so the nodes together never exceed it; the price is that budget leased by one node and not spent
before its second ends is lost to the others (at most `chunk - 1` per node and second; tokens left over
when a second ends are handed back to the minute's count with the node's next lease). docs/ratelimits.md
has the reasoning and the numbers.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

import anyio.to_thread

from cartback.core.clock import Clock
from cartback.store import ratelimits as store
from cartback.store.db import Database

log = logging.getLogger(__name__)

# Stands for "no limit" in the window arithmetic (a 0 setting); far above any real count.
UNLIMITED = 1 << 40
# Leases never take more than this share of a window's limit, so budget parked on idle nodes stays small.
_LEASE_SHARE_OF_BURST = 16
_LEASE_SHARE_OF_STEADY = 64


@dataclass(frozen=True)
class Policy:
    burst: int  # requests per second; 0: no per-second limit
    steady: int  # requests per minute; 0: no per-minute limit

    @property
    def enabled(self) -> bool:
        return self.burst > 0 or self.steady > 0

    @property
    def second_limit(self) -> int:
        return self.burst or UNLIMITED

    @property
    def minute_limit(self) -> int:
        return self.steady or UNLIMITED

    def lease_size(self) -> int:
        """How many requests one shared-counter lease asks for: a small share of the tighter window, and
        1 (exact) for small limits."""
        return max(
            1, min(self.second_limit // _LEASE_SHARE_OF_BURST, self.minute_limit // _LEASE_SHARE_OF_STEADY)
        )

    def header(self) -> str:
        """`RateLimit-Policy`, in the IETF draft's form: `350;w=1, 3500;w=60`."""
        parts = []
        if self.burst:
            parts.append(f"{self.burst};w=1")
        if self.steady:
            parts.append(f"{self.steady};w=60")
        return ", ".join(parts)


@dataclass(frozen=True)
class Grant:
    """What a counter answered: how many requests it granted, and the window counts after the grant."""

    granted: int
    second: int
    second_used: int
    minute: int
    minute_used: int


class Counter(Protocol):
    async def take(
        self,
        bucket: str,
        want: int,
        second: int,
        refund: int,
        refund_minute: int,
        policy: Policy,
    ) -> Grant:
        """Grant up to `want` requests in `second` (and its minute) without exceeding either window's
        limit; first give `refund` unspent requests back to minute `refund_minute` if that minute is still
        the stored one."""
        ...


def grant(
    stored: tuple[int, int, int, int] | None,
    want: int,
    second: int,
    refund: int,
    refund_minute: int,
    policy: Policy,
) -> Grant:
    """The arithmetic every counter does, on (second, second_used, minute, minute_used). A stored window
    ahead of ours (another node's clock is ahead) counts as the current one."""
    minute = second // 60
    if stored is None:
        stored = (second, 0, minute, 0)
    s, s_used, m, m_used = stored
    s_used = s_used if s >= second else 0
    m_used = max(0, m_used - (refund if m == refund_minute else 0)) if m >= minute else 0
    granted = max(0, min(want, policy.second_limit - s_used, policy.minute_limit - m_used))
    return Grant(granted, max(s, second), s_used + granted, max(m, minute), m_used + granted)


class MemoryCounter:
    """The counter of a lone process on SQLite."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, int, int, int]] = {}

    async def take(
        self, bucket: str, want: int, second: int, refund: int, refund_minute: int, policy: Policy
    ) -> Grant:
        result = grant(self._rows.get(bucket), want, second, refund, refund_minute, policy)
        if len(self._rows) > 100_000:
            self._rows.clear()
        self._rows[bucket] = (result.second, result.second_used, result.minute, result.minute_used)
        return result


class SharedCounter:
    """The counter every node shares: a row per bucket in the database (store/ratelimits.py)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def take(
        self, bucket: str, want: int, second: int, refund: int, refund_minute: int, policy: Policy
    ) -> Grant:
        row = await anyio.to_thread.run_sync(
            store.lease,
            self._db,
            bucket,
            want,
            second,
            refund,
            refund_minute,
            policy.second_limit,
            policy.minute_limit,
        )
        return Grant(*row)


def counter_for(db: Database, processes: int = 1) -> Counter:
    """Shared on PostgreSQL, where several API nodes may serve one key, and on a SQLite file that several
    processes of `serve --processes` serve; in memory for a lone process on SQLite."""
    shared = db.dialect == "postgresql" or processes > 1
    return SharedCounter(db) if shared else MemoryCounter()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int  # of the window closest to running out
    window: int  # that window's length in seconds: 1 or 60
    remaining: int
    reset: int  # whole seconds until that window starts again
    retry_after: int  # whole seconds to wait; 0 when allowed


@dataclass
class _Lease:
    second: int = -1
    minute: int = -1
    tokens: int = 0  # leased and not yet spent, valid during `second` only
    second_used: int = 0  # the shared counts as of the last lease (our unspent tokens included)
    minute_used: int = 0
    blocked_until: float = 0.0  # a lease got nothing: deny from memory until this time
    blocked_limit: int = 0
    blocked_window: int = 1
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Limiter:
    """Decides whether a request to `bucket` (surface + key) may go ahead."""

    def __init__(
        self, policy: Policy, counter: Counter, clock: Clock, *, lease_size: int | None = None
    ) -> None:
        self.policy = policy
        self.counter = counter
        self.clock = clock
        self.lease_size = lease_size or policy.lease_size()
        self._leases: dict[str, _Lease] = {}
        self.leases_taken = 0  # counter calls, for tests and the docs' arithmetic

    async def acquire(self, bucket: str) -> Decision:
        now = self.clock.now().timestamp()
        second = math.floor(now)
        lease = self._leases.get(bucket)
        if lease is None:
            if len(self._leases) > 100_000:
                self._leases.clear()
            lease = self._leases[bucket] = _Lease()
        if lease.tokens > 0 and lease.second == second:  # the hot path: no await, no database
            lease.tokens -= 1
            return self._allowed(lease, now)
        if now < lease.blocked_until:
            return self._denied(lease, now)
        async with lease.lock:
            # Someone may have leased (or learnt the budget is spent) while this request waited.
            if lease.tokens > 0 and lease.second == second:
                lease.tokens -= 1
                return self._allowed(lease, now)
            if now < lease.blocked_until:
                return self._denied(lease, now)
            await self._renew(bucket, lease, second)
        if lease.tokens > 0:
            lease.tokens -= 1
            return self._allowed(lease, now)
        return self._denied(lease, now)

    async def _renew(self, bucket: str, lease: _Lease, second: int) -> None:
        refund = lease.tokens if lease.tokens > 0 and lease.second != second else 0
        self.leases_taken += 1
        try:
            got = await self.counter.take(bucket, self.lease_size, second, refund, lease.minute, self.policy)
        except Exception:
            # The shared counter is unreachable: limit this node alone for the rest of this second rather
            # than refuse every request (the request itself will find out whether the database is down).
            log.warning("rate limit counter unavailable; limiting per node for this second", exc_info=True)
            fallback = min(self.lease_size, self.policy.second_limit, self.policy.minute_limit)
            got = Grant(fallback, second, fallback, second // 60, fallback)
        lease.second, lease.minute, lease.tokens = second, second // 60, got.granted
        lease.second_used, lease.minute_used = got.second_used, got.minute_used
        if got.granted == 0:
            until, limit, window = float(second + 1), self.policy.second_limit, 1
            if got.minute_used >= self.policy.minute_limit:
                until = float((max(got.minute, second // 60) + 1) * 60)
                limit, window = self.policy.minute_limit, 60
            elif got.second_used >= self.policy.second_limit:
                until = float(max(got.second, second) + 1)
            lease.blocked_until, lease.blocked_limit, lease.blocked_window = until, limit, window

    def _allowed(self, lease: _Lease, now: float) -> Decision:
        policy = self.policy
        # (remaining, limit, window, seconds to its reset) of the window closest to running out
        best: tuple[int, int, int, float] | None = None
        if policy.burst:
            left = max(0, policy.burst - lease.second_used + lease.tokens)
            best = (left, policy.burst, 1, lease.second + 1 - now)
        if policy.steady:
            left = max(0, policy.steady - lease.minute_used + lease.tokens)
            if best is None or left <= best[0]:
                best = (left, policy.steady, 60, (lease.minute + 1) * 60 - now)
        assert best is not None  # a Limiter exists only for an enabled policy
        return Decision(True, best[1], best[2], best[0], max(1, math.ceil(best[3])), 0)

    def _denied(self, lease: _Lease, now: float) -> Decision:
        wait = max(1, math.ceil(lease.blocked_until - now))
        return Decision(False, lease.blocked_limit, lease.blocked_window, 0, wait, wait)
