"""Store connectors end to end: a running `cartback serve` takes a platform's signed webhooks, sends the
abandoned-checkout email to a real SMTP sink, and the platform's order stops the run and is attributed to
the email that was clicked; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from tests.connector_hooks import (
    payload,
    raw,
    shopify_customer,
    shopify_headers,
    stripe_headers,
    woo_headers,
    woo_order,
)

from cartback.core import connectors
from cartback.core.clock import system_clock
from cartback.store.tables import attributions, enrollments, events, orders

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from test_smtp_delivery import Api, env_for, wait

from smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

SERVER_SECRET = secrets.token_urlsafe(32)

SEQUENCE = {
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
            "delay": {"minutes": 0.01},
            "subject": "You left {{ event.items.size }} items behind",
            "html": "<ul>{% for item in event.items %}<li>{{ item.title }} x{{ item.quantity }}</li>"
            "{% endfor %}</ul><p>{{ event.checkoutUrl }}</p>"
            "<a href='{{ event.checkoutUrl }}'>Back to your cart</a>",
        },
        {"type": "email", "delay": {"hours": 24}, "subject": "Still thinking?", "html": "<p>Last call</p>"},
    ],
}


@dataclass
class Platform:
    name: str
    secret: str
    # (body, headers) of the abandoned checkout and of the order that follows
    checkout: Callable[[str], tuple[bytes, dict[str, str]]]
    order: Callable[[str], tuple[bytes, dict[str, str]]]
    email: str
    order_id: str
    checkout_url: str
    titles: tuple[str, ...]


def _shopify(topic: str, name: str) -> Callable[[str], tuple[bytes, dict[str, str]]]:
    def make(secret: str) -> tuple[bytes, dict[str, str]]:
        body = raw(payload("shopify", name))
        return body, shopify_headers(body, secret, topic)

    return make


def _stripe(name: str) -> Callable[[str], tuple[bytes, dict[str, str]]]:
    def make(secret: str) -> tuple[bytes, dict[str, str]]:
        body = raw(payload("stripe", name))
        return body, stripe_headers(body, secret)

    return make


def _woo(status: str, topic: str) -> Callable[[str], tuple[bytes, dict[str, str]]]:
    def make(secret: str) -> tuple[bytes, dict[str, str]]:
        body = raw(woo_order(status))
        return body, woo_headers(body, secret, topic)

    return make


PLATFORMS = {
    "shopify": Platform(
        "shopify",
        "shpss_e2e_secret",
        _shopify("checkouts/create", "checkouts_create"),
        _shopify("orders/create", "orders_create"),
        "example@email.com",
        "820982911946154508",
        "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token",
        ("IPod Nano - 8GB x1", "IPod Touch 8GB x1"),
    ),
    "stripe": Platform(
        "stripe",
        "whsec_e2e_secret",
        _stripe("checkout_session_expired"),
        _stripe("checkout_session_completed"),
        "jenny.rosen@example.com",
        "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "https://buy.stripe.com/r/live_YWNjdF8xMDA1",
        (),
    ),
    "woocommerce": Platform(
        "woocommerce",
        "woo-e2e-secret",
        _woo("pending", "order.created"),
        _woo("processing", "order.updated"),
        "john.doe@example.com",
        "727",
        "https://example.com/checkout/order-pay/727/?pay_for_order=true&key=wc_order_58d2d042d1d",
        ("Woo Single #1 x2",),
    ),
}


def _recover(platform: Platform, db: Any, db_url: str, start_server: Any, make_workspace: Any) -> None:
    tenant = make_workspace()
    sealer = connectors.Sealer(SERVER_SECRET)
    made = db.write_sync(
        lambda tx: connectors.add(
            tx, sealer, tenant.name, platform.name, platform.secret, "", system_clock.now()
        )
    )
    with SmtpSink() as sink:
        server = start_server(db_url, env=env_for(sink, CARTBACK_SECRET_KEY=SERVER_SECRET))
        api = Api(server, tenant.key)
        api.active_sequence({**SEQUENCE, "name": f"{platform.name} abandoned checkout"})
        api.http.close()
        hook = f"{server.url}/hooks/{platform.name}/{made.id}"

        body, headers = platform.checkout(platform.secret)
        forged = httpx.post(hook, content=body, headers={**headers, **platform.checkout("forged")[1]})
        assert forged.status_code == 401
        res = httpx.post(hook, content=body, headers=headers)
        assert res.status_code == 200 and res.json()["applied"], res.text

        got = wait(lambda: [m for m in sink.received if m.rcpt_tos == [platform.email]], what="the email")
        mail = got[0].message
        text = mail.get_body(("plain",)).get_content()
        html = mail.get_body(("html",)).get_content()
        assert platform.checkout_url in text
        for title in platform.titles:
            assert title in text
        # The shopper clicks through to the checkout: the tracked link redirects there.
        href = re.search(r"href=['\"]([^'\"]*/t/c/[^'\"]+)['\"]", html)
        assert href is not None, html
        click = httpx.get(server.url + urlsplit(href.group(1)).path, follow_redirects=False)
        assert click.status_code == 302 and click.headers["location"] == platform.checkout_url

        body, headers = platform.order(platform.secret)
        res = httpx.post(hook, content=body, headers=headers)
        assert res.status_code == 200 and res.json()["applied"], res.text

        def stopped() -> Any:
            return db.read_sync(
                lambda tx: (
                    tx.execute(
                        sa.select(enrollments.c.status).where(enrollments.c.workspace_id == tenant.id)
                    ).scalar_one()
                    == "stopped"
                )
            )

        wait(stopped, what="the run stopped by the order")
        attributed = wait(
            lambda: db.read_sync(
                lambda tx: tx.execute(
                    sa.select(attributions.c.order_id).where(attributions.c.workspace_id == tenant.id)
                ).all()
            ),
            what="the order attributed",
        )
        assert [a.order_id for a in attributed] == [platform.order_id]
        assert len([m for m in sink.received if m.rcpt_tos == [platform.email]]) == 1


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_connector_abandoned_checkout_is_emailed_and_its_order_stops_and_is_attributed(
    name, db, db_url, start_server, make_workspace
):
    _recover(PLATFORMS[name], db, db_url, start_server, make_workspace)


def test_connector_shopper_unsubscribed_in_shopify_gets_no_mail_until_subscribed_again(
    db, db_url, start_server, make_workspace
):
    """customers/update with `unsubscribed` suppresses the address: the abandoned checkout that follows
    sends nothing, while another shopper's does; a later subscribe in Shopify re-consents, and the next
    checkout is emailed."""
    platform = PLATFORMS["shopify"]
    tenant = make_workspace()
    sealer = connectors.Sealer(SERVER_SECRET)
    made = db.write_sync(
        lambda tx: connectors.add(tx, sealer, tenant.name, "shopify", platform.secret, "", system_clock.now())
    )
    shopper, control = platform.email, "control@email.com"

    def post(data: dict[str, Any], topic: str) -> None:
        body = raw(data)
        res = httpx.post(hook, content=body, headers=shopify_headers(body, platform.secret, topic))
        assert res.status_code == 200 and res.json()["applied"], res.text

    def cart(token: str, email: str) -> dict[str, Any]:
        data = payload("shopify", "checkouts_create")
        data["token"], data["email"] = token, email
        data["abandoned_checkout_url"] = f"https://checkout.local/checkouts/{token}/recover"
        return data

    def to(address: str) -> list[Any]:
        return [m for m in sink.received if m.rcpt_tos == [address]]

    with SmtpSink() as sink:
        server = start_server(db_url, env=env_for(sink, CARTBACK_SECRET_KEY=SERVER_SECRET))
        api = Api(server, tenant.key)
        sequence_id = api.active_sequence({**SEQUENCE, "name": "shopify abandoned checkout"})
        hook = f"{server.url}/hooks/shopify/{made.id}"

        post(
            shopify_customer("unsubscribed", system_clock.now() - timedelta(minutes=1), shopper),
            "customers/update",
        )
        post(cart("held-1", shopper), "checkouts/create")
        post(cart("control-1", control), "checkouts/create")
        wait(lambda: to(control), what="the other shopper's email")

        def dispatched() -> bool:
            query = sa.select(sa.func.count()).where(
                events.c.workspace_id == tenant.id,
                events.c.name == "ecommerce.checkout_started",
                events.c.dispatched_at.is_not(None),
            )
            return bool(db.read_sync(lambda tx: tx.execute(query).scalar_one()) == 2)

        wait(dispatched, what="both checkouts dispatched")
        why = api.get(f"/sequences/{sequence_id}/explain", email=shopper)
        assert [(d["enrolled"], d["reason"]) for d in why["events"]] == [
            (False, "subscriber is unsubscribed")
        ]
        assert to(shopper) == []

        # Subscribed again in Shopify, after the unsubscribe: the next abandoned checkout is emailed.
        post(shopify_customer("subscribed", system_clock.now(), shopper), "customers/update")
        post(cart("after-1", shopper), "checkouts/create")
        [mail] = wait(lambda: to(shopper), what="the re-subscribed shopper's email")
        assert "/checkouts/after-1/recover" in mail.message.get_body(("plain",)).get_content()
        api.http.close()


def test_connector_bigcommerce_status_update_cancels_the_order_sent_through_the_api(
    db, db_url, start_server, make_workspace
):
    """BigCommerce's webhooks carry ids only: on a running server, its `store/order/statusUpdated` with
    the documented payload (new status 5, Cancelled) cancels the order the storefront sent through the
    Sequenzy API, once; a missing or wrong `X-Cartback-Secret` is a 401 that changes nothing."""
    tenant = make_workspace()
    secret = "bigcommerce-e2e-secret"
    sealer = connectors.Sealer(SERVER_SECRET)
    made = db.write_sync(
        lambda tx: connectors.add(tx, sealer, tenant.name, "bigcommerce", secret, "", system_clock.now())
    )
    with SmtpSink() as sink:
        server = start_server(db_url, env=env_for(sink, CARTBACK_SECRET_KEY=SERVER_SECRET))
        api = Api(server, tenant.key)
        api.post(
            "/orders",
            {
                "orderId": "250",
                "currency": "USD",
                "totalCents": 5000,
                "customer": {"email": "buyer@example.com"},
            },
        )
        api.http.close()
        hook = f"{server.url}/hooks/bigcommerce/{made.id}"

        def status() -> str:
            return str(
                db.read_sync(
                    lambda tx: tx.execute(
                        sa.select(orders.c.status).where(orders.c.workspace_id == tenant.id)
                    ).scalar_one()
                )
            )

        body = raw(payload("bigcommerce", "order_status_updated"))
        plain = {"Content-Type": "application/json"}
        for headers in (plain, {**plain, "X-Cartback-Secret": "guess"}):
            assert httpx.post(hook, content=body, headers=headers).status_code == 401
        assert status() == "placed"
        signed = {**plain, "X-Cartback-Secret": secret}
        first = httpx.post(hook, content=body, headers=signed)
        assert first.status_code == 200 and first.json()["applied"], first.text
        assert status() == "cancelled"
        again = httpx.post(hook, content=body, headers=signed)
        assert again.json() == {"ok": True, "applied": False, "replayed": True}
        cancelled = db.read_sync(
            lambda tx: tx.execute(
                sa.select(sa.func.count()).where(
                    events.c.workspace_id == tenant.id, events.c.name == "ecommerce.order_cancelled"
                )
            ).scalar_one()
        )
        assert cancelled == 1
