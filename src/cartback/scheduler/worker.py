"""The worker loop: dispatch new events, claim due enrollments with a lease, advance each, sleep until the
earliest due time (at most `tick_seconds`) or until a commit wakes it.

Every piece of work is a write job on the group-commit writer, so in `serve` the worker and the API share
SQLite's single writer instead of fighting over it, and a batch of steps commits together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import timedelta

from cartback.core import automations
from cartback.core.clock import Clock
from cartback.store import timers
from cartback.store.db import Database, Tx

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        tick_seconds: float = 1.0,
        batch_size: int = 200,
        lease_seconds: float = 60.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.steps_run = 0
        self.events_dispatched = 0

    def wake(self) -> None:
        """Look for work now rather than at the next tick (called after commits that may add work)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        log.info("worker %s started", self.owner)
        try:
            while not self._stopping.is_set():
                try:
                    busy = await self.run_once()
                except Exception:
                    log.exception("worker iteration failed; retrying after a tick")
                    busy = False
                if busy:
                    continue
                await self._sleep()
        finally:
            # Give leases back so a restarted worker picks the work up at once, not at lease expiry.
            try:
                await self.db.write(lambda tx: timers.release(tx, self.owner), notify=False)
            except Exception:
                log.exception("could not release leases")
            log.info("worker %s stopped", self.owner)

    async def run_once(self) -> bool:
        """One round of work; True if there may be more right away."""
        dispatched = await self.dispatch_events()
        ran = await self.run_due_steps()
        return dispatched >= self.batch_size or ran >= self.batch_size

    async def dispatch_events(self) -> int:
        now = self.clock.now()
        count = await self.db.write(lambda tx: dispatch_batch(tx, now, self.batch_size), notify=False)
        self.events_dispatched += count
        return count

    async def run_due_steps(self) -> int:
        now = self.clock.now()
        claimed = await self.db.write(
            lambda tx: timers.claim_due(tx, self.owner, now, lease=self.lease, limit=self.batch_size),
            notify=False,
        )
        if not claimed:
            return 0
        results = await asyncio.gather(
            *(
                self.db.write(_advance_job(enrollment_id, self.owner, self.clock))
                for enrollment_id in claimed
            ),
            return_exceptions=True,
        )
        for enrollment_id, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("enrollment %s failed: %r", enrollment_id, result)
        self.steps_run += len(claimed)
        return len(claimed)

    async def _sleep(self) -> None:
        # Clear first: a wake that lands while we look up the next due time must not be lost.
        self._wake.clear()
        delay = self.tick_seconds
        nxt = await self.db.read(lambda tx: timers.next_due(tx, self.clock.now()))
        if nxt is not None:
            delay = max(0.0, min(delay, (nxt - self.clock.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)


def _advance_job(enrollment_id: str, owner: str, clock: Clock):  # type: ignore[no-untyped-def]
    def job(tx: Tx) -> str:
        return automations.advance(tx, enrollment_id, owner, clock.now())

    return job


def dispatch_batch(tx: Tx, now, limit: int) -> int:  # type: ignore[no-untyped-def]
    taken = timers.take_undispatched(tx, limit)
    for event in taken:
        savepoint = tx.begin_nested()
        try:
            automations.dispatch(tx, event, now)
            savepoint.commit()
        except Exception:
            # One event's failure must not hold up every later one; it is logged and skipped.
            savepoint.rollback()
            log.exception("dispatching event %s failed", event.id)
    timers.mark_dispatched(tx, [e.id for e in taken], now)
    return len(taken)
