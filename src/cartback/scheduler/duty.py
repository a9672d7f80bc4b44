"""What a duty (a piece of work the worker runs every round: sending mail, sending webhooks) needs of the
worker that runs it, and no more: the database, the clock, the lease it claims work with, how much to claim,
whether a stop was asked for, and where to count outcomes. `scheduler/worker.py` `Worker` is one; a test
may pass anything with these attributes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from cartback.core.clock import Clock
from cartback.store import leases
from cartback.store.db import Database


class Counters(Protocol):
    """The metrics hooks of duties (metrics.Metrics)."""

    def message_outcome(self, outcome: str) -> None: ...

    def webhook_outcome(self, ok: bool, status_code: int | None) -> None: ...


class Runner(Protocol):
    """The worker as a duty sees it."""

    @property
    def db(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def owner(self) -> str:
        """Who the duty's leases are taken for (store/leases.py)."""
        ...

    @property
    def lease(self) -> timedelta: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def stopping(self) -> bool:
        """Start nothing new once a stop was asked for; finish what is in flight."""
        ...

    @property
    def metrics(self) -> Counters: ...


# A duty run every round; returns how much it did, so the loop knows if it is busy.
Duty = Callable[[Runner], Awaitable[int]]


async def any_due(runner: Runner, kind: leases.Leased, now: datetime) -> bool:
    """Whether claiming work of `kind` would find any. Asked of a read connection before the claim, which
    is a write: on SQLite each write waits for the single writer's next commit, and a worker round that
    claimed steps, mail and webhooks with nothing due spent three such waits before it could dispatch the
    next events."""
    return await runner.db.read(lambda tx: leases.any_due(tx, kind, now))
