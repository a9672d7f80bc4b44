"""How much rendering one workspace may ask of a server: CPU seconds a minute, per workspace and process.

Every render is bounded on its own (a quarter of a second of CPU: delivery/render.py), but a tenant can
ask for renders as fast as its API rate limit allows: two clients previewing the largest template the
limits accept keep the render processes busy all along, and on a small machine that slows every other
workspace's requests and puts their own renders in a queue behind it. So renders asked for while
handling a request (previews, transactional sends composed on the request path, the checks at save)
spend their workspace's budget: `seconds_per_minute` of render CPU, refilled evenly, at most ten
seconds' worth held (a burst of previews while editing, not a minute of a core's work at once). A
workspace whose budget is spent is refused (429 with Retry-After, in its API's envelope) until it has
refilled enough to render again; other workspaces are not touched. The worker's renders (sequence
steps, queued messages) are not refused: what they render was accepted already, and
its volume is bounded by the API rate limits on what starts it.

The budget is per process, in memory: it protects this machine's CPU, which is what it measures.

Which workspace pays is known to the edges, not to the render: each request runs in a `request()` scope
(api/access.py), and once its API key or dashboard session names the workspace, `charge_to` says so. A
mutable holder rather than a plain context variable, because the dependency that learns the workspace
may run in a copy of the request's context, whose changes the route would never see.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from cartback import errors

# Seconds of refill a workspace may hold and spend at once.
BURST_SECONDS = 10


class Spent(errors.RateLimited):
    """This workspace has used its rendering time for now; retry after the time given in Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "This workspace has rendered templates for as long as it may for now "
            f"(CARTBACK_RENDER_SECONDS_PER_MINUTE); retry in {retry_after} s."
        )
        self.retry_after = retry_after


class RenderBudget:
    """Render CPU seconds per workspace: `seconds_per_minute` refilled evenly, at most `BURST_SECONDS`'
    worth held. A render is allowed while the balance is positive, so one render may take it below zero by at
    most its own cost (a quarter of a second). 0 a minute: no budget."""

    def __init__(
        self, seconds_per_minute: float = 0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.monotonic = monotonic
        self._lock = threading.Lock()  # renders are asked for from many threads
        self._balances: dict[str, tuple[float, float]] = {}  # workspace -> (seconds, as of)
        self.refused = 0
        self.configure(seconds_per_minute)

    def configure(self, seconds_per_minute: float) -> None:
        with self._lock:
            self.rate = seconds_per_minute / 60
            self.capacity = self.rate * BURST_SECONDS
            self._balances.clear()

    def _balance(self, workspace_id: str, now: float) -> float:
        seconds, as_of = self._balances.get(workspace_id, (self.capacity, now))
        return min(self.capacity, seconds + (now - as_of) * self.rate)

    def check(self, workspace_id: str) -> None:
        """Raise Spent, with the seconds until a render is allowed again, if the balance is not positive."""
        if not self.rate:
            return
        with self._lock:
            balance = self._balance(workspace_id, self.monotonic())
            if balance > 0:
                return
            self.refused += 1
        raise Spent(max(1, math.ceil((1e-9 - balance) / self.rate)))

    def charge(self, workspace_id: str, cpu_seconds: float) -> None:
        if not self.rate:
            return
        with self._lock:
            now = self.monotonic()
            self._balances[workspace_id] = (self._balance(workspace_id, now) - cpu_seconds, now)
            if len(self._balances) > 100_000:
                # Refilled ones carry nothing a fresh entry would not: forget them, so the map stays small.
                full = [w for w in self._balances if self._balance(w, now) >= self.capacity]
                for workspace in full:
                    del self._balances[workspace]


# One per process, sized by the app (CARTBACK_RENDER_SECONDS_PER_MINUTE), like the render processes.
BUDGET = RenderBudget()


# The workspace the current request's renders are charged to: [workspace id or None] while a request is
# handled; None outside requests (the worker), whose renders are not charged.
_payer: ContextVar[list[str | None] | None] = ContextVar("cartback_render_payer", default=None)


@contextlib.contextmanager
def request() -> Iterator[None]:
    """Renders asked for inside this block are charged to the workspace `charge_to` names."""
    token = _payer.set([None])
    try:
        yield
    finally:
        _payer.reset(token)


def charge_to(workspace_id: str) -> None:
    """The current request acts for `workspace_id` (no-op outside a request)."""
    payer = _payer.get()
    if payer is not None:
        payer[0] = workspace_id


def payer() -> str | None:
    """The workspace the current request's renders are charged to, if any."""
    found = _payer.get()
    return found[0] if found is not None else None
