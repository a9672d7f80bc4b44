"""WooCommerce's webhooks (REST API v3 resources): orders and customers.

`X-WC-Webhook-Signature` is the base64 HMAC-SHA256 of the raw body under the webhook's secret; the topic
is `X-WC-Webhook-Topic` (order.created, order.updated...), the delivery's id `X-WC-Webhook-Delivery-ID`.
When a webhook is saved WooCommerce pings its URL with a form body `webhook_id=<n>`, unsigned: answered
200, storing nothing, so the webhook is saved as active.

WooCommerce has no checkout object: an order is created pending as the buyer reaches payment. A pending
or failed order with a `payment_url` is the abandoned checkout (the link pays that order); the same order
processing, completed or on-hold is the order placed, linked to it by its id."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from starlette.datastructures import Headers

from cartback import errors
from cartback.api.hooks import fields
from cartback.core import checkouts, connectors, ingest, orders, subscribers

SOURCE = "woocommerce"
_PING = re.compile(rb"^webhook_id=\d+$")
_ABANDONED = ("pending", "failed")
_STATUS = {
    "processing": "placed",
    "completed": "placed",
    "on-hold": "placed",
    "cancelled": "cancelled",
    "refunded": "refunded",
}


def is_ping(headers: Headers, body: bytes) -> bool:
    return "x-wc-webhook-topic" not in headers and bool(_PING.match(body.strip()))


def verify(headers: Headers, body: bytes, secrets: tuple[str, ...], now: datetime) -> None:
    if is_ping(headers, body):
        return  # the ping carries nothing to store and no signature
    fields.verify_base64_hmac(body, headers.get("x-wc-webhook-signature"), secrets, "X-WC-Webhook-Signature")


def parse(headers: Headers, body: bytes) -> connectors.Webhook:
    if is_ping(headers, body):
        return connectors.Webhook("ping", "ping", None)
    topic = (headers.get("x-wc-webhook-topic") or "").strip().lower()
    delivery = fields.ident(headers.get("x-wc-webhook-delivery-id"), "X-WC-Webhook-Delivery-ID")
    if delivery is None:
        raise errors.InvalidInput("missing X-WC-Webhook-Delivery-ID")
    if topic in ("order.created", "order.updated"):
        action = order(fields.json_object(body))
    elif topic in ("customer.created", "customer.updated"):
        action = customer(fields.json_object(body))
    else:
        return connectors.Webhook(delivery, topic, None)
    return connectors.Webhook(delivery, topic, [action])


def identity(data: dict[str, Any], where: str) -> subscribers.Identity:
    billing = fields.obj(data.get("billing"), f"{where}.billing")
    email = fields.email(data.get("email"), f"{where}.email") or fields.email(
        billing.get("email"), f"{where}.billing.email"
    )
    first = data.get("first_name") or billing.get("first_name")
    last = data.get("last_name") or billing.get("last_name")
    attributes = {}
    customer_id = fields.ident(data.get("customer_id") or None, f"{where}.customer_id")
    if customer_id:
        attributes["wooCustomerId"] = customer_id
    return subscribers.Identity(
        email=email,
        first_name=fields.text(first, f"{where}.first_name", 255),
        last_name=fields.text(last, f"{where}.last_name", 255),
        attributes=attributes,
    )


def line_items(data: dict[str, Any], unit: str | None) -> list[dict[str, Any]]:
    items = []
    for i, raw in enumerate(fields.array(data.get("line_items"), "line_items")):
        at = f"line_items[{i}]"
        line = fields.obj(raw, at)
        image = fields.obj(line.get("image"), f"{at}.image")
        items.append(
            fields.item(
                product_id=fields.ident(line.get("product_id") or None, f"{at}.product_id"),
                title=fields.text(line.get("name"), f"{at}.name"),
                qty=fields.quantity(line.get("quantity"), f"{at}.quantity"),
                price_cents=fields.decimal_minor(line.get("price"), unit, f"{at}.price"),
                sku=fields.ident(line.get("sku"), f"{at}.sku"),
                image_url=fields.web_url(image.get("src"), f"{at}.image.src"),
            )
        )
    return items


def order(data: dict[str, Any]) -> ingest.Action:
    order_id = fields.ident(data.get("id"), "id")
    if order_id is None:
        raise errors.InvalidInput("id is required")
    status = fields.text(data.get("status"), "status", 40) or ""
    who = identity(data, "order")
    if not who.names_someone():
        return ingest.Ignored()
    unit = fields.currency(data.get("currency"), "currency")
    total = fields.decimal_minor(data.get("total"), unit, "total")
    items = line_items(data, unit)
    if status in _ABANDONED:
        url = fields.web_url(data.get("payment_url"), "payment_url")
        if url is None:
            return ingest.Ignored()
        return ingest.CheckoutStarted(
            checkouts.CheckoutInput(
                checkout_id=order_id,
                customer=who,
                currency=unit,
                total_cents=total,
                checkout_url=url,
                items=items,
                properties={"platform": SOURCE},
                source=SOURCE,
            )
        )
    change = _STATUS.get(status)
    if change is None:
        return ingest.Ignored()  # draft, checkout-draft, trash, or a shop's own status
    refunded = None
    if change == "refunded":
        refunded = 0
        for i, raw in enumerate(fields.array(data.get("refunds"), "refunds")):
            refund = fields.obj(raw, f"refunds[{i}]")
            amount = str(refund.get("total") or "0").lstrip("-")
            refunded += fields.decimal_minor(amount, unit, f"refunds[{i}].total") or 0
    return ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=who,
            currency=unit,
            total_cents=total if change == "placed" else None,
            amount_cents=None if change == "placed" else total,
            status=change,
            order_number=fields.text(str(data.get("number") or "") or None, "number", 255),
            items=items,
            refund_amount_cents=refunded or None,
            properties={"platform": SOURCE, "checkoutId": order_id},
            source=SOURCE,
        )
    )


def customer(data: dict[str, Any]) -> ingest.Action:
    who = identity(data, "customer")
    if not who.names_someone():
        return ingest.Ignored()
    customer_id = fields.ident(data.get("id"), "id")
    attributes = {"wooCustomerId": customer_id} if customer_id else {}
    return ingest.ProfileChange(
        subscribers.Identity(
            email=who.email, first_name=who.first_name, last_name=who.last_name, attributes=attributes
        )
    )
