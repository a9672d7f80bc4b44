"""POST /api/v1/checkouts has a cheaper way in (api/lean.py) beside its FastAPI route: whichever of the
two answers, the caller gets the same bytes, and what the lean one declines gets the FastAPI answer."""

from __future__ import annotations

import json

import pytest

from cartback.api import lean

BODY = {
    "checkoutId": "lean-1",
    "totalCents": 8850,
    "currency": "usd",
    "checkoutUrl": "https://store.example.com/checkout/1",
    "customer": {"email": " Buyer@Example.com ", "firstName": "Ann", "attributes": {"tier": "gold"}},
    "items": [{"productId": "P1", "title": "Protein", "quantity": 1, "priceCents": 8850, "imageUrl": None}],
    "properties": {"nested": {"a": [1, 2.5, True, None, "x"]}},
    "unknownKey": "ignored",
}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which way each request went: "lean" when the lean route answered, "fastapi" when it declined."""
    ways: list[str] = []
    serve, pass_on = lean.LeanFront._serve, lean.LeanFront._pass_on

    async def serving(self: lean.LeanFront, *args: object) -> None:
        ways.append("lean")  # until it passes the request on
        await serve(self, *args)

    async def passing_on(self: lean.LeanFront, *args: object) -> None:
        ways[-1] = "fastapi"
        await pass_on(self, *args)

    monkeypatch.setattr(lean.LeanFront, "_serve", serving)
    monkeypatch.setattr(lean.LeanFront, "_pass_on", passing_on)
    return ways


def _post(app_client, body: object, content_type: str = "application/json", **headers: str):
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return app_client.http.post(
        "/api/v1/checkouts", content=raw, headers={"Content-Type": content_type, **headers}
    )


def _comparable(res) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in res.headers.items() if k != "x-request-id")
    return res.status_code, res.content, headers


@pytest.mark.parametrize("checkout_id", ["lean-1", 'ünïcödé \u2028 \U0001f600 "q" \\ </script>'])
def test_lean_and_fastapi_answers_are_identical(app_client, served, checkout_id):
    body = {**BODY, "checkoutId": checkout_id}
    first = _post(app_client, body)
    # A media type the lean route leaves to FastAPI: the same checkout again, answered by the other way.
    again = _post(app_client, body, content_type="application/vnd.api+json")
    assert served == ["lean", "fastapi"]
    assert first.status_code == 200
    assert first.json()["checkoutId"] == checkout_id
    assert _comparable(first) == _comparable(again)


_HEAD = b'{"checkoutId": "x", "customer": {"email": "a@example.com"}, "properties": '


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        (b'{"checkoutId": "x", "customer": {"email": "not an address"}}', {}),
        (b'{"checkoutId": "x"', {}),
        (b"[1, 2]", {}),
        (_HEAD + b'{"n": NaN}}', {}),
        (_HEAD + b'{"n": "\\ud800"}}', {}),
        # Beyond 64 bits orjson reads a float; just beyond 63, an int the storable rule refuses.
        (_HEAD + b'{"n": 99999999999999999999}}', {}),
        (_HEAD + b'{"n": 9223372036854775808}}', {}),
        (json.dumps(BODY).encode(), {"Authorization": "Bearer cb_made_up_key_123456"}),
        (json.dumps(BODY).encode(), {"Authorization": "Basic Zm9vOmJhcg=="}),
    ],
)
def test_what_the_lean_route_declines_gets_the_fastapi_answer(app_client, served, raw, headers):
    res = _post(app_client, raw, **headers)
    assert served == ["fastapi"]
    assert res.status_code in (400, 401)
    assert res.json()["success"] is False


def test_a_key_without_the_scope_is_refused_as_before(app_client, served, db):
    from cartback.core.clock import system_clock
    from cartback.store import workspaces

    _, secret = db.write_sync(
        lambda tx: workspaces.create_api_key(tx, app_client.tenant.id, system_clock.now(), scopes=("read",))
    )
    res = _post(app_client, BODY, Authorization=f"Bearer {secret}")
    assert served == ["fastapi"]
    assert res.status_code == 403
    assert "events:write" in res.json()["error"]


def test_other_methods_on_the_path_are_answered_by_fastapi(app_client):
    res = app_client.http.get("/api/v1/checkouts")
    assert res.status_code == 405
    assert "POST" in res.headers["allow"]


def test_what_the_body_limits_would_refuse_or_read_first_is_left_to_them(app_client, served):
    from cartback.settings import Settings

    raw = json.dumps(BODY).encode()
    # No Content-Length: the body limits read it first (up to the limit), then the route answers.
    chunked = app_client.http.post(
        "/api/v1/checkouts", content=iter([raw[:10], raw[10:]]), headers={"Content-Type": "application/json"}
    )
    oversized = _post(app_client, {**BODY, "properties": {"pad": "x" * Settings().max_body_bytes}})
    nul_in_query = app_client.http.post(
        "/api/v1/checkouts?note=%00", content=raw, headers={"Content-Type": "application/json"}
    )
    nul_in_body = _post(app_client, {**BODY, "properties": {"note": "a\x00b"}})
    assert served == ["fastapi"] * 4
    assert chunked.status_code == 200 and chunked.json()["checkoutId"] == BODY["checkoutId"]
    assert (oversized.status_code, oversized.json()["success"]) == (413, False)
    assert (nul_in_query.status_code, nul_in_body.status_code) == (400, 400)
    assert "NUL" in nul_in_query.json()["error"] and "NUL" in nul_in_body.json()["error"]
