"""Work a tenant can make expensive, run in processes of their own at a low CPU priority.

Rendering a tenant's Liquid template and hashing a password take a core for up to a quarter of a second
each, in pure Python (Liquid) or in C with large memory sweeps (scrypt). In the server's own process a
render holds the interpreter lock all along, so every other workspace's request (its parsing, its commit,
its answer) waits its turn behind it; a hash takes a core and the caches the request threads use. In a
process of its own, at a lower priority (Linux niceness), such work only takes what the requests leave
over, and the interpreter lock is not shared.

A `Pool` starts its processes on first use (spawned: a fresh interpreter, never a fork of a process with
threads), one pool per process and purpose, shared by every app a process builds (tests build many). The
calling thread waits for the answer without holding the interpreter lock. `run` runs the function in
the calling thread when the pool has no processes (`size` 0).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")


# How often a pool's process looks whether the server that started it is still there.
_ORPHAN_CHECK_SECONDS = 1.0


def _start_process(niceness: int) -> None:
    """The initializer of every pool process: a lower priority, and an end of its own once orphaned."""
    # Not allowed (or not a Unix): the processes run at the server's priority.
    with contextlib.suppress(AttributeError, OSError):
        os.nice(niceness)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    # A server killed outright (kill -9, out of memory) never tells its pool to stop, and the pool's
    # processes would wait for work forever: each of them holds the write end of the pipe it reads from,
    # so the server's end closing is no end of file to them.
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_SECONDS)
    os._exit(0)


class Pool:
    """Up to `size` processes at `niceness`; resized by `resize` (the app's setting), started on first
    use, rebuilt once when a process died (the work is run again in a new one)."""

    def __init__(self, name: str, niceness: int, size: int = 0) -> None:
        self.name = name
        self.niceness = niceness
        self.size = size
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def resize(self, size: int) -> None:
        with self._lock:
            if size != self.size:
                self._shutdown_locked()
                self.size = size

    def shutdown(self) -> None:
        with self._lock:
            self._shutdown_locked()

    def _shutdown_locked(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _started(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.size,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_process,
                    initargs=(self.niceness,),
                )
            return self._executor

    def submit(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        """`fn(*args)` in one of the processes (`fn` and its arguments picklable)."""
        return self._started().submit(fn, *args)

    async def run_async(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in one of the processes, awaited; BrokenProcessPool (and a new pool for the next
        call) when its process died."""
        executor = self._started()
        try:
            return await asyncio.wrap_future(executor.submit(fn, *args))
        except BrokenProcessPool:
            self._forget(executor)
            raise

    def _forget(self, executor: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in one of the processes, or here when the pool has none; the calling thread waits."""
        if not self.size:
            return fn(*args)
        for attempt in (1, 2):
            executor = self._started()
            try:
                return executor.submit(fn, *args).result()
            except BrokenProcessPool:
                # A process died (killed, out of memory): a new pool, and the work once more.
                self._forget(executor)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
