"""Klaviyo's error cases answer with its statuses and JSON:API error objects, on both databases; nothing
under /api/v1 changes envelope."""

from __future__ import annotations

import pytest

REVISION = "2026-10-15"


def event(**attributes) -> dict:
    base = {
        "properties": {"a": 1},
        "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed Product"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
    }
    base.update(attributes)
    return {"data": {"type": "event", "attributes": base}}


@pytest.fixture
def kl(app_client):
    http = app_client.http

    def call(method, path, *, key=None, revision=REVISION, json=None, headers=None, **kwargs):
        sent = {"Authorization": f"Klaviyo-API-Key {key or app_client.tenant.key}"}
        if revision is not None:
            sent["revision"] = revision
        sent.update(headers or {})
        return http.request(method, path, json=json, headers=sent, **kwargs)

    return call


def only_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/vnd.api+json")
    (error,) = response.json()["errors"]
    assert set(error) >= {"id", "status", "code", "title", "detail", "source"}
    assert error["status"] == status
    assert all(isinstance(error[k], str) and error[k] for k in ("id", "code", "title", "detail"))
    return error


def test_klaviyo_missing_revision_is_400_naming_the_header(kl):
    error = only_error(kl("POST", "/api/events", json=event(), revision=None), 400)
    assert error["source"] == {"parameter": "revision"}
    assert "revision" in error["detail"]


def test_klaviyo_malformed_revision_is_400(kl):
    error = only_error(kl("POST", "/api/events", json=event(), revision="yesterday"), 400)
    assert error["source"] == {"parameter": "revision"}


@pytest.mark.parametrize(
    "header", ["Klaviyo-API-Key pk_not_a_key", "Bearer pk_not_a_key", "Klaviyo-API-Key ", "", "Basic abc"]
)
def test_klaviyo_wrong_or_missing_key_is_401(kl, header):
    error = only_error(kl("POST", "/api/events", json=event(), headers={"Authorization": header}), 401)
    assert error["code"] in ("not_authenticated", "authentication_failed")


def test_klaviyo_sequenzy_bearer_key_still_works_on_api_v1(app_client):
    # The Sequenzy tree keeps its own auth and envelope under the shared /api prefix.
    ok = app_client.get("/subscribers")
    assert ok.status_code == 200, ok.text
    bad = app_client.http.get("/api/v1/subscribers", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["success"] is False and "errors" not in bad.json()
    missing = app_client.http.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["success"] is False
    not_json = app_client.http.post(
        "/api/v1/checkouts", content=b"x=1", headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415
    assert not_json.json()["success"] is False


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"data": {"type": "events", "attributes": {}}}, "/data/type"),
        ({"nodata": {}}, "/data"),
        (
            event(metric={"data": {"type": "metric", "attributes": {}}}),
            "/data/attributes/metric/data/attributes/name",
        ),
        (
            event(profile={"data": {"type": "profile", "attributes": {"email": "not-an-email"}}}),
            "/data/attributes/profile/data/attributes/email",
        ),
        (
            event(profile={"data": {"type": "profile", "attributes": {}}}),
            "/data/attributes/profile/data/attributes",
        ),
        (event(properties=None), "/data/attributes/properties"),
        (event(value="lots"), "/data/attributes/value"),
        (event(value_currency="DOLLARS"), "/data/attributes/value_currency"),
        (event(time="2200-01-01T00:00:00Z"), "/data/attributes/time"),
        (event(time="1999-12-31T00:00:00Z"), "/data/attributes/time"),
    ],
)
def test_klaviyo_bad_jsonapi_shape_is_400_with_pointer(kl, body, pointer):
    response = kl("POST", "/api/events", json=body)
    assert response.status_code == 400, response.text
    pointers = [e["source"].get("pointer") for e in response.json()["errors"]]
    assert pointer in pointers, response.text
    assert all(e["code"] == "invalid" for e in response.json()["errors"])


def test_klaviyo_malformed_json_is_400(kl):
    response = kl("POST", "/api/events", content=b'{"data": ', headers={"Content-Type": "application/json"})
    error = only_error(response, 400)
    assert error["code"] == "parse_error"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_klaviyo_unsupported_media_type_is_415(kl, ctype):
    response = kl("POST", "/api/events", content=b'{"data": {}}', headers={"Content-Type": ctype})
    error = only_error(response, 415)
    assert error["code"] == "unsupported_media_type"


@pytest.mark.parametrize("ctype", ["application/json", "application/vnd.api+json"])
def test_klaviyo_both_json_media_types_are_accepted(kl, ctype):
    import orjson

    response = kl("POST", "/api/events", content=orjson.dumps(event()), headers={"Content-Type": ctype})
    assert response.status_code == 202, response.text
    assert response.content == b""


@pytest.mark.parametrize(
    ("properties", "pointer"),
    [
        ({f"p{i}": i for i in range(301)}, "/data/attributes/properties"),
        ({"long": "x" * (100 * 1024 + 1)}, "/data/attributes/properties/long"),
        ({"many": list(range(4001))}, "/data/attributes/properties/many"),
        # Keys escaped as JSON Pointer segments (RFC 6901), list members by index.
        (
            {"items": [{"ok": 1}, {"a/b~c": ["short", "x" * (100 * 1024 + 1)]}]},
            "/data/attributes/properties/items/1/a~1b~0c/1",
        ),
        (
            {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": 1}}}}}}}}}}},
            "/data/attributes/properties/a/b/c/d/e/f/g/h/i/j",
        ),
    ],
)
def test_klaviyo_ingestion_limits_are_400_pointing_at_the_member(kl, properties, pointer):
    error = only_error(kl("POST", "/api/events", json=event(properties=properties)), 400)
    assert error["source"] == {"pointer": pointer}


def test_klaviyo_limits_at_the_edge_are_accepted(kl):
    properties = {f"p{i}": i for i in range(299)}
    properties["many"] = list(range(4000))
    response = kl("POST", "/api/events", json=event(properties=properties))
    assert response.status_code == 202, response.text


def test_klaviyo_payload_over_the_body_limit_is_413_in_klaviyo_shape(kl):
    response = kl("POST", "/api/events", json=event(properties={"big": "x" * (1024 * 1024)}))
    error = only_error(response, 413)
    assert error["code"] == "request_too_large"


def test_klaviyo_unknown_fields_are_ignored(kl):
    body = event(surprise={"x": 1})
    body["data"]["extra"] = True
    body["data"]["attributes"]["profile"]["data"]["attributes"]["favourite_colour"] = "blue"
    assert kl("POST", "/api/events", json=body).status_code == 202


def test_klaviyo_unknown_route_under_api_is_a_klaviyo_404(kl):
    error = only_error(kl("GET", "/api/nothing-here"), 404)
    assert error["code"] == "not_found"
