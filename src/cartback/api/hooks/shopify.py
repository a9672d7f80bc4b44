"""Shopify's webhooks (Admin API, JSON format): checkouts, orders, refunds and customers.

Shopify signs the raw body: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of it under the app's
client secret (or the secret shown beside webhooks made in the shop's admin). The topic is in
`X-Shopify-Topic`, the delivery's id in `X-Shopify-Webhook-Id` (the same on every retry of a delivery).
An order names the checkout it came from by `checkout_token`, the checkout's `token`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.datastructures import Headers

from cartback import errors
from cartback.api.hooks import fields
from cartback.core import checkouts, connectors, ingest, orders, subscribers, suppressions

SOURCE = "shopify"
_ORDER_STATUS = {"orders/create": "placed", "orders/paid": "placed", "orders/cancelled": "cancelled"}


def verify(headers: Headers, body: bytes, secrets: tuple[str, ...], now: datetime) -> None:
    fields.verify_base64_hmac(body, headers.get("x-shopify-hmac-sha256"), secrets, "X-Shopify-Hmac-Sha256")


def parse(headers: Headers, body: bytes) -> connectors.Webhook:
    topic = (headers.get("x-shopify-topic") or "").strip().lower()
    webhook_id = fields.ident(headers.get("x-shopify-webhook-id"), "X-Shopify-Webhook-Id")
    if webhook_id is None:
        raise errors.InvalidInput("missing X-Shopify-Webhook-Id")
    if topic not in (
        "checkouts/create",
        "checkouts/update",
        *_ORDER_STATUS,
        "refunds/create",
    ) and topic not in (
        "customers/create",
        "customers/update",
    ):
        return connectors.Webhook(webhook_id, topic, None)
    data = fields.json_object(body)
    if topic.startswith("checkouts/"):
        action = checkout(data)
    elif topic in _ORDER_STATUS:
        action = order(data, _ORDER_STATUS[topic])
    elif topic == "refunds/create":
        action = refund(data)
    else:
        action = customer_change(data)
    return connectors.Webhook(webhook_id, topic, [action])


def identity(data: dict[str, Any], where: str) -> subscribers.Identity:
    """The buyer: the record's own `email`, else its customer's; names from the customer, else from the
    billing address. The Shopify customer id is kept as the `shopifyCustomerId` attribute."""
    customer = fields.obj(data.get("customer"), f"{where}.customer")
    billing = fields.obj(data.get("billing_address"), f"{where}.billing_address")
    email = fields.email(data.get("email"), f"{where}.email") or fields.email(
        customer.get("email"), f"{where}.customer.email"
    )
    attributes: dict[str, Any] = {}
    customer_id = fields.ident(customer.get("id"), f"{where}.customer.id")
    if customer_id:
        attributes["shopifyCustomerId"] = customer_id
    return subscribers.Identity(
        email=email,
        first_name=fields.text(
            customer.get("first_name") or billing.get("first_name"), f"{where}.first_name", 255
        ),
        last_name=fields.text(
            customer.get("last_name") or billing.get("last_name"), f"{where}.last_name", 255
        ),
        attributes=attributes,
    )


def line_items(data: dict[str, Any], unit: str | None, where: str) -> list[dict[str, Any]]:
    items = []
    for i, raw in enumerate(fields.array(data.get("line_items"), f"{where}.line_items")):
        at = f"{where}.line_items[{i}]"
        line = fields.obj(raw, at)
        items.append(
            fields.item(
                product_id=fields.ident(line.get("product_id"), f"{at}.product_id"),
                title=fields.text(line.get("title") or line.get("name"), f"{at}.title"),
                qty=fields.quantity(line.get("quantity"), f"{at}.quantity"),
                price_cents=fields.decimal_minor(line.get("price"), unit, f"{at}.price"),
                sku=fields.ident(line.get("sku"), f"{at}.sku"),
                variant=fields.text(line.get("variant_title"), f"{at}.variant_title", 255),
            )
        )
    return items


def checkout(data: dict[str, Any]) -> ingest.Action:
    """checkouts/create and checkouts/update: the cart as it is now. One without an email yet (the
    buyer has not typed it) has nobody to write to: nothing is stored."""
    token = fields.ident(data.get("token"), "token")
    if token is None:
        raise errors.InvalidInput("token is required")
    who = identity(data, "checkout")
    if not who.names_someone():
        return ingest.Ignored()
    unit = fields.currency(data.get("presentment_currency") or data.get("currency"), "currency")
    total = fields.decimal_minor(data.get("total_price"), unit, "total_price")
    return ingest.CheckoutStarted(
        checkouts.CheckoutInput(
            checkout_id=token,
            customer=who,
            currency=unit or ("USD" if total is not None else None),
            total_cents=total,
            checkout_url=fields.web_url(data.get("abandoned_checkout_url"), "abandoned_checkout_url"),
            items=line_items(data, unit, "checkout"),
            properties={"platform": SOURCE, "shopifyCheckoutId": fields.ident(data.get("id"), "id")},
            source=SOURCE,
        )
    )


def order(data: dict[str, Any], status: str) -> ingest.Action:
    """orders/create and orders/paid (the order placed, once), orders/cancelled."""
    order_id = fields.ident(data.get("id"), "id")
    if order_id is None:
        raise errors.InvalidInput("id is required")
    unit = fields.currency(data.get("presentment_currency") or data.get("currency"), "currency")
    total = fields.decimal_minor(data.get("total_price"), unit, "total_price")
    props: dict[str, Any] = {"platform": SOURCE}
    checkout_token = fields.ident(data.get("checkout_token"), "checkout_token")
    if checkout_token:
        props["checkoutId"] = checkout_token
    placed = status == "placed"
    return ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=identity(data, "order"),
            currency=unit,
            total_cents=total if placed else None,
            amount_cents=None if placed else total,
            status=status,
            order_number=fields.text(data.get("name"), "name", 255),
            items=line_items(data, unit, "order"),
            properties=props,
            source=SOURCE,
        )
    )


def refund(data: dict[str, Any]) -> ingest.Action:
    """refunds/create: the amount is what its successful refund transactions moved; each refund (by
    its id) adds to the order's refunded amount once. The payload names only the order."""
    refund_id = fields.ident(data.get("id"), "id")
    order_id = fields.ident(data.get("order_id"), "order_id")
    if refund_id is None or order_id is None:
        raise errors.InvalidInput("id and order_id are required")
    amount = 0
    unit: str | None = None
    for i, raw in enumerate(fields.array(data.get("transactions"), "transactions")):
        txn = fields.obj(raw, f"transactions[{i}]")
        if txn.get("kind") != "refund" or txn.get("status") not in ("success", None):
            continue
        unit = unit or fields.currency(txn.get("currency"), f"transactions[{i}].currency")
        amount += fields.decimal_minor(txn.get("amount"), unit, f"transactions[{i}].amount") or 0
    return ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=subscribers.Identity(),
            currency=unit,
            total_cents=None,
            amount_cents=amount,
            status="refunded",
            event_id=refund_id,
            properties={"platform": SOURCE},
            source=SOURCE,
        )
    )


def customer_change(data: dict[str, Any]) -> ingest.Action:
    """customers/create and customers/update: the person, their email marketing consent kept as the
    `emailMarketingConsent` attribute (Shopify's state: subscribed, not_subscribed, unsubscribed,
    pending...). `unsubscribed` suppresses the address as an unsubscribe link does; `subscribed` lifts an
    unsubscribe recorded before its `consent_updated_at` (core.suppressions.apply_consent says why)."""
    who = identity({"customer": data, "email": data.get("email")}, "customer")
    if not who.names_someone():
        return ingest.Ignored()
    where = "email_marketing_consent"
    consent = fields.obj(data.get(where), where)
    state = (fields.text(consent.get("state"), f"{where}.state", 40) or "").strip().lower()
    changed_at = fields.moment(consent.get("consent_updated_at"), f"{where}.consent_updated_at")
    attributes = dict(who.attributes)
    if state:
        attributes["emailMarketingConsent"] = state
        attributes["acceptsMarketing"] = state == "subscribed"
    return ingest.ProfileChange(
        subscribers.Identity(
            email=who.email, first_name=who.first_name, last_name=who.last_name, attributes=attributes
        ),
        consent=(
            suppressions.Consent(state == "subscribed", changed_at, f"connector:{SOURCE}")
            if state in ("subscribed", "unsubscribed")
            else None
        ),
    )
