"""`cartback serve` under uvicorn, with the graceful stop operators rely on (docs/operations.md).

On SIGTERM or SIGINT: uvicorn stops accepting connections, closes idle keep-alive ones and lets requests
in flight finish (at most CARTBACK_SHUTDOWN_SECONDS less one second); meanwhile the in-process worker
finishes its round and starts nothing new. Then the app's shutdown gives back the worker's leases and
the group-commit writer commits whatever is queued, so every answered request is durable and a restarted
process takes the released work at once.
"""

from __future__ import annotations

import functools
import gc
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from cartback.settings import Settings


class GracefulServer(uvicorn.Server):
    """uvicorn's server, which on a stop signal also calls `on_signal`, so the in-process worker starts
    stopping at once and its round and the draining of requests share the shutdown budget."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_signal: Callable[[], None] | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.on_signal = on_signal
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # What exists once the app has started (modules, routes, models, compiled templates and SQL: some
        # 200,000 objects) lives as long as the process. A full collection walked all of it, holding the
        # interpreter for about 160 ms, so every request in flight waited that long whenever enough
        # allocations came together (bench/hostile.py: the victim's slowest answers under attack).
        # Frozen, later collections walk only what requests create.
        gc.collect()
        gc.freeze()
        if self.started and self.on_started is not None:
            self.on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.on_signal is not None:
            self.on_signal()


def _begin_shutdown(app: FastAPI) -> None:
    # Set by create_app's lifespan once started; a signal before that has no worker to stop.
    begin = getattr(app.state, "begin_shutdown", None)
    if begin is not None:
        begin()


def run(
    app: FastAPI,
    settings: Settings,
    *,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until a stop signal, on `sockets` when given (bound by `cartback serve --processes`'s
    parent, shared by its children), else on a socket of its own bound to host:port. `on_started` is
    called once the app has started and the server accepts connections."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # cartback writes its own access line, with the request id
        log_config=None,  # logs.configure has set up every logger
        log_level=settings.log_level,
        # What is left of the budget goes to the worker's leases and the writer's last commit.
        timeout_graceful_shutdown=max(0.5, settings.shutdown_seconds - 1.0),  # type: ignore[arg-type]
    )
    server = GracefulServer(config, on_signal=functools.partial(_begin_shutdown, app), on_started=on_started)
    server.run(sockets=sockets)
