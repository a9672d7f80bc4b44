"""Refusals answered late: a 429 waits a moment before it is sent.

A client that ignores Retry-After and asks again the moment it is refused (a script in a loop, a flood)
is held back by nothing but the server's own speed: the cheaper the refusal, the more of them it sends,
and each still costs the server an accepted connection, the key's lookup, an answer, a log line. In
bench/hostile.py two preview clients of a workspace past its render budget got 18,750 429s in 80 s;
the sign-in flood showed the same (docs/security.md). So a request refused by a rate limit or a budget is
answered `CARTBACK_REFUSAL_DELAY_SECONDS` late (1 s; never later than its Retry-After, which a
well-behaved client waits anyway): each connection of such a client then costs at most one refusal a
second, and a client that honours Retry-After notices nothing. Waiting holds a coroutine and the
connection, not a thread or a core.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request


def delay_of(request: Request) -> float:
    """The app's refusal delay (0 for an app that sets none)."""
    return float(getattr(request.app.state, "refusal_delay", 0.0))


async def wait(delay: float, retry_after: int | None) -> None:
    """Wait before sending a refusal: `delay` seconds, never more than its `retry_after`."""
    seconds = min(delay, retry_after) if retry_after is not None else delay
    if seconds > 0:
        await asyncio.sleep(seconds)
