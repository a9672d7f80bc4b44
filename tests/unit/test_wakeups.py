"""The pipe through which the children of `serve --processes` wake the worker's process."""

from __future__ import annotations

import asyncio
import multiprocessing

from cartback.wakeups import Wakeups


def test_a_full_pipe_never_blocks_the_process_that_committed_and_one_wake_drains_it():
    wakeups = Wakeups(*multiprocessing.get_context("spawn").Pipe(duplex=False))
    for _ in range(100_000):  # far past what a pipe holds (64 KiB): a blocking write would hang here
        wakeups.notify()

    async def listen() -> int:
        woken = asyncio.Event()
        calls: list[int] = []

        def wake() -> None:
            calls.append(1)
            woken.set()

        stop = wakeups.listen(asyncio.get_running_loop(), wake)
        await asyncio.wait_for(woken.wait(), 5)
        await asyncio.sleep(0.05)  # the rest of the pipe: more wakes, each draining what is there
        stop()
        return len(calls)

    assert asyncio.run(listen()) < 100_000
