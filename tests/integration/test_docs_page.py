"""/docs is Swagger UI served from cartback itself: no asset comes from another host."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.settings import Settings


@pytest.fixture
def http(db_url: str):
    with TestClient(create_app(Settings(database_url=db_url), run_worker=False)) as client:
        yield client


def test_docs_page_loads_swagger_ui_from_this_server_only(http):
    page = http.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text), "an external host in /docs"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        reply = http.get(asset)
        assert reply.status_code == 200 and reply.content, asset
    assert "'/openapi.json'" in page.text and http.get("/openapi.json").status_code == 200
    assert http.get("/redoc").status_code == 404  # it would load its script from a CDN
