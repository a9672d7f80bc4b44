"""The worker loop: dispatch new events, claim due enrollments with a lease, advance each, run the other
registered duties (sending mail, webhooks), then sleep until the earliest due time (at most
`tick_seconds`) or until a commit wakes it.

Every piece of work is a write job on the group-commit writer, so in `serve` the worker and the API share
SQLite's single writer instead of fighting over it, and a batch of steps commits together. On PostgreSQL
a claimed batch of steps is spread over several connections, since each step is a few round trips.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread

from cartback import errors
from cartback import metrics as metrics_module
from cartback.core import automations, dispatch_reads, mail
from cartback.core.clock import Clock
from cartback.scheduler import duty
from cartback.store import leases, timers
from cartback.store.db import Database, Tx
from cartback.store.events import Event

log = logging.getLogger(__name__)

WAKE_COALESCE_SECONDS = 0.05

# Something else to do for every dispatched event, in the dispatcher's transaction (e.g. queue webhook
# deliveries). `cache` lives for one dispatch batch.
EventHook = Callable[[Tx, Event, datetime, dict[Any, Any]], None]
# A duty run every round (e.g. send due mail): scheduler/duty.py says what it may use of the worker.
Duty = duty.Duty


# At most this many batches of events in one dispatch on SQLite, however long the backlog: the dispatch
# is one transaction of the writer, which every request's commit waits behind.
_DISPATCH_GROWTH = 8


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        tick_seconds: float = 1.0,
        batch_size: int = 200,
        lease_seconds: float = 60.0,
        connections: int = 4,
        options: automations.Options = automations.DEFAULT_OPTIONS,
        metrics: metrics_module.Metrics | None = None,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.connections = connections
        self.options = options
        self.event_hooks: list[EventHook] = []
        self.duties: list[Duty] = []
        # Awaited once the loop has stopped and before the leases are given back (sends still in flight).
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self.metrics = metrics if metrics is not None else metrics_module.Metrics()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.steps_run = 0
        self.events_dispatched = 0
        # How many dispatchers the next round runs side by side (PostgreSQL): one while the last round
        # found less than a batch, all `connections` while there is a backlog.
        self._dispatchers = 1
        # How many events the next round dispatches (SQLite): a batch, doubled after each round that took
        # all it could, up to _DISPATCH_GROWTH batches. A round is several writes (dispatch, step claims,
        # each duty's claims), each waiting for a commit of the single writer: at a batch per round, the
        # dispatcher fell seconds behind an ingest at full speed (bench/ingest.py --rows with-sequence).
        self._dispatch_limit = batch_size

    def wake(self) -> None:
        """Look for work now rather than at the next tick (called after commits that may add work)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then stop (and give back every lease)."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Duties check this to start nothing new once a stop was asked for."""
        return self._stopping.is_set()

    async def stop_within(self, task: asyncio.Task[None], seconds: float) -> None:
        """Stop the worker running as `task`, waiting at most `seconds` for its round to finish; past that
        the round is cancelled. Either way its leases are given back, so another worker (or this one
        restarted) takes the work at once rather than at lease expiry."""
        self.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.0, seconds))
        except TimeoutError:
            log.warning("worker %s did not finish its round in %.1fs; cancelling it", self.owner, seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
            cancelled = False
            try:
                for wait in self.on_stop:
                    try:
                        await wait()
                    except Exception:
                        log.exception("stopping a duty failed")
            except asyncio.CancelledError:
                cancelled = True  # out of time: skip to giving the leases back
            # Give leases back so a restarted worker picks the work up at once, not at lease expiry.
            try:
                await self.db.write(lambda tx: release_all(tx, self.owner), notify=False)
            except Exception:
                log.exception("could not release leases")
            log.info("worker %s stopped", self.owner)
            if cancelled:
                raise asyncio.CancelledError

    async def run_once(self) -> bool:
        """One round of work; True if there may be more right away."""
        return max(await self.run_round()) >= self.batch_size

    async def run_round(self) -> list[int]:
        """Dispatch events, run due steps, then run each duty once: how much each of them did (a full
        batch means there may be more; all zero means there was nothing to do at the clock's time)."""
        done = [await self.dispatch_events(), await self.run_due_steps()]
        for each in self.duties:
            done.append(await each(self))
        return done

    async def dispatch_events(self) -> int:
        now = self.clock.now()

        def job(tx: Tx, share: int = timers.DISPATCH_PARTITIONS) -> tuple[int, collections.Counter[str]]:
            # A fresh tally per run: the writer may run a job twice, and only the committed run counts.
            names: collections.Counter[str] = collections.Counter()
            return dispatch_batch(tx, now, limit, self.event_hooks, names, share=share), names

        limit = self.batch_size

        if self.db.dialect == "postgresql":
            # Dispatchers on connections of their own, beside the writer. Several side by side while a
            # backlog lasts, each on its own share of the subscriber partitions (store/timers.py), so that
            # events of different subscribers are dispatched in parallel and each subscriber's in order;
            # one otherwise: a round woken by a few commits then costs one transaction, not `connections`
            # (each a few round trips and a thread's wakeup, which a busy machine makes wait for a core).
            dispatchers = self._dispatchers
            share = max(1, timers.DISPATCH_PARTITIONS // dispatchers)
            done = await asyncio.gather(
                *(
                    anyio.to_thread.run_sync(self.db.run_jobs_sync, [lambda tx: job(tx, share)])
                    for _ in range(dispatchers)
                )
            )
            count, names = 0, collections.Counter[str]()
            for [(ok, value)] in done:
                if ok:
                    count += value[0]
                    names.update(value[1])
                else:
                    log.error("dispatching events failed: %r", value)
            backlog = any(ok and value[0] >= self.batch_size for [(ok, value)] in done)
            self._dispatchers = max(1, self.connections) if backlog else 1
        else:
            limit = self._dispatch_limit
            count, names = await self.db.write(job, notify=False)
            full = count >= limit
            self._dispatch_limit = (
                min(limit * 2, self.batch_size * _DISPATCH_GROWTH) if full else self.batch_size
            )
        self.events_dispatched += count
        if names:
            self.metrics.events_dispatched(names)
        return count

    async def run_due_steps(self) -> int:
        now = self.clock.now()
        if not await duty.any_due(self, leases.ENROLLMENTS, now):
            return 0

        def claim(tx: Tx) -> tuple[list[str], list[datetime]]:
            ids = timers.claim_due(tx, self.owner, now, lease=self.lease, limit=self.batch_size)
            return ids, timers.due_times(tx, ids)

        claimed, due = await self.db.write(claim, notify=False)
        if not claimed:
            return 0
        self.metrics.steps_claimed((now - at).total_seconds() for at in due)
        # Their emails rendered first, outside the write: a heavy template would hold the writer (on
        # SQLite, every workspace's commits) for as long as it renders.
        drafts = await self.db.read(
            lambda tx: automations.compose_ahead(tx, claimed, self.owner, self.options)
        )
        failures: list[tuple[str, Any]] = []
        if self.db.dialect == "postgresql" and self.connections > 1:
            # A step is a handful of round trips; on PostgreSQL several connections overlap them.
            chunks = [c for c in (claimed[i :: self.connections] for i in range(self.connections)) if c]
            done = await asyncio.gather(*(self._advance_chunk_pg(chunk, drafts) for chunk in chunks))
            for outcome in done:
                failures += outcome
        else:
            failures = await self._advance_chunk(claimed, drafts)
        for enrollment_id, error in failures:
            log.error("enrollment %s failed: %r", enrollment_id, error)
            await self._record_failure(enrollment_id, error)
        self.steps_run += len(claimed)
        return len(claimed)

    async def _record_failure(self, enrollment_id: str, error: Any) -> None:
        """Keep the reason of a step that failed alone and retry it with backoff (automations.record_failure);
        if even that write fails, the lease expires and the step is claimed again."""
        text = str(error) or type(error).__name__
        try:
            await self.db.write(
                lambda tx: automations.record_failure(
                    tx, enrollment_id, self.owner, self.clock.now(), text[:1000]
                ),
                notify=False,
            )
        except Exception:
            log.exception("recording the failure of enrollment %s failed", enrollment_id)

    async def _advance_chunk(self, claimed: list[str], drafts: mail.Drafts) -> list[tuple[str, Any]]:
        """Run claimed enrollments as one set-wise job on the writer; if any of them fails, again one job
        each, so that one failure holds up no other. Returns the failures. An enrollment whose lease was
        lost (another worker took it over after this one's lease expired) is dropped quietly and the rest
        of the batch runs again set-wise without it: a race, not a failure."""
        batch = list(claimed)
        while batch:
            try:
                await self.db.write(_advance_batch_job(batch, self.owner, self.clock, self.options, drafts))
                return []
            except errors.LeaseLost as lost:
                if lost.item_id not in batch:
                    break
                batch = _drop_lost(batch, lost)
            except Exception as exc:
                # Which step failed, and why, is logged below when it fails again alone.
                log.warning("a batch of %d steps failed (%r); running them one by one", len(batch), exc)
                break
        results = await asyncio.gather(
            *(self.db.write(_advance_job(e, self.owner, self.clock, self.options, drafts)) for e in batch),
            return_exceptions=True,
        )
        return _failures(batch, [(not isinstance(r, BaseException), r) for r in results])

    async def _advance_chunk_pg(self, chunk: list[str], drafts: mail.Drafts) -> list[tuple[str, Any]]:
        """The same on a connection of its own beside the writer (PostgreSQL)."""
        batch = list(chunk)
        while batch:
            job = _advance_batch_job(batch, self.owner, self.clock, self.options, drafts)
            [(ok, value)] = await anyio.to_thread.run_sync(self.db.run_jobs_sync, [job])
            if ok:
                return []
            if not isinstance(value, errors.LeaseLost) or value.item_id not in batch:
                break
            batch = _drop_lost(batch, value)
        outcomes = await anyio.to_thread.run_sync(
            self.db.run_jobs_sync,
            [_advance_job(e, self.owner, self.clock, self.options, drafts) for e in batch],
        )
        return _failures(batch, outcomes)

    async def _sleep(self) -> None:
        # Clear first: a wake that lands while we look up the next due time must not be lost.
        self._wake.clear()
        if self._stopping.is_set():
            return  # a stop asked during the round: its wake was just cleared, so no tick's wait
        delay = self.tick_seconds
        nxt = await self.db.read(lambda tx: timers.next_due(tx, self.clock.now()))
        if nxt is not None:
            delay = max(0.0, min(delay, (nxt - self.clock.now()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)
            if self._stopping.is_set():
                return
            # Woken by an ingest commit: let the commits of the next few milliseconds join this round,
            # so a burst of requests costs one dispatch, not one each.
            await asyncio.sleep(min(WAKE_COALESCE_SECONDS, self.tick_seconds))


def _drop_lost(batch: list[str], lost: errors.LeaseLost) -> list[str]:
    log.info("enrollment %s was taken over by another worker; dropped from this batch", lost.item_id)
    return [e for e in batch if e != lost.item_id]


def _failures(batch: list[str], outcomes: list[tuple[bool, Any]]) -> list[tuple[str, Any]]:
    """The enrollments that failed alone, with their errors; a lost lease is no failure."""
    return [
        (e, value)
        for e, (ok, value) in zip(batch, outcomes, strict=True)
        if not ok and not isinstance(value, errors.LeaseLost)
    ]


def _advance_job(  # type: ignore[no-untyped-def]
    enrollment_id: str, owner: str, clock: Clock, options: automations.Options, drafts: mail.Drafts
):
    def job(tx: Tx) -> str:
        return automations.advance(tx, enrollment_id, owner, clock.now(), options, drafts=drafts)

    return job


def _advance_batch_job(  # type: ignore[no-untyped-def]
    enrollment_ids: list[str], owner: str, clock: Clock, options: automations.Options, drafts: mail.Drafts
):
    def job(tx: Tx) -> list[str]:
        return automations.advance_batch(tx, enrollment_ids, owner, clock.now(), options, drafts)

    return job


def release_all(tx: Tx, owner: str) -> None:
    """Give back `owner`'s leases on enrollments, messages and webhook deliveries."""
    for kind in leases.KINDS:
        leases.release(tx, kind, owner)


def dispatch_batch(
    tx: Tx,
    now: datetime,
    limit: int,
    hooks: list[EventHook] | None = None,
    names: collections.Counter[str] | None = None,
    *,
    share: int = timers.DISPATCH_PARTITIONS,
) -> int:
    """Dispatch up to `limit` undispatched events, oldest first, in one transaction (on PostgreSQL from at
    most `share` subscriber partitions). `names` counts them by event name.

    The batch runs set-wise under one savepoint (core/dispatch_reads.py). If anything in it fails, that
    savepoint is rolled back and the events run again one savepoint each, as they would alone, so that one
    event's failure holds up no other: it is logged and skipped."""
    taken = timers.take_undispatched(tx, limit, share=share)
    if names is not None:
        names.update(e.name for e in taken)
    triggered: dispatch_reads.Triggered = {}
    cache: dict[Any, Any] = {}
    alone: list[Event] = []
    try:
        with tx.begin_nested():
            _dispatch_set(tx, taken, now, hooks or [], triggered, cache)
    except Exception as exc:
        # Which event failed, and why, is logged below when it fails again alone.
        log.warning("a batch of %d events failed (%r); dispatching them one by one", len(taken), exc)
        alone = taken
    for event in alone:
        try:
            with tx.begin_nested():
                _dispatch_set(tx, [event], now, hooks or [], triggered, cache)
        except Exception:
            log.exception("dispatching event %s failed", event.id)
    timers.mark_dispatched(tx, [e.id for e in taken], now)
    return len(taken)


def _dispatch_set(
    tx: Tx,
    batch: list[Event],
    now: datetime,
    hooks: list[EventHook],
    triggered: dispatch_reads.Triggered,
    cache: dict[Any, Any],
) -> None:
    """Dispatch these events in order, reading what they concern once for all of them."""
    reads = dispatch_reads.DispatchReads(tx, batch, triggered)
    for event in batch:
        if reads.concerns(tx, event):
            automations.dispatch(tx, event, now, reads)
        for hook in hooks:
            hook(tx, event, now, cache)
    reads.flush(tx)
