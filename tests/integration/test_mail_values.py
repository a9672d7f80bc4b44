"""Values that become mail headers or links are checked where they come in, in-process on real SQLite and
PostgreSQL: a line break in a header value (which would add a header of the caller's choosing) and a
non-http(s) link are a 400 naming the field on every surface, and nothing is stored."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartback.store import workspaces
from cartback.store.tables import checkouts, events, messages, sequences, subscribers, transactional_templates

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user, open_app, sign_in

INJECTED = "Shop <shop@t1.example>\r\nX-Injected: 1"


def _count(app_client: Any) -> int:
    ws = app_client.tenant.id
    tables = (subscribers, events, checkouts, messages, sequences, transactional_templates)
    return app_client.http.app.state.services.db.read_sync(
        lambda tx: sum(
            tx.execute(sa.select(sa.func.count()).select_from(t).where(t.c.workspace_id == ws)).scalar()
            for t in tables
        )
    )


def _send(**fields: Any) -> dict[str, Any]:
    return {"to": "jane@shop.example", "subject": "Hi", "body": "<p>Hi</p>", **fields}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_send(**{"from": INJECTED}), "`from`"),
        (_send(**{"from": "Shop <shop@t1.example>, Other <x@t2.example>"}), "`from`"),
        (_send(fromEmail="shop@t1.example", fromName="Shop\r\nBcc: x@t2.example"), "`fromName`"),
        (_send(fromEmail="shop@t1.example\r\nBcc: x@t2.example"), "fromEmail"),
        (_send(replyTo="help@t1.example\nBcc: x@t2.example"), "`replyTo`"),
        (_send(replyTo="help@t1.example", replyToName="Help\rX: 1"), "`replyToName`"),
        (_send(subject="Hi\r\nBcc: x@t2.example"), "subject"),
        (_send(subject="Hi\x07there"), "subject"),
        (_send(headers={"X-Campaign": "spring\r\nBcc: x@t2.example"}), "headers.X-Campaign"),
    ],
)
def test_mail_values_header_line_breaks_on_transactional_send_are_400(
    app_client: Any, body: dict[str, Any], field: str
) -> None:
    res = app_client.post("/transactional/send", body)
    assert res.status_code == 400, res.text
    assert res.json()["success"] is False and field in res.json()["error"]
    assert _count(app_client) == 0


def test_mail_values_transactional_from_is_kept_in_its_normal_form(app_client: Any) -> None:
    res = app_client.post("/transactional/send", _send(**{"from": '"Shop, Inc." <Shop@T1.Example>'}))
    assert res.status_code == 200, res.text
    sent = app_client.get(f"/outbox/{res.json()['emailSendId']}").json()["message"]
    assert sent["from"] == '"Shop, Inc." <Shop@t1.example>'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "T", "subject": "Hi\r\nBcc: x@t2.example", "html": "<p>x</p>"}, "subject"),
        ({"name": "T", "subject": "Hi", "html": "<p>x</p>", "fromEmail": INJECTED}, "fromEmail"),
    ],
)
def test_mail_values_header_line_breaks_in_templates_are_400(
    app_client: Any, body: dict[str, Any], field: str
) -> None:
    res = app_client.post("/transactional", body)
    assert res.status_code == 400 and field in res.json()["error"], res.text
    assert _count(app_client) == 0


def _sequence(step: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "name": "Abandoned",
        "trigger": "event_received",
        "eventName": "ecommerce.checkout_started",
        "steps": [{"type": "email", "subject": "Your cart", "html": "<p>x</p>", **step}],
        **top,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_sequence({"subject": "Your cart\r\nBcc: x@t2.example"}), "steps[0].subject"),
        (_sequence({"fromName": "Shop\nBcc: x@t2.example", "fromEmail": "s@t1.example"}), "fromName"),
        (_sequence({"fromEmail": "s@t1.example;x@t2.example"}), "steps[0].fromEmail"),
        (_sequence({}, fromEmail=INJECTED), "fromEmail"),
        (_sequence({}, replyToName="Help\r\nX: 1", replyTo="h@t1.example"), "replyToName"),
    ],
)
def test_mail_values_header_line_breaks_in_sequence_steps_are_400(
    app_client: Any, body: dict[str, Any], field: str
) -> None:
    res = app_client.post("/sequences", body)
    assert res.status_code == 400 and field in res.json()["error"], res.text
    assert _count(app_client) == 0


def test_mail_values_dashboard_sender_with_a_line_break_is_a_form_error(db, db_url, make_workspace) -> None:
    tenant = make_workspace()
    with open_app(db_url) as client:
        token = sign_in(client, make_user(db, tenant.name))
        for name, address in [("Shop\r\nBcc: x@t2.example", "shop@t1.example"), ("Shop", INJECTED)]:
            res = client.post(
                "/app/settings/sender", data={"from_name": name, "from_email": address, "csrf_token": token}
            )
            assert res.status_code == 400, res.text
            assert "one line of text" in res.text or "not an email address" in res.text
    assert db.read_sync(lambda tx: workspaces.get_workspace(tx, tenant.id)).from_address is None


# -- links put in mail ---------------------------------------------------------------------------------

# The last: a host urlsplit cannot read (an IPv6 bracket left open).
BAD_URLS = [
    "javascript:alert(7)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "/checkout/1",
    "JavaScript:alert(7)",
    "http://[::1",
]


def _checkout(**fields: Any) -> dict[str, Any]:
    item = {"productId": "p1", "title": "Thing", "quantity": 1, "priceCents": 100, **fields.pop("item", {})}
    return {
        "checkoutId": "c1",
        "customer": {"email": "jane@shop.example"},
        "currency": "USD",
        "totalCents": 100,
        "items": [item],
        **fields,
    }


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda u: _checkout(checkoutUrl=u), "checkoutUrl"),
        (lambda u: _checkout(item={"url": u}), "items.0.url"),
        (lambda u: _checkout(item={"imageUrl": u}), "items.0.imageUrl"),
    ],
    ids=["checkoutUrl", "url", "imageUrl"],
)
def test_mail_values_non_http_urls_are_400_on_sequenzy(
    app_client: Any, url: str, make: Any, field: str
) -> None:
    res = app_client.post("/checkouts", make(url))
    assert res.status_code == 400 and field in res.json()["error"], res.text
    assert _count(app_client) == 0


def _klaviyo_checkout(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": properties,
                "metric": {"data": {"type": "metric", "attributes": {"name": "Started Checkout"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "jane@shop.example"}}},
            },
        }
    }


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize(
    ("properties", "pointer"),
    [
        (lambda u: {"checkout_url": u}, "/data/attributes/properties/checkout_url"),
        (
            lambda u: {"Items": [{"ProductName": "T", "ProductURL": u}]},
            "/data/attributes/properties/items/0/ProductURL",
        ),
        (
            lambda u: {"Items": [{"ProductName": "T", "ImageURL": u}]},
            "/data/attributes/properties/items/0/ImageURL",
        ),
    ],
    ids=["checkout_url", "ProductURL", "ImageURL"],
)
def test_mail_values_non_http_urls_are_400_on_klaviyo(
    app_client: Any, url: str, properties: Any, pointer: str
) -> None:
    res = app_client.http.post(
        "/api/events",
        json=_klaviyo_checkout(properties(url)),
        headers={"Authorization": f"Klaviyo-API-Key {app_client.tenant.key}", "revision": "2026-10-15"},
    )
    assert res.status_code == 400, res.text
    (error,) = res.json()["errors"]
    assert error["source"]["pointer"] == pointer
    assert _count(app_client) == 0


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize(
    ("properties", "field"),
    [
        (lambda u: {"checkout_id": "c1", "checkout_url": u}, "properties.checkout_url"),
        (lambda u: {"checkout_id": "c1", "products": [{"name": "T", "url": u}]}, "products[0].url"),
        (
            lambda u: {"checkout_id": "c1", "products": [{"name": "T", "image_url": u}]},
            "products[0].image_url",
        ),
    ],
    ids=["checkout_url", "url", "image_url"],
)
def test_mail_values_non_http_urls_are_400_on_segment(
    app_client: Any, url: str, properties: Any, field: str
) -> None:
    auth = "Basic " + base64.b64encode(f"{app_client.tenant.key}:".encode()).decode()
    body = {
        "userId": "u1",
        "event": "Checkout Started",
        "properties": properties(url),
        "context": {"traits": {"email": "jane@shop.example"}},
    }
    res = app_client.http.post("/v1/track", json=body, headers={"Authorization": auth})
    assert res.status_code == 400 and field in res.text, res.text
    assert _count(app_client) == 0
