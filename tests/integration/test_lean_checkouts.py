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
    answer = lean.LeanRoute._answer

    async def spy(self: lean.LeanRoute, scope: dict, body: bytes) -> object:
        response = await answer(self, scope, body)
        ways.append("fastapi" if response is None else "lean")
        return response

    monkeypatch.setattr(lean.LeanRoute, "_answer", spy)
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
