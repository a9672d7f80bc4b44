"""Commits in one process of `serve --processes` wake the scheduler that runs in another.

In a lone `serve`, each commit that may add work (an event to dispatch, a message to send) wakes the
in-process worker at once (store/db.py's commit listeners), so a checkout is enrolled milliseconds after
its answer rather than at the next tick (CARTBACK_TICK_SECONDS, 1 s). The children of `serve --processes`
commit in processes of their own, and only the first runs the worker: the others write a byte to a pipe
the parent made, and the worker's process wakes it when the pipe has something to read. A full pipe
(the worker's process is being replaced) drops the byte: the worker has a wake-up pending already, or
looks at its first tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from multiprocessing.connection import Connection


class Wakeups:
    """Both ends of the pipe; picklable, so the parent hands it to every child it spawns."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader = reader
        self.writer = writer
        # Once, here: the children's copies of the two ends share these open files, flags included.
        os.set_blocking(reader.fileno(), False)
        os.set_blocking(writer.fileno(), False)

    def notify(self) -> None:
        """From a process without the worker, after a commit: wake the worker's process."""
        with contextlib.suppress(BlockingIOError):
            os.write(self.writer.fileno(), b"\0")

    def listen(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> Callable[[], None]:
        """In the worker's process: call `wake` on the loop whenever another process committed; returns
        what stops listening."""
        fd = self.reader.fileno()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 4096)  # every byte waiting: one wake-up stands for them all
            wake()

        loop.add_reader(fd, readable)

        def stop() -> None:
            loop.remove_reader(fd)

        return stop
