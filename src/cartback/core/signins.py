"""What a sign-in may cost: failed attempts counted per address and per client address, and password
hashes bounded in how many run at once.

Failures are counted with the API rate limits' counter (core/ratelimits.py): in memory on SQLite, a row
per bucket shared by every node on PostgreSQL. A bucket counts failures in fixed windows of `window`
seconds (the counter's "minute" is one window; its "second" a sixtieth of one, unlimited here). Once a
bucket holds `limit` failures, every attempt on it is refused until its window ends, the right password
included, without hashing anything: a guesser learns nothing and costs nothing. An attempt is counted
before its password is checked and taken back when it succeeds, so successful sign-ins are not counted
(people who share an office's address are not locked out by signing in) and attempts made all at once
cannot overrun the limit.

Each hash takes 32 MiB and about 0.1 s of a core (core/passwords.py), so a flood of attempts from many
addresses would otherwise take as much memory and CPU as it has requests in flight. `HashGate` lets at
most `slots` hashes run at once; a request waits at most `wait` seconds for a slot and is then refused as
busy (503), so a flood costs at most `slots` x 32 MiB and `slots` cores, and waiting requests hold no
more than their parsed form. The hashes run in processes of their own at the lowest CPU priority
(cartback/processes.py), so on a busy machine the flood slows down rather than every other workspace's
requests, and the server's own memory and caches are not the ones the hashes sweep.

A low priority is not enough on its own: scrypt sweeps 32 MiB, more than a core's cache, and on a small
(virtual) machine a hash running beside a request slows that request down whatever their priorities
(measured in bench/README.md, "hostile.py"). So the gate also spends a budget, `HashBudget`: at most
`per_second` hashes a second on average after a burst of `burst`. A sign-in that would have to wait past
`wait` for its share is refused as busy without hashing, counting or looking anything up, once that wait
is over (a client that retries at once then cannot turn cheap refusals into a flood of requests); a flood
from any number of addresses takes a bounded share of the machine, and people signing in at ordinary
rates never notice it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TypeVar

import anyio

from cartback import errors, processes
from cartback.core import ratelimits
from cartback.core.clock import Clock

T = TypeVar("T")


class Locked(errors.RateLimited):
    """Too many failed sign-ins; try again later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(errors.Unavailable):
    """Too many sign-ins at once; try again in a moment."""

    retry_after = 1


@dataclass(frozen=True)
class Limits:
    per_address: int  # failures per window and address; 0: not limited
    per_client: int  # failures per window and client address; 0: not limited
    window: int  # seconds


class Attempts:
    """Failed sign-ins per address and per client, and whether either has run out."""

    def __init__(self, limits: Limits, counter: ratelimits.Counter, clock: Clock) -> None:
        self.limits = limits
        self.counter = counter
        self.clock = clock

    def _buckets(self, address: str, client: str) -> list[tuple[str, int]]:
        buckets = []
        if self.limits.per_address:
            # Hashed: the shared counter's table should not hold the addresses people typed.
            key = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]
            buckets.append((f"signin address {key}", self.limits.per_address))
        if self.limits.per_client:
            buckets.append((f"signin client {client}", self.limits.per_client))
        return buckets

    def _tick(self) -> tuple[int, float]:
        """The counter's "second" for now (a sixtieth of a window), and the time in windows."""
        windows = self.clock.now().timestamp() / self.limits.window
        return math.floor(windows * 60), windows

    async def begin(self, address: str, client: str) -> None:
        """Count this attempt as failed until it succeeds; raise Locked, counting nothing, when this
        address or this client has used up its failures for the window. Counting before the password is
        checked makes the check and the count one step: many attempts at once cannot all slip past a
        limit that none of them has reached yet."""
        tick, windows = self._tick()
        counted: list[tuple[str, int]] = []
        for bucket, limit in self._buckets(address, client):
            policy = ratelimits.Policy(burst=0, steady=limit)
            got = await self.counter.take(bucket, 1, tick, 0, -1, policy)
            if got.granted == 0:
                await self._refund(counted, tick)
                wait = max(1, math.ceil((math.floor(windows) + 1 - windows) * self.limits.window))
                what = "this address" if bucket.startswith("signin address") else "this network address"
                raise Locked(
                    f"Too many failed sign-ins for {what}. Try again in {_duration(wait)}.", retry_after=wait
                )
            counted.append((bucket, limit))

    async def take_back(self, address: str, client: str) -> None:
        """Take back what `begin` counted: a successful sign-in, or one refused as busy, is no failure."""
        tick, _ = self._tick()
        await self._refund(self._buckets(address, client), tick)

    async def _refund(self, buckets: list[tuple[str, int]], tick: int) -> None:
        for bucket, limit in buckets:
            policy = ratelimits.Policy(burst=0, steady=limit)
            await self.counter.take(bucket, 0, tick, 1, tick // 60, policy)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


class HashBudget:
    """Hashes allowed at `per_second` on average, `burst` of them at once after a quiet spell (the generic
    cell rate algorithm: one "next free" time, no timers). 0 per second: no budget."""

    def __init__(
        self, per_second: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 1 / per_second if per_second > 0 else 0.0
        self.burst = max(1, burst)
        self.monotonic = monotonic
        self._next = -math.inf  # when the budget is back to full

    def reserve(self, wait: float) -> float | None:
        """Seconds until this hash may start, its share now taken; None, taking nothing, when that is
        longer than `wait`."""
        if not self.interval:
            return 0.0
        now = self.monotonic()
        full_at = max(self._next, now)
        delay = max(0.0, full_at - (self.burst - 1) * self.interval - now)
        if delay > wait:
            return None
        self._next = full_at + self.interval
        return delay

    def give_back(self) -> None:
        """Undo one reservation whose hash will not run (later ones then wait a little longer than they
        need to, never less)."""
        self._next -= self.interval


# Hashes a budget lets run at once after a quiet spell: a few people signing in together are not refused.
HASH_BURST = 5

# Every HashGate of the process shares these (tests build many apps); each gate bounds its own use.
HASHES = processes.Pool("password hashes", niceness=19)


class HashGate:
    """At most `slots` password hashes at once and no more than `budget` allows, in processes of their own
    at the lowest CPU priority; `running`, `peak` and `refused` are exported as metrics."""

    def __init__(self, slots: int, wait: float, budget: HashBudget | None = None) -> None:
        self.slots = slots
        self.wait = wait
        self.budget = budget or HashBudget(0, 1)
        self._limiter = anyio.CapacityLimiter(slots)
        HASHES.resize(max(HASHES.size, slots))
        self.running = 0
        self.peak = 0
        self.refused = 0

    async def admit(self) -> float:
        """Take a hash's share of the budget: the seconds until it may start. When the budget has no share
        for it within `wait`, raise Busy once that wait is over, having touched nothing else; a sign-in
        asks this first, so a flood's refused attempts cost no counting and no lookup."""
        delay = self.budget.reserve(self.wait)
        if delay is None:
            # Refused, but only once the wait is over, as when no slot frees: a flood's clients that
            # retry at once would otherwise turn cheap refusals into a flood of requests.
            await anyio.sleep(self.wait)
            self.refused += 1
            raise Busy("Too many sign-ins at once. Try again in a moment.")
        return delay

    def give_back(self) -> None:
        """An admitted hash that will not run after all (the attempt was refused as locked)."""
        self.budget.give_back()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` (picklable) in a hash process once the budget and a slot allow; Busy if they do not
        within `wait` seconds, or if the process died."""
        return await self.run_admitted(await self.admit(), fn, *args)

    async def run_admitted(self, delay: float, fn: Callable[..., T], *args: object) -> T:
        """`run` for a hash `admit` let start in `delay` seconds."""
        acquired = False
        with anyio.move_on_after(self.wait):
            await anyio.sleep(delay)
            await self._limiter.acquire()
            acquired = True
        if not acquired:
            self.refused += 1
            raise Busy("Too many sign-ins at once. Try again in a moment.")
        try:
            self.running += 1
            self.peak = max(self.peak, self.running)
            # Shielded: a client that disconnects must not free the slot while its hash still runs.
            with anyio.CancelScope(shield=True):
                result = await HASHES.run_async(fn, *args)
            return result
        except BrokenProcessPool:
            raise Busy("Too many sign-ins at once. Try again in a moment.") from None
        finally:
            self.running -= 1
            self._limiter.release()


@dataclass(frozen=True)
class Guard:
    attempts: Attempts
    gate: HashGate
