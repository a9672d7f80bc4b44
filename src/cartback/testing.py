"""Helpers shipped for tests (ours and yours): drive the scheduler by hand with a frozen clock."""

from __future__ import annotations

import asyncio

from cartback.core.clock import Clock, FrozenClock
from cartback.delivery.transport import Result
from cartback.scheduler import worker as worker_module
from cartback.scheduler.worker import Worker
from cartback.store.db import Database

__all__ = ["FrozenClock", "MemoryTransport", "run_until_idle", "until_idle", "worker"]

# As many as the scheduler may do in one round (more than any test makes due at once).
BATCH = 500


def worker(
    db: Database,
    clock: Clock,
    *,
    owner: str = "test-worker",
    hooks: list[worker_module.EventHook] | None = None,
    connections: int = 1,
) -> Worker:
    """The scheduler's own `Worker` on `clock`, with a fixed owner name and a five-minute lease; add its
    duties (`worker.duties`) as `serve` does. One connection by default, so that a test sees the order
    SQLite's single writer gives."""
    w = Worker(db, clock, batch_size=BATCH, lease_seconds=300, connections=connections, owner=owner)
    w.event_hooks.extend(hooks or [])
    return w


async def until_idle(w: Worker, *, rounds: int = 100) -> int:
    """Run `w`'s rounds (`Worker.run_round`: dispatch events, run due steps, run each duty) until one finds
    nothing to do at the clock's time; return the number of steps run. A step that fails is handled as the
    worker handles it (logged, kept in the run's history, retried after a backoff). Needs the database's
    writer started."""
    steps = w.steps_run
    for _ in range(rounds):
        if not any(await w.run_round()):
            return w.steps_run - steps
    raise RuntimeError("the scheduler did not become idle")


def run_until_idle(
    db: Database,
    clock: Clock,
    *,
    owner: str = "test-worker",
    rounds: int = 100,
    hooks: list[worker_module.EventHook] | None = None,
) -> int:
    """From synchronous code: start the database's writer, run a `worker` (no duties) `until_idle`, and
    stop the writer again. Returns the number of steps run."""

    async def run() -> int:
        await db.start()
        try:
            return await until_idle(worker(db, clock, owner=owner, hooks=hooks), rounds=rounds)
        finally:
            await db.stop()

    return asyncio.run(run())


class MemoryTransport:
    """A mail transport that keeps what it is given. `replies` scripts the results of the next sends
    (a `Result` each, used in order); once they run out every send is `sent`."""

    name = "memory"
    atomic = False

    def __init__(self, replies: list[Result] | None = None, *, concurrency: int = 4) -> None:
        self.concurrency = concurrency
        self.replies = list(replies or [])
        # (envelope sender, recipients, MIME bytes) of every message that was accepted
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.calls = 0

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        self.calls += 1
        result = self.replies.pop(0) if self.replies else Result.sent(250, "OK")
        if result.status == "sent":
            self.sent.append((envelope_from, list(recipients), mime))
        return result

    async def close(self) -> None:
        return None
