"""An app that has been let go is freed: nothing of it stays reachable from the process (FastAPI's caches
of inspected endpoints, module-level registries), so a process that builds many apps, as this suite does,
does not grow with each one and its garbage collections do not slow down with it."""

from __future__ import annotations

import gc
import weakref

from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.settings import Settings

# Every route create_app adds itself, beside the surfaces' routers.
PATHS = ["/healthz", "/readyz", "/metrics", "/docs", "/app", "/api/v1/subscribers"]


def _use_and_drop(db_url: str) -> tuple[weakref.ref[object], weakref.ref[object], weakref.ref[object]]:
    app = create_app(Settings(database_url=db_url, rate_limit_burst=0, rate_limit_steady=0))
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        for path in PATHS:
            assert client.get(path).status_code < 500, path
    refs = weakref.ref(app), weakref.ref(app.state.services.db), weakref.ref(app.state.metrics)
    del app, client
    return refs


def test_app_lifetime_an_app_let_go_is_freed_with_its_database_and_metrics(db_url) -> None:
    refs = [_use_and_drop(db_url) for _ in range(2)]
    gc.collect()
    for app, database, metrics in refs:
        assert app() is None
        assert database() is None
        assert metrics() is None
