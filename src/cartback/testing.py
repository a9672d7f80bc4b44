"""Helpers shipped for tests (ours and yours): drive the scheduler by hand with a frozen clock."""

from __future__ import annotations

from datetime import timedelta

from cartback.core import automations
from cartback.core.clock import Clock, FrozenClock
from cartback.delivery.transport import Result
from cartback.scheduler import worker
from cartback.store import timers
from cartback.store.db import Database, Tx

__all__ = ["FrozenClock", "MemoryTransport", "run_until_idle"]


def run_until_idle(
    db: Database,
    clock: Clock,
    *,
    owner: str = "test-worker",
    rounds: int = 100,
    hooks: list[worker.EventHook] | None = None,
) -> int:
    """Dispatch every pending event (running `hooks` on each, as a worker runs its event hooks) and run
    every step due at `clock.now()`, synchronously, until nothing is left to do now. Returns the number of
    steps run."""

    def dispatch(tx: Tx) -> int:
        return worker.dispatch_batch(tx, clock.now(), 500, hooks)

    def claim(tx: Tx) -> list[str]:
        return timers.claim_due(tx, owner, clock.now(), lease=timedelta(minutes=5), limit=500)

    steps = 0
    for _ in range(rounds):
        dispatched = db.write_sync(dispatch)
        claimed = db.write_sync(claim)
        if claimed:
            # As the worker runs them: the claimed batch set-wise in one transaction, and one by one
            # only if that fails.
            try:

                def advance_all(tx: Tx, c: list[str] = claimed) -> list[str]:
                    return automations.advance_batch(tx, c, owner, clock.now())

                db.write_sync(advance_all)
            except Exception:
                for enrollment_id in claimed:

                    def advance(tx: Tx, e: str = enrollment_id) -> str:
                        return automations.advance(tx, e, owner, clock.now())

                    db.write_sync(advance)
        steps += len(claimed)
        if not dispatched and not claimed:
            return steps
    raise RuntimeError("the scheduler did not become idle")


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
