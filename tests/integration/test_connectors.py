"""Store connectors in-process on real SQLite and PostgreSQL: the rules every platform's webhooks follow
(signatures, replays, unknown topics, malformed bodies, secret rotation) and Shopify's mapping into the
canonical checkouts, orders and subscribers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.connector_hooks import (
    payload,
    raw,
    shopify_customer,
    shopify_headers,
    stripe_headers,
    woo_headers,
    woo_order,
)

from cartback.app import create_app
from cartback.core import connectors, links, orders, subscribers, suppressions
from cartback.core.clock import system_clock
from cartback.settings import Settings
from cartback.store import tables
from cartback.store.db import Database

SERVER_SECRET = "connector-tests-server-secret"
SHOP_SECRET = "shpss_0123456789abcdef"


@dataclass
class Hooks:
    http: TestClient
    db: Database
    workspace_id: str
    workspace_name: str
    sealer: connectors.Sealer

    def add(self, platform: str, secret: str) -> str:
        made = self.db.write_sync(
            lambda tx: connectors.add(
                tx, self.sealer, self.workspace_name, platform, secret, "", system_clock.now()
            )
        )
        return made.id

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        return self.http.post(path, content=body, headers=headers)

    def count(self, table: sa.Table) -> int:
        query = sa.select(sa.func.count()).select_from(table)
        if "workspace_id" in table.c:
            query = query.where(table.c.workspace_id == self.workspace_id)
        return int(self.db.read_sync(lambda tx: tx.execute(query).scalar_one()))

    def snapshot(self) -> dict[str, int]:
        watched = (
            tables.subscribers,
            tables.events,
            tables.checkouts,
            tables.orders,
            tables.connector_webhooks,
        )
        return {t.name: self.count(t) for t in watched}

    def rows(self, table: sa.Table) -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(sa.select(table).where(table.c.workspace_id == self.workspace_id)).all()
        )


@pytest.fixture
def hooks(db_url: str, db: Database, make_workspace: Callable[[], Any]) -> Iterator[Hooks]:
    tenant = make_workspace()
    settings = Settings(
        database_url=db_url, secret_key=SERVER_SECRET, rate_limit_burst=0, rate_limit_steady=0
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Hooks(client, db, tenant.id, tenant.name, connectors.Sealer(SERVER_SECRET))


@pytest.fixture
def shop(hooks: Hooks) -> str:
    """The webhook path of a Shopify connector."""
    return f"/hooks/shopify/{hooks.add('shopify', SHOP_SECRET)}"


def send(hooks: Hooks, path: str, name: str, topic: str, *, webhook_id: str | None = None) -> Any:
    body = raw(payload("shopify", name))
    return hooks.post(path, body, shopify_headers(body, SHOP_SECRET, topic, webhook_id))


def test_connectors_shopify_checkout_becomes_the_canonical_checkout(hooks, shop):
    res = send(hooks, shop, "checkouts_create", "checkouts/create")
    assert res.status_code == 200, res.text
    assert res.json() == {"ok": True, "applied": True, "replayed": False}
    [checkout] = hooks.rows(tables.checkouts)
    assert checkout.checkout_id == "123123123"
    assert (checkout.currency, checkout.total_cents) == ("USD", 39800)
    assert checkout.checkout_url.startswith("https://checkout.local/548380009/checkouts/123123123/recover")
    assert [(i["title"], i["priceCents"], i["quantity"], i["sku"]) for i in checkout.items] == [
        ("IPod Nano - 8GB", 19900, 1, "IPOD2008PINK"),
        ("IPod Touch 8GB", 19900, 1, "IPOD2009BLACK"),
    ]
    [person] = hooks.rows(tables.subscribers)
    assert (person.email, person.first_name, person.last_name) == ("example@email.com", "John", "Smith")
    assert person.attributes["shopifyCustomerId"] == "603851970716743426"
    [event] = [e for e in hooks.rows(tables.events) if e.name.startswith("ecommerce.")]
    assert event.name == "ecommerce.checkout_started"
    assert event.properties["checkoutUrl"] == checkout.checkout_url


def test_connectors_shopify_order_links_its_checkout_and_refunds_accumulate(hooks, shop):
    assert send(hooks, shop, "checkouts_create", "checkouts/create").status_code == 200
    assert send(hooks, shop, "orders_create", "orders/create").status_code == 200
    # orders/paid of the same order: placed once.
    assert send(hooks, shop, "orders_create", "orders/paid").status_code == 200
    [order] = hooks.rows(tables.orders)
    assert (order.order_id, order.order_number, order.status) == ("820982911946154508", "#9999", "placed")
    assert (order.checkout_id, order.total_cents, order.currency) == ("123123123", 39800, "USD")
    [checkout] = hooks.rows(tables.checkouts)
    assert checkout.order_id == "820982911946154508"

    assert send(hooks, shop, "refunds_create", "refunds/create", webhook_id="refund-1").status_code == 200
    # The same refund delivered again under another webhook id: the refund id keeps it one refund.
    assert send(hooks, shop, "refunds_create", "refunds/create", webhook_id="refund-2").status_code == 200
    [order] = hooks.rows(tables.orders)
    assert (order.status, order.refund_amount_cents) == ("refunded", 19900)
    second = payload("shopify", "refunds_create")
    second["id"] = 890088186047892320
    body = raw(second)
    res = hooks.post(shop, body, shopify_headers(body, SHOP_SECRET, "refunds/create"))
    assert res.status_code == 200
    [order] = hooks.rows(tables.orders)
    assert order.refund_amount_cents == 39800
    names = sorted(e.name for e in hooks.rows(tables.events) if e.name.startswith("ecommerce."))
    assert names == [
        "ecommerce.checkout_started",
        "ecommerce.order_placed",
        "ecommerce.order_refunded",
        "ecommerce.order_refunded",
    ]


def test_connectors_shopify_customer_with_marketing_consent(hooks, shop):
    assert send(hooks, shop, "customers_create", "customers/create").status_code == 200
    [person] = hooks.rows(tables.subscribers)
    assert (person.email, person.first_name) == ("bob@biller.com", "Bob")
    assert person.attributes["emailMarketingConsent"] == "subscribed"
    assert person.attributes["acceptsMarketing"] is True


def _send_customer(hooks: Hooks, path: str, data: dict[str, Any]) -> Any:
    body = raw(data)
    res = hooks.post(path, body, shopify_headers(body, SHOP_SECRET, "customers/update"))
    assert res.status_code == 200 and res.json()["applied"], res.text
    return res


def _standing(hooks: Hooks, email: str = "bob@biller.com") -> tuple[str, list[tuple[str, str]], str | None]:
    """The subscriber's status, the address's suppressions (reason, source) and what blocks marketing."""

    def read(tx: Any) -> tuple[str, list[tuple[str, str]], str | None]:
        sub = subscribers.find(tx, hooks.workspace_id, subscribers.Identity(email=email))
        assert sub is not None
        held = suppressions.standing(tx, hooks.workspace_id, email, system_clock.now()).items
        blocked = suppressions.blocking_reason(tx, hooks.workspace_id, email, "marketing")
        return sub.status, sorted((s.reason, s.source) for s in held), blocked

    return hooks.db.read_sync(read)


def test_connectors_shopify_unsubscribed_customer_is_suppressed_as_an_unsubscribe_link_does(hooks, shop):
    now = system_clock.now()
    _send_customer(hooks, shop, shopify_customer("unsubscribed", now - timedelta(minutes=5)))
    status, held, blocked = _standing(hooks)
    assert (status, held) == ("unsubscribed", [("unsubscribed", "connector:shopify")])
    assert blocked == "address unsubscribed (connector:shopify)"
    [person] = hooks.rows(tables.subscribers)
    assert person.attributes["emailMarketingConsent"] == "unsubscribed"
    assert person.attributes["acceptsMarketing"] is False
    # The same state again in a later update (Shopify sends the consent with every change of the
    # customer): still one suppression and one email.unsubscribed event.
    _send_customer(hooks, shop, shopify_customer("unsubscribed", now - timedelta(minutes=5)))
    assert _standing(hooks)[1] == [("unsubscribed", "connector:shopify")]
    unsubscribed = [e for e in hooks.rows(tables.events) if e.name == "email.unsubscribed"]
    assert [(e.properties["reason"], e.properties["source"]) for e in unsubscribed] == [
        ("unsubscribed", "connector:shopify")
    ]


def test_connectors_shopify_subscribe_after_an_unsubscribe_re_consents(hooks, shop):
    now = system_clock.now()
    # Unsubscribed an hour ago through cartback's own link, which Shopify never hears of.
    unsubscribe = links.Unsubscribe("bob@biller.com", "link", "msg_1", {})
    assert send(hooks, shop, "customers_create", "customers/create").status_code == 200
    hooks.db.write_sync(
        lambda tx: links.unsubscribe(tx, hooks.workspace_id, unsubscribe, now - timedelta(hours=1))
    )
    # Shopify still holds the consent given before it, and sends it with the customer's next update:
    # not a new subscribe, and neither is a state with no time.
    _send_customer(hooks, shop, shopify_customer("subscribed", now - timedelta(hours=2)))
    _send_customer(hooks, shop, shopify_customer("subscribed", None))
    assert _standing(hooks)[:2] == ("unsubscribed", [("unsubscribed", "link")])
    # The shopper subscribes again in Shopify after unsubscribing: that lifts the unsubscribe.
    _send_customer(hooks, shop, shopify_customer("subscribed", now - timedelta(minutes=10)))
    assert _standing(hooks) == ("active", [], None)
    # Unsubscribed in Shopify again: suppressed again, whatever the time the consent carries.
    _send_customer(hooks, shop, shopify_customer("unsubscribed", now - timedelta(hours=3)))
    assert _standing(hooks)[:2] == ("unsubscribed", [("unsubscribed", "connector:shopify")])


def test_connectors_shopify_subscribe_never_lifts_a_bounce_or_a_complaint(hooks, shop):
    now = system_clock.now()
    _send_customer(hooks, shop, shopify_customer("unsubscribed", now - timedelta(hours=2)))
    for reason in ("bounced", "complained"):
        addition = suppressions.Addition("bob@biller.com", reason, "webhook:ses")
        hooks.db.write_sync(
            lambda tx, a=addition: suppressions.add(tx, hooks.workspace_id, a, now - timedelta(hours=1))
        )
    # Subscribed again in Shopify after the unsubscribe it sent.
    _send_customer(hooks, shop, shopify_customer("subscribed", system_clock.now()))
    status, held, blocked = _standing(hooks)
    # The unsubscribe is lifted; the mailbox's own bounce and complaint stay, and the bounce decides.
    assert (status, held) == ("bounced", [("bounced", "webhook:ses"), ("complained", "webhook:ses")])
    assert blocked == "address bounced (webhook:ses)"


def test_connectors_shopify_consent_time_that_is_not_a_time_is_400(hooks, shop):
    data = shopify_customer("subscribed", None)
    data["email_marketing_consent"]["consent_updated_at"] = "yesterday"
    body = raw(data)
    before = hooks.snapshot()
    res = hooks.post(shop, body, shopify_headers(body, SHOP_SECRET, "customers/update"))
    assert res.status_code == 400 and "consent_updated_at" in res.json()["error"], res.text
    assert hooks.snapshot() == before


@pytest.mark.parametrize("forgery", ["wrong secret", "missing", "tampered body", "empty"])
def test_connectors_bad_signature_is_401_and_stores_nothing(hooks, shop, forgery):
    body = raw(payload("shopify", "checkouts_create"))
    headers = shopify_headers(body, SHOP_SECRET, "checkouts/create")
    if forgery == "wrong secret":
        headers = shopify_headers(body, "not-the-secret", "checkouts/create")
    elif forgery == "missing":
        del headers["X-Shopify-Hmac-Sha256"]
    elif forgery == "tampered body":
        body = body.replace(b"398.00", b"1.00")
    else:
        headers["X-Shopify-Hmac-Sha256"] = ""
    before = hooks.snapshot()
    res = hooks.post(shop, body, headers)
    assert res.status_code == 401, res.text
    assert res.json()["code"] == "unauthorized"
    assert hooks.snapshot() == before


def test_connectors_same_webhook_id_twice_is_one_event(hooks, shop):
    first = send(hooks, shop, "checkouts_create", "checkouts/create", webhook_id="wh-1")
    after_first = hooks.snapshot()
    again = send(hooks, shop, "checkouts_create", "checkouts/create", webhook_id="wh-1")
    assert first.json()["applied"] and again.json() == {"ok": True, "applied": False, "replayed": True}
    assert hooks.snapshot() == after_first
    assert after_first["checkouts"] == 1 and after_first["connector_webhooks"] == 1
    started = [e for e in hooks.rows(tables.events) if e.name == "ecommerce.checkout_started"]
    assert len(started) == 1


def test_connectors_unknown_topic_is_200_and_malformed_body_400(hooks, shop):
    before = hooks.snapshot()
    body = b'{"id": 1, "title": "A product"}'
    res = hooks.post(shop, body, shopify_headers(body, SHOP_SECRET, "products/create"))
    assert res.status_code == 200 and res.json() == {"ok": True, "applied": False, "replayed": False}
    for bad in (b"{not json", b"[1, 2]", b'{"token": {"a": 1}, "email": "x@example.com"}'):
        res = hooks.post(shop, bad, shopify_headers(bad, SHOP_SECRET, "checkouts/create"))
        assert res.status_code == 400, (bad, res.text)
    assert hooks.snapshot() == before


def test_connectors_unknown_or_other_platform_connector_is_404(hooks, shop):
    body = raw(payload("shopify", "checkouts_create"))
    headers = shopify_headers(body, SHOP_SECRET, "checkouts/create")
    connector_id = shop.rsplit("/", 1)[1]
    assert hooks.post("/hooks/shopify/con_nope", body, headers).status_code == 404
    assert hooks.post(f"/hooks/woocommerce/{connector_id}", body, headers).status_code == 404


def test_connectors_rotation_keeps_the_old_secret_for_the_grace_period(hooks, shop):
    connector_id = shop.rsplit("/", 1)[1]
    now = system_clock.now()

    def rotate(secret: str, at: Any, grace: timedelta) -> None:
        hooks.db.write_sync(
            lambda tx: connectors.rotate(
                tx, hooks.sealer, hooks.workspace_name, connector_id, secret, at, grace
            )
        )

    def status(secret: str) -> int:
        body = raw(payload("shopify", "customers_create"))
        return int(hooks.post(shop, body, shopify_headers(body, secret, "customers/create")).status_code)

    rotate("second-secret", now, timedelta(hours=24))
    assert (status(SHOP_SECRET), status("second-secret")) == (200, 200)
    # Rotated again two days ago with a day's grace: the previous secret is void now.
    rotate("third-secret", now - timedelta(days=2), timedelta(hours=24))
    assert (status("second-secret"), status("third-secret"), status(SHOP_SECRET)) == (401, 200, 401)


def test_connectors_secret_is_stored_encrypted(hooks, shop):
    [row] = hooks.db.read_sync(lambda tx: tx.execute(sa.select(tables.connectors)).all())
    assert SHOP_SECRET not in row.secret and row.secret.startswith("v1:")
    assert hooks.sealer.open(row.id, row.secret) == SHOP_SECRET
    # Another server key cannot read it, nor can the ciphertext be moved to another connector.
    with pytest.raises(Exception, match="rotate it"):
        connectors.Sealer("another server key").open(row.id, row.secret)
    with pytest.raises(Exception, match="rotate it"):
        hooks.sealer.open("con_other", row.secret)


def test_connectors_remove_drops_the_connector_and_its_ledger(hooks, shop):
    assert send(hooks, shop, "checkouts_create", "checkouts/create").status_code == 200
    connector_id = shop.rsplit("/", 1)[1]
    hooks.db.write_sync(lambda tx: connectors.remove(tx, hooks.workspace_name, connector_id))
    assert hooks.count(tables.connector_webhooks) == 0
    assert send(hooks, shop, "checkouts_create", "checkouts/create").status_code == 404


# -- Stripe Checkout ------------------------------------------------------------------------------------

STRIPE_SECRET = "whsec_test_0123456789abcdef0123456789abcdef"


@pytest.fixture
def stripe_hook(hooks: Hooks) -> str:
    return f"/hooks/stripe/{hooks.add('stripe', STRIPE_SECRET)}"


def send_stripe(hooks: Hooks, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    body = raw(data)
    return hooks.post(path, body, stripe_headers(body, STRIPE_SECRET, **kwargs))


def test_connectors_stripe_expired_session_is_a_checkout_and_completed_its_order(hooks, stripe_hook):
    res = send_stripe(hooks, stripe_hook, payload("stripe", "checkout_session_expired"))
    assert res.status_code == 200 and res.json()["applied"], res.text
    [checkout] = hooks.rows(tables.checkouts)
    assert checkout.checkout_id == "cs_test_a1expiredB2c3D4e5F6g7H8i9J0"
    assert (checkout.currency, checkout.total_cents) == ("EUR", 6450)
    assert checkout.checkout_url == "https://buy.stripe.com/r/live_YWNjdF8xMDA1"
    [person] = hooks.rows(tables.subscribers)
    assert (person.email, person.first_name, person.last_name) == (
        "jenny.rosen@example.com",
        "Jenny",
        "Rosen",
    )

    assert send_stripe(hooks, stripe_hook, payload("stripe", "checkout_session_completed")).status_code == 200
    [order] = hooks.rows(tables.orders)
    assert (order.order_id, order.checkout_id) == ("pi_3MtwBwLkdIwHu7ix28a3tqPa", checkout.checkout_id)
    assert (order.total_cents, order.currency, order.status) == (6450, "EUR", "placed")

    refund = payload("stripe", "charge_refunded")
    assert send_stripe(hooks, stripe_hook, refund).status_code == 200
    # Another event stating the same refunded amount so far: nothing more is refunded.
    refund["id"] = "evt_3MtwBwLkdIwHu7ix0refund02"
    assert send_stripe(hooks, stripe_hook, refund).status_code == 200
    [order] = hooks.rows(tables.orders)
    assert (order.status, order.refund_amount_cents) == ("refunded", 2000)
    refund["id"], refund["data"]["object"]["amount_refunded"] = "evt_3MtwBwLkdIwHu7ix0refund03", 6450
    assert send_stripe(hooks, stripe_hook, refund).status_code == 200
    [order] = hooks.rows(tables.orders)
    assert order.refund_amount_cents == 6450


def test_connectors_stripe_promotions_opt_out_suppresses_and_a_later_opt_in_re_consents(hooks, stripe_hook):
    email = "jenny.rosen@example.com"
    expired = payload("stripe", "checkout_session_expired")
    expired["created"] = int((system_clock.now() - timedelta(hours=2)).timestamp())
    expired["data"]["object"]["consent"] = {"promotions": "opt_out", "terms_of_service": None}
    assert send_stripe(hooks, stripe_hook, expired).json()["applied"]
    # The checkout is kept (its order may still come), the address suppressed.
    assert len(hooks.rows(tables.checkouts)) == 1
    assert _standing(hooks, email) == (
        "unsubscribed",
        [("unsubscribed", "connector:stripe")],
        "address unsubscribed (connector:stripe)",
    )
    # An opt-in in an event made before that suppression was recorded changes nothing; a later one
    # re-subscribes.
    completed = payload("stripe", "checkout_session_completed")
    completed["created"] = int((system_clock.now() - timedelta(hours=3)).timestamp())
    completed["data"]["object"]["consent"] = {"promotions": "opt_in", "terms_of_service": None}
    assert send_stripe(hooks, stripe_hook, completed).json()["applied"]
    assert _standing(hooks, email)[0] == "unsubscribed"
    completed["id"], completed["created"] = "evt_later_opt_in", int(system_clock.now().timestamp()) + 1
    assert send_stripe(hooks, stripe_hook, completed).json()["applied"]
    assert _standing(hooks, email) == ("active", [], None)


def test_connectors_stripe_refund_of_an_unknown_payment_stores_nothing(hooks, stripe_hook):
    before = hooks.snapshot()
    assert send_stripe(hooks, stripe_hook, payload("stripe", "charge_refunded")).status_code == 200
    after = hooks.snapshot()
    assert {k: v for k, v in after.items() if k != "connector_webhooks"} == {
        k: v for k, v in before.items() if k != "connector_webhooks"
    }


@pytest.mark.parametrize("forgery", ["stale", "wrong secret", "missing", "tampered body", "garbled header"])
def test_connectors_stripe_bad_signature_is_401_and_stores_nothing(hooks, stripe_hook, forgery):
    body = raw(payload("stripe", "checkout_session_expired"))
    headers = stripe_headers(body, STRIPE_SECRET)
    if forgery == "stale":
        headers = stripe_headers(body, STRIPE_SECRET, int(time.time()) - 301)
    elif forgery == "wrong secret":
        headers = stripe_headers(body, "whsec_other")
    elif forgery == "missing":
        del headers["Stripe-Signature"]
    elif forgery == "tampered body":
        body = body.replace(b"6450", b"1")
    else:
        headers["Stripe-Signature"] = "t=abc,v1="
    before = hooks.snapshot()
    res = hooks.post(stripe_hook, body, headers)
    assert res.status_code == 401, res.text
    assert hooks.snapshot() == before


def test_connectors_stripe_any_of_several_signatures_and_one_event_per_id(hooks, stripe_hook):
    body = raw(payload("stripe", "checkout_session_expired"))
    good = stripe_headers(body, STRIPE_SECRET)["Stripe-Signature"]
    stamp, signature = good.split(",")
    headers = {"Stripe-Signature": f"{stamp},v1={'0' * 64},{signature},v0=ignored"}
    assert hooks.post(stripe_hook, body, headers).json()["applied"]
    again = hooks.post(stripe_hook, body, stripe_headers(body, STRIPE_SECRET))
    assert again.json() == {"ok": True, "applied": False, "replayed": True}
    assert len([e for e in hooks.rows(tables.events) if e.name == "ecommerce.checkout_started"]) == 1
    unknown = raw({"id": "evt_x", "object": "event", "type": "customer.created", "data": {"object": {}}})
    res = hooks.post(stripe_hook, unknown, stripe_headers(unknown, STRIPE_SECRET))
    assert res.json() == {"ok": True, "applied": False, "replayed": False}


# -- WooCommerce ----------------------------------------------------------------------------------------

WOO_SECRET = "woo-webhook-secret"


@pytest.fixture
def woo(hooks: Hooks) -> str:
    return f"/hooks/woocommerce/{hooks.add('woocommerce', WOO_SECRET)}"


def send_woo(hooks: Hooks, path: str, data: dict[str, Any], topic: str = "order.updated") -> Any:
    body = raw(data)
    return hooks.post(path, body, woo_headers(body, WOO_SECRET, topic))


def test_connectors_woocommerce_pending_order_is_a_checkout_and_processing_its_order(hooks, woo):
    assert send_woo(hooks, woo, woo_order("pending"), "order.created").json()["applied"]
    [checkout] = hooks.rows(tables.checkouts)
    assert (checkout.checkout_id, checkout.total_cents, checkout.currency) == ("727", 2935, "USD")
    assert checkout.checkout_url.startswith("https://example.com/checkout/order-pay/727/")
    assert [(i["title"], i["quantity"], i["priceCents"]) for i in checkout.items] == [
        ("Woo Single #1", 2, 300),
        ("Ship Your Idea &ndash; Color: Black, Size: M Test", 1, 1200),
    ]
    assert send_woo(hooks, woo, woo_order("processing")).status_code == 200
    [order] = hooks.rows(tables.orders)
    assert (order.order_id, order.checkout_id, order.status, order.total_cents) == (
        "727",
        "727",
        "placed",
        2935,
    )
    refunded = woo_order("refunded")
    refunded["refunds"] = [{"id": 726, "reason": "", "total": "-10.00"}]
    assert send_woo(hooks, woo, refunded).status_code == 200
    [order] = hooks.rows(tables.orders)
    assert (order.status, order.refund_amount_cents) == ("refunded", 1000)
    assert send_woo(hooks, woo, payload("woocommerce", "customer"), "customer.updated").status_code == 200
    [person] = hooks.rows(tables.subscribers)
    assert (person.email, person.attributes["wooCustomerId"]) == ("john.doe@example.com", "25")


def test_connectors_woocommerce_ping_is_200_and_forgeries_401(hooks, woo):
    before = hooks.snapshot()
    ping = hooks.post(woo, b"webhook_id=12", {"Content-Type": "application/x-www-form-urlencoded"})
    assert ping.status_code == 200 and not ping.json()["applied"]
    body = raw(woo_order("pending"))
    for headers in (
        woo_headers(body, "other-secret", "order.created"),
        {k: v for k, v in woo_headers(body, WOO_SECRET, "order.created").items() if "Signature" not in k},
    ):
        assert hooks.post(woo, body, headers).status_code == 401
    # A form body with a topic is a webhook, and must be signed.
    forged_ping = hooks.post(woo, b"webhook_id=12", {"X-WC-Webhook-Topic": "order.created"})
    assert forged_ping.status_code == 401
    assert hooks.snapshot() == before


def test_connectors_woocommerce_same_delivery_id_twice_is_one_event(hooks, woo):
    body = raw(woo_order("pending"))
    headers = woo_headers(body, WOO_SECRET, "order.created", delivery_id="delivery-1")
    assert hooks.post(woo, body, headers).json()["applied"]
    after_first = hooks.snapshot()
    again = hooks.post(woo, body, headers)
    assert again.json() == {"ok": True, "applied": False, "replayed": True}
    assert hooks.snapshot() == after_first
    started = [e for e in hooks.rows(tables.events) if e.name == "ecommerce.checkout_started"]
    assert len(started) == 1


def test_connectors_secret_past_its_grace_period_is_401_and_stores_nothing(hooks, shop):
    """Shopify's signature carries no time: a stale one is one made with a secret rotated away."""
    connector_id = shop.rsplit("/", 1)[1]
    hooks.db.write_sync(
        lambda tx: connectors.rotate(
            tx,
            hooks.sealer,
            hooks.workspace_name,
            connector_id,
            "rotated-secret",
            system_clock.now() - timedelta(hours=2),
            timedelta(hours=1),
        )
    )
    before = hooks.snapshot()
    body = raw(payload("shopify", "checkouts_create"))
    res = hooks.post(shop, body, shopify_headers(body, SHOP_SECRET, "checkouts/create"))
    assert res.status_code == 401, res.text
    assert hooks.snapshot() == before


# -- BigCommerce ----------------------------------------------------------------------------------------

BIG_SECRET = "bigcommerce-header-secret"


def test_connectors_bigcommerce_status_of_a_known_order_and_ids_only_events(hooks):
    path = f"/hooks/bigcommerce/{hooks.add('bigcommerce', BIG_SECRET)}"
    known = orders.OrderInput(
        order_id="250",
        customer=subscribers.Identity(email="buyer@example.com"),
        currency="USD",
        total_cents=5000,
    )
    hooks.db.write_sync(lambda tx: orders.record_order(tx, hooks.workspace_id, known, system_clock.now()))
    headers = {"Content-Type": "application/json", "X-Cartback-Secret": BIG_SECRET}
    before = hooks.snapshot()
    body = raw(payload("bigcommerce", "cart_abandoned"))
    assert hooks.post(path, body, {**headers, "X-Cartback-Secret": "guess"}).status_code == 401
    assert hooks.post(path, body, {"Content-Type": "application/json"}).status_code == 401
    assert hooks.post(path, body, headers).status_code == 200
    assert {k: v for k, v in hooks.snapshot().items() if k != "connector_webhooks"} == {
        k: v for k, v in before.items() if k != "connector_webhooks"
    }
    body = raw(payload("bigcommerce", "order_status_updated"))
    assert hooks.post(path, body, headers).json()["applied"]
    assert hooks.post(path, body, headers).json()["replayed"]
    [order] = hooks.rows(tables.orders)
    assert (order.status, order.total_cents) == ("cancelled", 5000)
    unknown = payload("bigcommerce", "order_status_updated")
    unknown["data"]["id"], unknown["hash"] = 251, "0" * 40
    assert hooks.post(path, raw(unknown), headers).status_code == 200
    assert len(hooks.rows(tables.orders)) == 1
