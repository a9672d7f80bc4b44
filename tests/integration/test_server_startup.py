"""`cartback serve`'s server freezes what exists once the app has started (server.GracefulServer.startup),
so the interpreter's full collections walk only what requests create: walking the app's own objects held
every request in flight for about 160 ms (bench/README.md, hostile.py)."""

from __future__ import annotations

import gc
import threading
import time

import httpx
import uvicorn

from cartback.app import create_app
from cartback.server import GracefulServer
from cartback.settings import Settings


def test_started_server_has_frozen_the_app_so_collections_skip_it(db_url) -> None:
    app = create_app(Settings(database_url=db_url, rate_limit_burst=0, rate_limit_steady=0))
    server = GracefulServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    gc.unfreeze()
    thread = threading.Thread(target=server.run, daemon=True)  # not the main thread: no signal handlers
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        # An answer means the event loop is past the startup coroutine, which freezes at its end.
        port = server.servers[0].sockets[0].getsockname()[1]
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        assert gc.get_freeze_count() > 10_000
        # The app, its routes and settings are among the frozen objects: no collection walks them.
        young = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert id(app) not in young
        assert id(app.router) not in young
    finally:
        server.should_exit = True
        thread.join(30)
        gc.unfreeze()  # the test process's garbage stays collectable
    assert not thread.is_alive()
