"""A method a path does not accept is a 405 with an `Allow` header listing every method it does accept
(RFC 9110 15.5.6), in the error envelope of the surface the path belongs to. Starlette's own header
named only the first route whose path matched: `PUT /api/v1/subscribers/{email}` said `Allow: GET`
although PATCH and DELETE answer there too."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cartback.api.klaviyo import SDK_REVISION


def allow(response: Any) -> set[str]:
    assert response.status_code == 405, response.text
    return {m.strip() for m in response.headers["allow"].split(",")}


def test_405_allow_lists_every_route_of_the_path_in_sequenzy_envelope(app_client):
    response = app_client.http.put("/api/v1/subscribers/a@example.com")
    assert allow(response) == {"GET", "PATCH", "DELETE"}
    body = response.json()
    assert body["success"] is False and body["code"] == "method_not_allowed"
    assert "PUT" in body["error"] and "GET, PATCH, DELETE" in body["error"]
    assert allow(app_client.http.put("/api/v1/sequences")) == {"GET", "POST"}


def test_405_allow_in_klaviyo_envelope(app_client):
    headers = {"Authorization": f"Klaviyo-API-Key {app_client.tenant.key}", "revision": SDK_REVISION}
    response = app_client.http.delete("/api/events", headers=headers)
    assert allow(response) == {"GET", "POST"}
    [error] = response.json()["errors"]
    assert error["status"] == 405 and error["code"] == "method_not_allowed"
    assert "GET, POST" in error["detail"]


def test_405_allow_in_segment_envelope_on_long_and_short_paths(app_client):
    for path in ("/v1/batch", "/v1/b", "/v1/track", "/v1/t"):
        response = app_client.http.get(path)
        assert allow(response) == {"POST"}, path
        body = response.json()
        assert body["success"] is False and body["code"] == "method_not_allowed", body
        assert "POST" in body["message"]


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


def test_405_allow_matches_the_documented_methods_of_every_api_path(app_client):
    """Every path of /openapi.json, sent a method no route has: the Allow header holds every documented
    method of the path, and only methods some documented path matching it has."""
    document = app_client.http.get("/openapi.json").json()
    documented = {
        path: {method.upper() for method in item if method != "parameters"}
        for path, item in document["paths"].items()
    }
    checked = 0
    for path, methods in documented.items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        response = app_client.http.request("TRACE", concrete)
        allowed = allow(response)
        possible = set().union(*(ms for p, ms in documented.items() if _template(p).match(concrete)))
        assert methods <= allowed <= possible | {"HEAD"}, (path, allowed)
        assert response.headers["content-type"].split(";")[0].endswith("json"), path
        assert response.json(), path
        checked += 1
    assert checked >= 60


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_405_every_method_allow_names_is_answered(app_client, method):
    app_client.post("/subscribers", {"email": "allowed@example.com"})
    response = app_client.http.request(method, "/api/v1/subscribers/allowed@example.com", json={})
    assert response.status_code == 200, response.text
