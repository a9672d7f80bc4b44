"""The API routers skip a path outside their prefix without trying their routes (api/routing.py): every
request is answered as it is when each router tries them all."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter

from cartback.api import routing

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EDGES = [
    "/api",
    "/api/",
    "/apix",
    "/api/v1",
    "/api/v1/",
    "/api/v1x",
    "/v1",
    "/v1/",
    "/v1x",
    "/v1/b",
    "/nowhere",
]


def _answers(tmp_path: Path, name: str) -> dict[tuple[str, str], Any]:
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / name}.db"), run_worker=False)
    answers = {}
    with TestClient(app, raise_server_exceptions=False) as http:
        requests = [
            (method.upper(), re.sub(r"\{[^}]*\}", "x", path))
            for path, operations in app.openapi()["paths"].items()
            for method in [*operations, "put"]
        ]
        requests += [(method, path) for path in EDGES for method in ("GET", "POST")]
        for method, path in requests:
            response = http.request(method, path, headers={"Authorization": "Bearer nobody"})
            # Klaviyo's errors carry a new id each; a page that answers (/metrics, /healthz) changes.
            text = UUID.sub("<id>", response.text) if response.status_code >= 300 else ""
            answers[method, path] = (response.status_code, response.headers.get("allow"), text)
    return answers


def test_prefix_routers_answer_every_path_as_routers_that_try_every_route(tmp_path, monkeypatch):
    gated = _answers(tmp_path, "gated")
    monkeypatch.setattr(routing.PrefixRouter, "matches", APIRouter.matches)
    assert gated == _answers(tmp_path, "every-route")
    statuses = {status for status, _allow, _text in gated.values()}
    assert {401, 404, 405} <= statuses


@pytest.mark.parametrize(
    ("path", "root_path", "route_path"),
    [
        ("/api/events", "", "/api/events"),
        ("/shop/api/events", "/shop", "/api/events"),
        ("/shopx/a", "/shop", "/shopx/a"),
    ],
)
def test_route_path_drops_the_root_path(path, root_path, route_path):
    assert routing._route_path({"path": path, "root_path": root_path}) == route_path
