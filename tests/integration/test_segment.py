"""The Segment-compatible /v1 API in-process on real SQLite and PostgreSQL: authentication, bodies (gzip,
malformed, zip bombs), the e-commerce mapping, idempotency by messageId, and a sequence defined through
the Sequenzy API running on Segment's events."""

from __future__ import annotations

import base64
import gzip
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cartback.store import events as event_store
from cartback.store.db import Database
from cartback.store.tables import checkouts, enrollments, events, messages, orders, subscribers
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@dataclass
class Shop:
    http: Any
    db: Database
    clock: FrozenClock
    workspace_id: str
    key: str

    def send(self, path: str, body: Any, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": basic(key or self.key), **kwargs.pop("headers", {})}
        if isinstance(body, bytes):
            headers.setdefault("Content-Type", "application/json")
            return self.http.post(path, content=body, headers=headers, **kwargs)
        return self.http.post(path, json=body, headers=headers, **kwargs)

    def batch(self, *messages: dict[str, Any]) -> httpx.Response:
        return self.send("/v1/batch", {"batch": list(messages)})

    def rows(self, table: sa.Table) -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(table).where(table.c.workspace_id == self.workspace_id).order_by(table.c.id)
            ).all()
        )

    def segment_events(self) -> list[Any]:
        return [e for e in self.rows(events) if e.source == "segment"]

    def run(self, **advance: float) -> None:
        if advance:
            self.clock.advance(**advance)
        run_until_idle(self.db, self.clock)


@pytest.fixture
def shop(db_url: str, db: Database, make_workspace: Any) -> Iterator[Shop]:
    """The app on a frozen clock with no worker of its own: the test runs the engine by hand."""
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings

    tenant = make_workspace()
    clock = FrozenClock(T0)
    app = create_app(Settings(database_url=db_url), clock=clock, run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield Shop(http, db, clock, tenant.id, tenant.key)


def track(event: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    message = {
        "type": "track",
        "event": event,
        "userId": "cust_1",
        "properties": properties,
        "context": {"traits": {"email": "jane@example.com"}},
        "messageId": str(uuid.uuid4()),
    }
    return {**message, **extra}


def identify(traits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": "cust_1", "traits": traits, "messageId": str(uuid.uuid4()), **extra}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is False and isinstance(body["code"], str) and body["message"], body
    return body


# -- authentication -------------------------------------------------------------------------------


def test_segment_auth_basic_or_write_key_and_401_otherwise(shop):
    ok = shop.batch(identify({"email": "jane@example.com"}))
    assert (ok.status_code, ok.json()) == (200, {"success": True})

    in_body = shop.http.post(
        "/v1/batch",
        json={"batch": [identify({"email": "x@example.com"}, userId="cust_x")], "writeKey": shop.key},
    )
    assert in_body.status_code == 200, in_body.text

    as_password = "Basic " + base64.b64encode(f":{shop.key}".encode()).decode()
    body = {"batch": [identify({"email": "p@example.com"}, userId="cust_p")]}
    assert shop.http.post("/v1/batch", json=body, headers={"Authorization": as_password}).status_code == 200

    cases = [
        {"Authorization": basic("wrong-key")},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Digest abc"},
        {},
    ]
    for headers in cases:
        refused = shop.http.post(
            "/v1/batch", json={"batch": [identify({"email": "y@example.com"})]}, headers=headers
        )
        assert refused.status_code == 401, (headers, refused.text)
        assert error_of(refused)["code"] == "unauthorized"
    wrong_in_body = shop.http.post(
        "/v1/batch", json={"batch": [identify({"email": "y@example.com"})], "writeKey": "nope"}
    )
    assert wrong_in_body.status_code == 401
    emails = sorted(s.email for s in shop.rows(subscribers))
    assert emails == ["jane@example.com", "p@example.com", "x@example.com"]


def test_segment_keys_stay_in_their_workspace(shop, make_workspace):
    other = make_workspace()
    assert (
        shop.send("/v1/batch", {"batch": [identify({"email": "o@example.com"})]}, key=other.key).status_code
        == 200
    )
    assert shop.rows(subscribers) == []


# -- bodies ---------------------------------------------------------------------------------------


def test_segment_gzip_bodies_are_inflated_within_the_limit(shop):
    raw = httpx.Request("POST", "/", json={"batch": [identify({"email": "gz@example.com"})]}).content
    ok = shop.send("/v1/batch", gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert ok.status_code == 200, ok.text
    assert [s.email for s in shop.rows(subscribers)] == ["gz@example.com"]

    # 64 MB of spaces compress to about 64 KB: refused once inflated past the body limit, not exhausted.
    bomb = gzip.compress(b'{"batch": [' + b" " * (64 * 1024 * 1024) + b"]}")
    assert len(bomb) < 1024 * 1024
    too_big = shop.send("/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert too_big.status_code == 413 and error_of(too_big)["code"] == "payload_too_large"

    broken = shop.send("/v1/batch", b"\x1f\x8b not gzip", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400 and "gzip" in error_of(broken)["message"]
    truncated = shop.send("/v1/batch", gzip.compress(raw)[:-10], headers={"Content-Encoding": "gzip"})
    assert truncated.status_code == 400

    nul = gzip.compress(b'{"batch": [{"type": "identify", "userId": "a\\u0000b"}]}')
    assert shop.send("/v1/batch", nul, headers={"Content-Encoding": "gzip"}).status_code == 400
    brotli = shop.send("/v1/batch", raw, headers={"Content-Encoding": "br"})
    assert brotli.status_code == 415
    assert len(shop.rows(subscribers)) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"batch": {}}',
        b'{"batch": [1]}',
        b'{"batch": [{"type": "nope", "userId": "u"}]}',
        b'{"batch": [{"type": "track", "userId": "u"}]}',
        b'{"batch": [{"type": "track", "event": "X"}]}',
        b'{"batch": [{"type": "identify", "userId": "u", "traits": {"email": "not-an-email"}}]}',
        b'{"batch": [{"type": "identify", "userId": "u", "timestamp": "yesterday"}]}',
        b'{"batch": [{"type": "track", "event": "Order Completed", "userId": "u", "properties": {}}]}',
        b'{"batch": [{"type": "track", "event": "X", "userId": "u", '
        b'"properties": {"products": [{"price": "a"}]}}]}',
        b'{"batch": [{"type": "track", "event": "X", "userId": "u", "properties": {"currency": "dollars"}}]}',
        b'{"batch": [{"type": "alias", "userId": "u"}]}',
    ],
)
def test_segment_bad_input_is_a_400_never_retryable(shop, body):
    response = shop.send("/v1/batch", body)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "invalid_request"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
        {},
    ],
    ids=["json", "text-plain", "form-gzip", "untyped"],
)
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/v1/t"])
def test_segment_malformed_json_is_answered_with_its_line_and_column(shop, path, headers):
    """The error handler once read the body again from the original request, which the Segment route had
    already drained through its own decoding request: the answer then waited forever for a body."""
    raw = b'{"batch": [\n  {"type": "track" "event": "X"}]}'
    body = gzip.compress(raw) if headers.get("Content-Encoding") == "gzip" else raw
    response = shop.send(path, body, headers=headers)
    assert response.status_code == 400, response.text
    assert "line 2, column 20" in error_of(response)["message"], response.text


def test_segment_one_invalid_message_refuses_the_whole_batch(shop):
    good = identify({"email": "jane@example.com"})
    bad = track("Order Completed", {"total": 10})  # no order_id
    response = shop.batch(good, bad)
    assert response.status_code == 400
    assert "batch[1]" in error_of(response)["message"]
    assert shop.rows(subscribers) == []
    assert shop.batch(good).status_code == 200
    assert len(shop.rows(subscribers)) == 1


def test_segment_track_and_identify_endpoints(shop):
    body = {"userId": "cust_9", "traits": {"email": "nine@example.com", "name": "Nina Simone", "vip": True}}
    assert shop.send("/v1/identify", body).status_code == 200
    assert (
        shop.send("/v1/track", {"userId": "cust_9", "event": "Viewed", "type": "identify"}).status_code == 200
    )
    [sub] = shop.rows(subscribers)
    assert (sub.email, sub.external_id, sub.first_name, sub.last_name) == (
        "nine@example.com",
        "cust_9",
        "Nina",
        "Simone",
    )
    assert sub.attributes == {"name": "Nina Simone", "vip": True}
    [event] = shop.segment_events()
    assert (event.name, event.subscriber_id) == ("Viewed", sub.id)
    assert shop.send("/v1/track", {"userId": "cust_9"}).status_code == 400
    assert shop.send("/v1/alias", {"userId": "cust_9"}).status_code == 400


def test_segment_bodies_of_real_clients_are_json_whatever_their_content_type(shop):
    """RudderStack's Node SDK gzips its JSON and axios labels it form-urlencoded; Segment's browser library
    sends text/plain (a CORS-simple type); some senders set no Content-Type at all."""
    raw = httpx.Request(
        "POST", "/", json={"batch": [identify({"email": "rudder@example.com"}, userId="cust_r")]}
    ).content
    rudder = shop.send(
        "/v1/batch",
        gzip.compress(raw),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
    )
    assert rudder.status_code == 200, rudder.text

    browser = {**track("Viewed", {}, userId="cust_2"), "writeKey": shop.key}
    plain = shop.http.post(
        "/v1/batch",
        content=httpx.Request("POST", "/", json={"batch": [browser], "writeKey": shop.key}).content,
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert plain.status_code == 200, plain.text

    untyped = httpx.Request(
        "POST", "/", json={"batch": [identify({"email": "bare@example.com"}, userId="cust_b")]}
    ).content
    bare = shop.http.post("/v1/batch", content=untyped, headers={"Authorization": basic(shop.key)})
    assert "content-type" not in bare.request.headers
    assert bare.status_code == 200, bare.text

    assert {s.email for s in shop.rows(subscribers)} == {
        "rudder@example.com",
        "jane@example.com",
        "bare@example.com",
    }
    assert [e.name for e in shop.segment_events()] == ["Viewed"]

    # Still JSON or nothing: a body that is not JSON is a 400 whatever its label.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ctype} if ctype else {}
        refused = shop.send("/v1/batch", b"batch=1&writeKey=x", headers=headers)
        assert refused.status_code == 400, (ctype, refused.text)
        assert error_of(refused)["code"] == "invalid_request"
    # Other APIs keep insisting on JSON.
    sequenzy = shop.http.post(
        "/api/v1/subscribers",
        content=b'{"email": "s@example.com"}',
        headers={"Authorization": f"Bearer {shop.key}", "Content-Type": "text/plain"},
    )
    assert sequenzy.status_code == 415


def test_segment_short_paths_of_the_browser_library(shop):
    """analytics.js posts each call to /v1/ plus the first letter of its type, and batches to /v1/b; the
    write key is in the body."""
    who = {"anonymousId": "anon_1", "writeKey": shop.key}
    calls = {
        "/v1/i": {**who, "type": "identify", "userId": "u1", "traits": {"email": "short@example.com"}},
        "/v1/t": {**who, "type": "track", "userId": "u1", "event": "Viewed Hat"},
        "/v1/p": {**who, "type": "page", "userId": "u1", "name": "Home", "properties": {"path": "/"}},
        "/v1/s": {**who, "type": "screen", "userId": "u1", "name": "Cart"},
        "/v1/g": {**who, "type": "group", "userId": "u1", "groupId": "acme", "traits": {"plan": "team"}},
        "/v1/a": {**who, "type": "alias", "userId": "u1", "previousId": "anon_0"},
        "/v1/b": {
            "writeKey": shop.key,
            "batch": [{"type": "track", "userId": "u1", "event": "Batched", "messageId": "m-b"}],
        },
    }
    for path, body in calls.items():
        content = httpx.Request("POST", "/", json={**body, "sentAt": T0.isoformat()}).content
        response = shop.http.post(path, content=content, headers={"Content-Type": "text/plain"})
        assert (response.status_code, response.json()) == (200, {"success": True}), (path, response.text)
    [sub] = shop.rows(subscribers)
    assert (sub.email, sub.external_id) == ("short@example.com", "u1")
    assert sorted(e.name for e in shop.segment_events()) == [
        "Batched",
        "Viewed Hat",
        "group.joined",
        "page.viewed",
        "screen.viewed",
    ]


def test_segment_browsers_may_post_from_any_origin(shop):
    """analytics.js posts from the shop's pages; its Authorization header makes the browser send a
    preflight first. The other APIs answer no CORS."""
    asked = {
        "Origin": "https://shop.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    preflight = shop.http.options("/v1/t", headers=asked)
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    posted = shop.send("/v1/t", track("Viewed", {}), headers={"Origin": "https://shop.example.com"})
    assert posted.status_code == 200
    assert posted.headers["access-control-allow-origin"] == "*"
    other = shop.http.options("/api/v1/subscribers", headers=asked)
    assert "access-control-allow-origin" not in other.headers


def test_segment_page_screen_and_group_calls_are_stored_as_events(shop):
    page = {
        "userId": "cust_1",
        "name": "Pricing",
        "category": "Docs",
        "properties": {"path": "/pricing", "url": "https://shop.example.com/pricing", "title": "Pricing"},
        "context": {"traits": {"email": "jane@example.com"}},
        "messageId": "m-page",
    }
    screen = {"userId": "cust_1", "name": "Cart", "properties": {"items": 2}, "messageId": "m-screen"}
    group = {
        "userId": "cust_1",
        "groupId": "acme",
        "traits": {"name": "Acme", "plan": "team"},
        "messageId": "m-g",
    }
    for path, body in (("/v1/page", page), ("/v1/screen", screen), ("/v1/group", group)):
        response = shop.send(path, body)
        assert (response.status_code, response.json()) == (200, {"success": True}), (path, response.text)
    in_batch = {"type": "page", "userId": "cust_1", "name": "Home", "messageId": "m-page-2"}
    assert shop.batch(in_batch, {**page, "type": "page"}).status_code == 200  # m-page again: a replay

    [sub] = shop.rows(subscribers)
    stored = {e.idempotency_key: e for e in shop.segment_events()}
    assert {k: (e.name, e.subscriber_id) for k, e in stored.items()} == {
        "segment:m-page": ("page.viewed", sub.id),
        "segment:m-screen": ("screen.viewed", sub.id),
        "segment:m-g": ("group.joined", sub.id),
        "segment:m-page-2": ("page.viewed", sub.id),
    }
    assert stored["segment:m-page"].properties == {
        "name": "Pricing",
        "category": "Docs",
        "path": "/pricing",
        "url": "https://shop.example.com/pricing",
        "title": "Pricing",
    }
    assert stored["segment:m-screen"].properties == {"name": "Cart", "items": 2}
    assert stored["segment:m-g"].properties == {"groupId": "acme", "traits": {"name": "Acme", "plan": "team"}}
    # The group's traits describe the group, not the person; the person learns which group they are in.
    assert sub.attributes == {"groupId": "acme"}
    assert shop.send("/v1/group", {"userId": "cust_1"}).status_code == 400


def test_segment_context_traits_are_kept_beside_top_level_traits(shop):
    """RudderStack's Python SDK sends identify traits only in context.traits; top-level traits win where
    both name a trait."""
    rudder = {
        "type": "identify",
        "userId": "cust_1",
        "context": {"traits": {"email": "jane@example.com", "firstName": "Jane", "plan": "pro", "seats": 3}},
        "messageId": "m-1",
    }
    both = identify({"plan": "enterprise"}, context={"traits": {"plan": "pro", "region": "eu"}})
    assert shop.batch(rudder).status_code == 200
    [sub] = shop.rows(subscribers)
    assert (sub.email, sub.first_name, sub.attributes) == (
        "jane@example.com",
        "Jane",
        {"plan": "pro", "seats": 3},
    )
    assert shop.batch(both).status_code == 200
    assert shop.rows(subscribers)[0].attributes == {"plan": "enterprise", "seats": 3, "region": "eu"}
    # A track's context.traits are the person's traits at that moment too.
    assert (
        shop.batch(
            track("Viewed", {}, context={"traits": {"email": "jane@example.com", "tier": 2}})
        ).status_code
        == 200
    )
    assert shop.rows(subscribers)[0].attributes["tier"] == 2


# -- the e-commerce mapping -----------------------------------------------------------------------


def test_segment_products_become_items_in_exact_cents(shop):
    products = [
        {"product_id": "p1", "name": "Tee", "price": 19.99, "quantity": 3, "image_url": "https://i/1.png"},
        {"sku": "MUG", "name": "Mug", "price": "0.1"},
    ]
    started = track(
        "Checkout Started", {"cart_id": "cart_7", "value": 60.07, "currency": "usd", "products": products}
    )
    yen = track(
        "Checkout Started",
        {
            "checkout_id": "jp_1",
            "total": 1500,
            "currency": "JPY",
            "products": [{"name": "Tea", "price": 1500}],
        },
    )
    added = track(
        "Product Added",
        {"product_id": "p1", "name": "Tee", "price": 0.29, "quantity": 2, "url": "https://s/p1"},
    )
    assert shop.batch(started, yen, added).status_code == 200

    by_id = {c.checkout_id: c for c in shop.rows(checkouts)}
    cart = by_id["cart_7"]
    assert (cart.total_cents, cart.currency) == (6007, "USD")
    assert cart.items == [
        {"productId": "p1", "title": "Tee", "quantity": 3, "priceCents": 1999, "imageUrl": "https://i/1.png"},
        {"productId": "MUG", "title": "Mug", "quantity": 1, "priceCents": 10, "sku": "MUG"},
    ]
    assert (by_id["jp_1"].total_cents, by_id["jp_1"].items[0]["priceCents"]) == (1500, 1500)
    product_added = next(e for e in shop.segment_events() if e.name == "ecommerce.product_added")
    assert product_added.properties["items"] == [
        {"productId": "p1", "title": "Tee", "quantity": 2, "priceCents": 29, "url": "https://s/p1"}
    ]
    checkout_event = next(e for e in shop.segment_events() if e.properties.get("checkoutId") == "cart_7")
    assert checkout_event.name == "ecommerce.checkout_started"
    assert checkout_event.properties["items"][0]["title"] == "Tee"


def test_segment_currency_must_be_an_iso_4217_code(shop):
    refused = shop.batch(track("Order Completed", {"order_id": "o1", "total": 5, "currency": "XYZ"}))
    assert refused.status_code == 400
    assert "batch[0].properties.currency" in error_of(refused)["message"]
    assert shop.rows(subscribers) == []
    assert (
        shop.batch(track("Order Completed", {"order_id": "o1", "total": 5, "currency": "sek"})).status_code
        == 200
    )
    assert shop.rows(orders)[0].currency == "SEK"


def test_segment_checkout_id_falls_back_to_the_message_id(shop):
    started = track("Checkout Started", {"value": 5})
    assert shop.batch(started).status_code == 200
    assert [c.checkout_id for c in shop.rows(checkouts)] == [started["messageId"]]


def test_segment_order_events_follow_one_order(shop):
    placed = track(
        "Order Completed",
        {"order_id": "o1", "checkout_id": "c1", "total": 100, "revenue": 90, "currency": "EUR"},
    )
    partial = track("Order Refunded", {"order_id": "o1", "total": 25})
    assert shop.batch(placed, partial).status_code == 200
    [order] = shop.rows(orders)
    assert (
        order.status,
        order.total_cents,
        order.currency,
        order.refund_amount_cents,
        order.checkout_id,
    ) == (
        "refunded",
        10000,
        "EUR",
        2500,
        "c1",
    )
    assert shop.batch(track("Order Cancelled", {"order_id": "o1"})).status_code == 200
    assert shop.rows(orders)[0].status == "cancelled"
    names = [e.name for e in shop.segment_events()]
    assert sorted(names) == [
        "ecommerce.order_cancelled",
        "ecommerce.order_placed",
        "ecommerce.order_refunded",
    ]


def test_segment_message_id_is_the_idempotency_key(shop):
    first = identify({"email": "jane@example.com", "firstName": "Jane"})
    order = track("Order Completed", {"order_id": "o9", "total": 10})
    assert shop.batch(first, order, order).status_code == 200
    assert shop.batch(identify({"firstName": "Janet"})).status_code == 200
    before = (shop.rows(subscribers), shop.rows(events), shop.rows(orders))
    assert shop.batch(first, order).status_code == 200
    assert (shop.rows(subscribers), shop.rows(events), shop.rows(orders)) == before
    assert before[0][0].first_name == "Janet"


def test_segment_times_come_from_timestamp_or_skew_corrected_original_timestamp(shop):
    at = T0 - timedelta(minutes=10)
    stamped = track("Viewed", {}, timestamp=at.isoformat())
    skewed = track("Clicked", {}, originalTimestamp="2030-01-01T00:00:05Z", sentAt="2030-01-01T00:00:10Z")
    future = track("Scrolled", {}, timestamp="2031-01-01T00:00:00Z")
    old = track("Checkout Started", {"checkout_id": "old"}, timestamp=(T0 - timedelta(days=3)).isoformat())
    assert shop.batch(stamped, skewed, future, old).status_code == 200
    when = {e.name: (e.occurred_at, e.historical) for e in shop.segment_events()}
    assert when["Viewed"] == (at, False)
    assert when["Clicked"] == (T0 - timedelta(seconds=5), False)
    assert when["Scrolled"] == (T0, False)
    assert when["ecommerce.checkout_started"] == (T0 - timedelta(days=3), True)


# -- automations ----------------------------------------------------------------------------------

ABANDONED = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": "ecommerce.order_placed",
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "steps": [
        {
            "type": "email",
            "delay": {"hours": 1},
            "subject": "You left {{ event.items[0].title }}",
            "html": "<a href='{{ event.checkoutUrl }}'>back</a>",
        }
    ],
}


def test_sequenzy_sequence_runs_on_segment_checkouts_and_stops_on_their_order(shop):
    bearer = {"Authorization": f"Bearer {shop.key}"}
    created = shop.http.post("/api/v1/sequences", json=ABANDONED, headers=bearer)
    assert created.status_code == 200, created.text
    seq_id = created.json()["sequence"]["id"]
    assert shop.http.post(f"/api/v1/sequences/{seq_id}/enable", headers=bearer).status_code == 200

    def started(checkout_id: str, email: str, **extra: Any) -> dict[str, Any]:
        return track(
            "Checkout Started",
            {
                "checkout_id": checkout_id,
                "value": 25,
                "currency": "USD",
                "checkout_url": f"https://shop.example.com/c/{checkout_id}",
                "products": [{"product_id": "p1", "name": "Logo tee", "price": 25}],
            },
            userId=f"user_{email}",
            context={"traits": {"email": email}},
            **extra,
        )

    old = started("old", "old@example.com", timestamp=(T0 - timedelta(days=2)).isoformat())
    assert (
        shop.batch(started("A", "ann@example.com"), started("B", "bob@example.com"), old).status_code == 200
    )
    shop.run()
    assert sorted(e.status for e in shop.rows(enrollments)) == ["active", "active"]  # not the historical one
    bob_order = track(
        "Order Completed",
        {"order_id": "oB", "checkout_id": "B", "total": 25},
        userId="user_bob@example.com",
        context={"traits": {"email": "bob@example.com"}},
    )
    assert shop.batch(bob_order).status_code == 200
    shop.run(minutes=61)
    sent = shop.rows(messages)
    assert [m.to_email for m in sent] == ["ann@example.com"]
    assert sent[0].subject == "You left Logo tee"
    statuses = {e.stop_reason is not None: e.status for e in shop.rows(enrollments)}
    assert statuses == {False: "completed", True: "stopped"}


# -- anonymous profiles ---------------------------------------------------------------------------


def anonymous(event: str, properties: dict[str, Any], anonymous_id: str = "anon_1") -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "anonymousId": anonymous_id,
        "properties": properties,
        "messageId": str(uuid.uuid4()),
    }


def test_segment_anonymous_calls_are_kept_on_an_anonymous_subscriber(shop):
    assert shop.batch(anonymous("Product Viewed", {"product_id": "p1"})).status_code == 200
    assert shop.batch(anonymous("Checkout Started", {"checkout_id": "c1", "value": 10})).status_code == 200
    [anon] = shop.rows(subscribers)
    assert (anon.email, anon.external_id, anon.anonymous_id) == (None, None, "anon_1")
    assert {e.subscriber_id for e in shop.segment_events()} == {anon.id}
    assert [c.subscriber_id for c in shop.rows(checkouts)] == [anon.id]

    # Nobody else known yet: identify turns the anonymous subscriber into Jane.
    link = identify({"email": "jane@example.com"}, anonymousId="anon_1")
    assert shop.batch(link).status_code == 200
    [jane] = shop.rows(subscribers)
    assert (jane.id, jane.email, jane.external_id, jane.anonymous_id) == (
        anon.id,
        "jane@example.com",
        "cust_1",
        "anon_1",
    )


def test_segment_identify_merges_the_anonymous_profile_into_the_known_subscriber(shop):
    bearer = {"Authorization": f"Bearer {shop.key}"}
    jane_body = {"email": "jane@example.com", "firstName": "Jane", "tags": ["vip"]}
    jane_body["customAttributes"] = {"plan": "gold"}
    assert shop.http.post("/api/v1/subscribers", json=jane_body, headers=bearer).status_code == 200
    assert shop.batch(identify({"email": "jane@example.com"})).status_code == 200  # userId cust_1
    [jane] = shop.rows(subscribers)

    viewed = anonymous("Product Viewed", {"product_id": "p1"})
    started = anonymous("Checkout Started", {"checkout_id": "c1", "value": 10})
    placed = anonymous("Order Completed", {"order_id": "o1", "checkout_id": "c1", "total": 10})
    traits = {"type": "identify", "anonymousId": "anon_1", "traits": {"plan": "free", "lastName": "Doe"}}
    assert shop.batch(viewed, started, placed, {**traits, "messageId": "m-anon-traits"}).status_code == 200
    anon = next(s for s in shop.rows(subscribers) if s.id != jane.id)
    assert anon.anonymous_id == "anon_1" and anon.attributes["plan"] == "free"

    assert shop.batch(identify({}, anonymousId="anon_1")).status_code == 200
    [merged] = shop.rows(subscribers)
    assert merged.id == jane.id
    assert (merged.email, merged.external_id, merged.anonymous_id) == ("jane@example.com", "cust_1", "anon_1")
    assert (merged.first_name, merged.last_name) == ("Jane", "Doe")
    # The known subscriber's own attributes win; her orders are counted.
    assert merged.attributes["plan"] == "gold" and merged.attributes["ordersCount"] == 1
    assert {(e.subscriber_id, e.subscriber_key) for e in shop.rows(events)} == {
        (jane.id, event_store.subscriber_key(jane.id))
    }
    assert [c.subscriber_id for c in shop.rows(checkouts)] == [jane.id]
    assert [o.subscriber_id for o in shop.rows(orders)] == [jane.id]
    tags = shop.http.get("/api/v1/subscribers/jane@example.com", headers=bearer).json()["subscriber"]["tags"]
    assert tags == ["vip"]

    # Later anonymous calls with that id land on Jane directly.
    assert shop.batch(anonymous("Product Viewed", {"product_id": "p2"})).status_code == 200
    assert len(shop.rows(subscribers)) == 1
    assert {e.subscriber_id for e in shop.rows(events)} == {jane.id}


def test_segment_two_identified_people_are_never_merged(shop):
    alice = identify({"email": "alice@example.com"}, userId="alice", anonymousId="shared_device")
    bob = identify({"email": "bob@example.com"}, userId="bob", anonymousId="shared_device")
    assert shop.batch(alice).status_code == 200
    assert shop.batch(bob).status_code == 200
    rows = {s.external_id: s for s in shop.rows(subscribers)}
    assert set(rows) == {"alice", "bob"}
    assert (rows["alice"].email, rows["alice"].anonymous_id) == ("alice@example.com", "shared_device")
    assert (rows["bob"].email, rows["bob"].anonymous_id) == ("bob@example.com", None)


def test_segment_alias_links_an_anonymous_id_or_an_earlier_user_id(shop):
    def alias(previous: str, user: str) -> dict[str, Any]:
        return {"type": "alias", "previousId": previous, "userId": user, "messageId": str(uuid.uuid4())}

    assert shop.batch(anonymous("Product Viewed", {}, anonymous_id="a1")).status_code == 200
    assert shop.batch(identify({"email": "kim@example.com"}, userId="kim")).status_code == 200
    assert shop.batch(alias("a1", "kim")).status_code == 200
    [kim] = shop.rows(subscribers)
    assert (kim.external_id, kim.anonymous_id) == ("kim", "a1")
    assert {e.subscriber_id for e in shop.rows(events)} == {kim.id}

    # An earlier userId is renamed; an alias of two unknown ids creates the link for later calls.
    assert shop.batch(alias("kim", "kim-2")).status_code == 200
    assert [s.external_id for s in shop.rows(subscribers)] == ["kim-2"]
    assert shop.send("/v1/alias", {"previousId": "a2", "userId": "lee"}).status_code == 200
    assert shop.batch(anonymous("Product Viewed", {}, anonymous_id="a2")).status_code == 200
    lee = next(s for s in shop.rows(subscribers) if s.external_id == "lee")
    assert lee.anonymous_id == "a2"
    assert len([e for e in shop.segment_events() if e.subscriber_id == lee.id]) == 1


def test_segment_anonymous_checkout_is_emailed_once_identified(shop):
    bearer = {"Authorization": f"Bearer {shop.key}"}
    seq_id = shop.http.post("/api/v1/sequences", json=ABANDONED, headers=bearer).json()["sequence"]["id"]
    assert shop.http.post(f"/api/v1/sequences/{seq_id}/enable", headers=bearer).status_code == 200
    cart = {
        "checkout_id": "anon_cart",
        "value": 25,
        "checkout_url": "https://shop.example.com/c/anon_cart",
        "products": [{"product_id": "p1", "name": "Logo tee", "price": 25}],
    }
    assert shop.batch(anonymous("Checkout Started", cart)).status_code == 200
    shop.run()
    [enrollment] = shop.rows(enrollments)
    assert (
        shop.batch(identify({"email": "late@example.com"}, userId="late", anonymousId="anon_1")).status_code
        == 200
    )
    shop.run(minutes=61)
    assert [m.to_email for m in shop.rows(messages)] == ["late@example.com"]
    assert [e.id for e in shop.rows(enrollments)] == [enrollment.id]


def test_segment_merge_cancels_the_welcome_run_of_the_anonymous_profile(shop):
    bearer = {"Authorization": f"Bearer {shop.key}"}
    welcome = {
        "name": "welcome",
        "trigger": "contact_added",
        "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Welcome", "text": "hi"}],
    }
    seq_id = shop.http.post("/api/v1/sequences", json=welcome, headers=bearer).json()["sequence"]["id"]
    assert shop.http.post(f"/api/v1/sequences/{seq_id}/enable", headers=bearer).status_code == 200
    assert shop.batch(identify({"email": "jane@example.com"})).status_code == 200
    shop.run()
    shop.run(hours=2)
    assert [m.subject for m in shop.rows(messages)] == ["Welcome"]

    assert shop.batch(anonymous("Product Viewed", {})).status_code == 200
    shop.run()
    assert sorted(e.status for e in shop.rows(enrollments)) == ["active", "completed"]
    assert shop.batch(identify({}, anonymousId="anon_1")).status_code == 200
    shop.run(hours=2)
    assert [m.subject for m in shop.rows(messages)] == ["Welcome"]
    ended = {e.status: e.stop_reason for e in shop.rows(enrollments)}
    assert ended == {"completed": None, "cancelled": "merged into a known subscriber"}


def test_segment_error_statuses_follow_the_clients_retry_rules():
    from cartback import errors
    from cartback.api import segment

    # What the client retries (429, 5xx) only for what a retry can fix.
    assert segment.render_error(errors.InvalidInput("x")).status_code == 400
    assert segment.render_error(errors.Unauthorized()).status_code == 401
    assert segment.render_error(errors.PayloadTooLarge()).status_code == 413
    assert segment.render_error(errors.Conflict()).status_code == 503
    assert segment.render_error(errors.Unavailable()).status_code == 503
