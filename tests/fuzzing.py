"""Sending the fuzzers' requests to an in-process app without letting one that never answers stall the run.

Hypothesis retries a failing example to shrink it, so a request that waits forever would be sent again and
again after pytest-timeout's one alarm; the suite would then run until CI's own limit. Here a request gets
`ANSWER_WITHIN` seconds, and once one has hung every later request fails at once, naming it."""

from __future__ import annotations

import concurrent.futures
from typing import Any

ANSWER_WITHIN = 60.0

_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fuzz-request")
_hung: list[str] = []


def request(client: Any, **kwargs: Any) -> Any:
    """`client.request(**kwargs)`, or an AssertionError when it (or an earlier request) did not answer."""
    assert not _hung, f"an earlier request never got an answer: {_hung[0]}"
    future = _pool.submit(client.request, **kwargs)
    try:
        return future.result(timeout=ANSWER_WITHIN)
    except concurrent.futures.TimeoutError:
        _hung.append(f"{kwargs.get('method')} {kwargs.get('url')}: {str(kwargs)[:500]}")
        raise AssertionError(f"no answer within {ANSWER_WITHIN:.0f} s: {_hung[0]}") from None
