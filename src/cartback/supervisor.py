"""`cartback serve --processes N`: N server processes answering on one port.

One process answers with one core at most, whatever the machine has: the interpreter runs one thread at
a time. Measured on two cores, a lone `serve` under load left the second core nearly idle (bench/README.md).
Here the parent binds N listening sockets to the port (SO_REUSEPORT) and starts N children, each a whole
`serve` (its own app, group-commit writer and pools) on one of them: the kernel spreads new connections
over the sockets. The first child also runs the in-process worker, unless --no-worker; the others' commits
wake it through a pipe (wakeups.py), as a lone serve's commits wake its own.

What the children share is in the database: events, enrollments, the rate-limit counts (core/ratelimits.py
shares them through the database whenever more than one process serves it), the SQLite write lock (store/
writer_lock.py). Metrics are summed over the children (prometheus_client's multiprocess mode: each child's
counters in a directory the parent makes and removes), so any child's /metrics answers for all of them.

The parent only watches: a child that dies is started again (the first one with the worker), unless it
died before it started serving, where the next start would fail the same way (the parent then stops
them all and exits 1). SIGTERM or SIGINT: every child stops gracefully (server.py) and the parent waits
for them. A child dies with its parent, even one killed with -9 (Linux: PR_SET_PDEATHSIG), so no child
keeps the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event

from cartback import metrics
from cartback.settings import Settings
from cartback.wakeups import Wakeups

log = logging.getLogger(__name__)

# Linux prctl(2): the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1

_spawn = multiprocessing.get_context("spawn")


def run(settings: Settings, *, host: str, port: int, processes: int, run_worker: bool) -> int:
    """Serve with `processes` children until SIGTERM or SIGINT; the exit status."""
    sockets = _listen(host, port, processes)
    metrics_dir = tempfile.mkdtemp(prefix="cartback-metrics-")
    # Read by prometheus_client when a child imports it (spawned children inherit the environment).
    os.environ[metrics.MULTIPROCESS_DIR] = metrics_dir
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    children: list[_Child] = []
    status = 0
    try:
        wakeups = Wakeups(*_spawn.Pipe(duplex=False))

        def start(n: int) -> _Child:
            return _start(settings, host, port, sockets[n], run_worker and n == 0, wakeups)

        children = [start(n) for n in range(processes)]
        log.info("serving with %d processes", processes, extra={"pids": [c.process.pid for c in children]})
        while not stopping:
            multiprocessing.connection.wait([*(c.process.sentinel for c in children), wake_read])
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 64)
            for n, child in enumerate(children):
                if child.process.exitcode is None or stopping:
                    continue
                if not child.started.is_set():
                    log.error("a server process failed to start (exit %s); stopping", child.process.exitcode)
                    stopping.append(0)
                    status = 1
                    break
                log.error("a server process died (exit %s); starting another", child.process.exitcode)
                children[n] = start(n)
    finally:
        for child in children:
            if child.process.exitcode is None:
                child.process.terminate()  # SIGTERM: a graceful stop (server.py)
        deadline = time.monotonic() + settings.shutdown_seconds + 5
        for process in (c.process for c in children):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
        for sock in sockets:
            sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _listen(host: str, port: int, processes: int) -> list[socket.socket]:
    """A listening socket per child, all on host:port (SO_REUSEPORT): the kernel spreads new connections
    evenly over them. One socket shared by all would not: the first child to wake accepts every
    connection waiting (asyncio accepts up to a hundred per wake), so a client opening its connections at
    once (a load balancer's pool, wrk) had 57 of 64 on one child and 7 on the other. A child's socket
    outlives the child: connections that reach it while it is replaced wait in its backlog."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    first = socket.create_server((host.strip("[]"), port), family=family, backlog=2048, reuse_port=True)
    # The others bind the port the first got: with port 0 each would otherwise get a port of its own.
    address = first.getsockname()[:2]
    others = [
        socket.create_server(address, family=family, backlog=2048, reuse_port=True)
        for _ in range(processes - 1)
    ]
    return [first, *others]


@dataclass(frozen=True)
class _Child:
    process: SpawnProcess
    started: Event  # set by the child once it serves


def _start(
    settings: Settings, host: str, port: int, sock: socket.socket, run_worker: bool, wakeups: Wakeups
) -> _Child:
    """A child serving on `sock`: a socket of its own or, for a replacement, that of the child it replaces."""
    started = _spawn.Event()
    process = _spawn.Process(
        target=_serve,
        args=(settings, host, port, sock, run_worker, wakeups, os.getpid(), started),
        name="cartback-serve",
    )
    process.start()
    return _Child(process, started)


def _serve(
    settings: Settings,
    host: str,
    port: int,
    sock: socket.socket,
    run_worker: bool,
    wakeups: Wakeups,
    parent: int,
    started: Event,
) -> None:
    """A child: one `serve` on the parent's socket."""
    _die_with_parent(parent)
    from cartback import logs, server
    from cartback.app import create_app

    logs.configure(settings.log_format, settings.log_level)
    app = create_app(settings, migrate=False, run_worker=run_worker, wakeups=wakeups)

    def serving() -> None:
        started.set()
        log.info("server process serving on %s:%d", host, port, extra={"pid": os.getpid()})

    server.run(app, settings, host=host, port=port, sockets=[sock], on_started=serving)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent died before prctl took effect: nothing would send the signal.
    if os.getppid() != parent:
        os._exit(1)
