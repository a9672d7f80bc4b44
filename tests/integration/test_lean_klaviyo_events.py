"""POST /api/events has a cheaper way in (api/lean.py) beside its FastAPI route: whichever of the two
answers, the caller gets the same status, headers and bytes, the same rows are stored, and what the lean
route declines gets the FastAPI answer."""

from __future__ import annotations

import json
import re
import types
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cartback.api import lean
from cartback.api.klaviyo import jsonapi
from cartback.store import tables

REVISION = "2026-10-15"
LEAN, FASTAPI = "lean", "fastapi"


def event(name: str = "Started Checkout", **attributes: object) -> dict:
    base: dict = {
        "properties": {"checkout_id": "c-1", "value": 158.97, "currency": "USD"},
        "metric": {"data": {"type": "metric", "attributes": {"name": name}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "Jane@Example.com"}}},
        "unique_id": "u-1",
    }
    base.update(attributes)
    return {"data": {"type": "event", "attributes": base}}


ITEMS = [
    {
        "product_id": "p1",
        "name": "Sweater",
        "quantity": 1,
        "price": 89.0,
        "image_url": "https://cdn.example/a.jpg",
    },
    {"product_id": "p2", "name": "Beanie", "quantity": 2, "price": 24.99},
]

# Bodies both ways answer 202 to: checkouts, orders and custom events, in the forms the SDK and widely
# copied guides send.
GOOD = {
    "checkout": event(
        properties={
            "checkout_id": "c-1",
            "value": 158.97,
            "currency": "USD",
            "checkout_url": "https://shop.example.com/checkouts/c-1/recover",
            "items": ITEMS,
            "nested": {"a": [1, 2.5, True, None, "x"]},
        },
        value=158.97,
    ),
    "checkout without ids": {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"cart_id": "cart-9", "Items": ITEMS},
                "metric": {"name": "Started Checkout"},
                "profile": {"email": "flat@example.com", "first_name": "Ann", "properties": {"tier": "gold"}},
            },
        }
    },
    "checkout with a time and a phone": event(
        time="2026-12-01T10:00:00+02:00",
        profile={
            "data": {
                "type": "profile",
                "attributes": {"phone_number": "+1 (500) 555-0006", "anonymous_id": "an-1"},
            }
        },
    ),
    "placed order": event(
        "Placed Order", properties={"order_id": "o-1", "checkout_id": "c-1", "items": ITEMS}, value=99.5
    ),
    "refunded order": event(
        "Refunded Order", properties={"OrderId": "o-2"}, value=10, time="2026-12-01T11:00:00Z"
    ),
    "custom event": event(
        "Viewed Product", properties={"ProductName": "ünïcödé \u2028 \U0001f600 </script>"}, value=-3
    ),
    # Without a unique_id the event's time to the second is its key, as in Klaviyo: a fixed time keeps the
    # replays below replays when they straddle a second of the clock.
    "custom event, currency": event(
        "Custom",
        properties={},
        value=12,
        value_currency="eur",
        unique_id=None,
        time="2026-12-01T09:30:00.250Z",
    ),
    "external id": event(
        "Active on Site",
        profile={
            "data": {"type": "profile", "attributes": {"external_id": "ext-1", "location": {"city": "Oslo"}}}
        },
    ),
}

_PROPS = "properties"
# Bodies the FastAPI route refuses (400); the lean route must leave every one of them to it.
BAD = {
    "malformed JSON": b'{"data": {"type": "event"',
    "array": b"[1, 2]",
    "no data": {"nothing": 1},
    "wrong type": {"data": {"type": "profile", "attributes": event()["data"]["attributes"]}},
    "no metric": {
        "data": {"type": "event", "attributes": {"properties": {}, "profile": {"email": "a@b.example"}}}
    },
    "no identifier": event(profile={"data": {"type": "profile", "attributes": {"first_name": "Ann"}}}),
    "bad email": event(profile={"email": "not an address"}),
    "bad phone": event(profile={"phone_number": "12"}),
    "too many properties": event(properties={f"p{i}": i for i in range(301)}),
    "nested too deeply": event(
        properties={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": 1}}}}}}}}}}}
    ),
    "far future": event(time="2199-01-01T00:00:00Z"),
    "negative checkout value": event(value=-5),
    "bad currency": event(value=5, value_currency="not a currency"),
    "empty metric name": event(metric={"name": ""}),
    "NaN": b'{"data": {"type": "event", "attributes": {"properties": {"n": NaN}}}}',
    "lone surrogate": b'{"data": {"type": "event", "attributes": {"properties": {"n": "\\ud800"}}}}',
    "beyond 64 bits": json.dumps(event(properties={"n": 99999999999999999999})).encode(),
    "beyond 63 bits": json.dumps(event(properties={"n": 9223372036854775808})).encode(),
    # Accepted before the write, refused by it: the same renderer answers either way.
    "unknown profile id": event(profile={"data": {"type": "profile", "id": "01NOSUCHPROFILE"}}),
}


@pytest.fixture
def ways(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Which way each request went ("lean" when the lean route answered or raised, "fastapi" when it
    declined); `force_fastapi` makes the lean route decline everything, as if it were not there. Error
    objects get a fixed id, so two answers can be compared byte for byte."""
    state = types.SimpleNamespace(served=[], force_fastapi=False)
    serve, pass_on = lean.LeanFront._serve, lean.LeanFront._pass_on

    async def serving(self: lean.LeanFront, route: lean.LeanRoute, *args: object) -> None:
        state.served.append(LEAN)  # until it passes the request on
        if state.force_fastapi:
            await passing_on(self, *args)
        else:
            await serve(self, route, *args)

    async def passing_on(self: lean.LeanFront, *args: object) -> None:
        state.served[-1] = FASTAPI
        await pass_on(self, *args)

    monkeypatch.setattr(lean.LeanFront, "_serve", serving)
    monkeypatch.setattr(lean.LeanFront, "_pass_on", passing_on)
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(jsonapi, "uuid", types.SimpleNamespace(uuid4=lambda: fixed))
    return state


def _post(
    app_client, body: object, *, key: str | None = None, content_type: str = "application/json", **headers
):
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    sent = {
        "Authorization": f"Klaviyo-API-Key {key or app_client.tenant.key}",
        "Content-Type": content_type,
        "revision": REVISION,
    }
    sent.update(headers)
    return app_client.http.post("/api/events", content=raw, headers=sent)


def _comparable(res) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in res.headers.items() if k != "x-request-id")
    return res.status_code, res.content, headers


def _stored(db, workspace_id: str) -> dict[str, list[str]]:
    """What a workspace holds after the events, without generated ids (idempotency keys name
    subscriber ids too) and times of receipt (today's)."""
    today = re.compile(datetime.now(UTC).strftime("%Y-%m-%dT") + r"[0-9:.]+Z?")
    ev, co, su = tables.events, tables.checkouts, tables.subscribers

    def read(tx) -> dict[str, list[str]]:
        where = ev.c.workspace_id == workspace_id
        events = tx.execute(sa.select(ev.c.name, ev.c.source, ev.c.properties, ev.c.value).where(where))
        checkouts = tx.execute(
            sa.select(
                co.c.checkout_id, co.c.currency, co.c.total_cents, co.c.checkout_url, co.c["items"]
            ).where(co.c.workspace_id == workspace_id)
        )
        people = tx.execute(
            sa.select(su.c.email, su.c.first_name, su.c.phone, su.c.attributes).where(
                su.c.workspace_id == workspace_id
            )
        )
        return {
            name: sorted(
                today.sub("<now>", json.dumps(list(row), sort_keys=True, default=str)) for row in rows
            )
            for name, rows in (("events", events), ("checkouts", checkouts), ("people", people))
        }

    return db.read_sync(read)


@pytest.mark.parametrize("name", list(GOOD))
def test_lean_and_fastapi_answers_and_rows_are_identical(app_client, ways, db, name):
    body = GOOD[name]
    other = app_client.make_workspace()
    first = _post(app_client, body)
    ways.force_fastapi = True
    # The SDK's media type and Bearer scheme on the other way, which must not matter.
    again = _post(app_client, body, key=other.key, content_type="application/vnd.api+json")
    assert ways.served == [LEAN, FASTAPI]
    assert first.status_code == 202, first.text
    assert _comparable(first) == _comparable(again)
    stored = _stored(db, app_client.tenant.id)
    assert stored["events"], "nothing stored"
    assert stored == _stored(db, other.id)

    # The same event again is a replay either way round: same answer, nothing more stored.
    replay_lean = _post(app_client, body, key=other.key)
    ways.force_fastapi = False
    replay_fastapi = _post(app_client, body, content_type="application/vnd.api+json")
    assert ways.served[2:] == [FASTAPI, LEAN]
    assert _comparable(replay_lean) == _comparable(replay_fastapi) == _comparable(first)
    assert _stored(db, app_client.tenant.id) == stored == _stored(db, other.id)


@pytest.mark.parametrize("name", list(BAD))
def test_what_the_lean_route_declines_gets_the_fastapi_answer(app_client, ways, name):
    body = BAD[name]
    res = _post(app_client, body)
    ways.force_fastapi = True
    alone = _post(app_client, body)
    assert res.status_code == 400, res.text
    assert res.json()["errors"][0]["status"] == 400
    assert ways.served == [LEAN if name == "unknown profile id" else FASTAPI, FASTAPI]
    assert _comparable(res) == _comparable(alone)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"revision": ""}, 400),
        ({"revision": "yesterday"}, 400),
        ({"revision": "2026-10-15 "}, 400),
        ({"Authorization": "Klaviyo-API-Key pk_made_up_key_123456"}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, 401),
        ({"Content-Type": "text/plain"}, 415),
    ],
)
def test_bad_headers_get_the_fastapi_answer(app_client, ways, headers, status):
    res = _post(app_client, GOOD["checkout"], **headers)
    ways.force_fastapi = True
    alone = _post(app_client, GOOD["checkout"], **headers)
    assert res.status_code == status, res.text
    assert LEAN not in ways.served
    assert _comparable(res) == _comparable(alone)


def test_revision_pre_and_bearer_are_taken(app_client, ways):
    res = _post(
        app_client,
        GOOD["checkout"],
        revision="2026-10-15.pre",
        Authorization=f"Bearer {app_client.tenant.key}",
    )
    assert res.status_code == 202
    assert ways.served == [LEAN]


def test_a_key_without_the_scope_is_refused_as_before(app_client, ways, db):
    from cartback.core.clock import system_clock
    from cartback.store import workspaces

    _, secret = db.write_sync(
        lambda tx: workspaces.create_api_key(tx, app_client.tenant.id, system_clock.now(), scopes=("read",))
    )
    res = _post(app_client, GOOD["checkout"], key=secret)
    assert ways.served == [FASTAPI]
    assert res.status_code == 403
    assert "events:write" in res.json()["errors"][0]["detail"]


def test_other_methods_on_the_path_are_answered_by_fastapi(app_client, ways):
    res = app_client.http.get(
        "/api/events",
        headers={"Authorization": f"Klaviyo-API-Key {app_client.tenant.key}", "revision": REVISION},
    )
    assert res.status_code == 200
    assert ways.served == []
