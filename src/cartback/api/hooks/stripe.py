"""Stripe Checkout's webhooks (event objects): an expired Checkout Session is an abandoned checkout, a
completed one an order, a refunded charge a refund of it.

`Stripe-Signature` (`t=<timestamp>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, several v1 during Stripe's own
secret rollover) is checked by the official `stripe` library with its 300-second tolerance, against each
of the connector's valid secrets. The event id (`evt_...`) is the webhook id Stripe retries under.

Stripe's events carry no line items (they must be fetched from the API), so a Stripe checkout's items
are empty; the amount, currency, email and the recovery link are in the event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe
from starlette.datastructures import Headers

from cartback import errors
from cartback.api.hooks import fields
from cartback.core import checkouts, connectors, ingest, orders, subscribers, suppressions

SOURCE = "stripe"
TOLERANCE_SECONDS = 300


def verify(headers: Headers, body: bytes, secrets: tuple[str, ...], now: datetime) -> None:
    header = headers.get("stripe-signature")
    if not header:
        raise errors.Unauthorized("missing Stripe-Signature")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.Unauthorized("Stripe-Signature does not match the body") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=TOLERANCE_SECONDS)
        except stripe.SignatureVerificationError:
            continue
        return
    raise errors.Unauthorized("Stripe-Signature does not match the body, or is older than 5 minutes")


def parse(headers: Headers, body: bytes) -> connectors.Webhook:
    event = fields.json_object(body)
    event_id = fields.ident(event.get("id"), "id")
    topic = fields.text(event.get("type"), "type", 100) or ""
    if event_id is None:
        raise errors.InvalidInput("id is required")
    handler = _HANDLERS.get(topic)
    if handler is None:
        return connectors.Webhook(event_id, topic, None)
    data = fields.obj(event.get("data"), "data")
    obj = fields.obj(data.get("object"), "data.object")
    actions = [handler(obj)]
    if topic.startswith("checkout.session."):
        # The consent first, so that the checkout it came with is already judged by it.
        actions[:0] = promotions_consent(obj, event.get("created"))
    return connectors.Webhook(event_id, topic, actions)


def promotions_consent(session: dict[str, Any], created: Any) -> list[ingest.Action]:
    """A session's `consent.promotions` (collected when the shop sets `consent_collection.promotions`):
    `opt_out` suppresses the address as an unsubscribe link does, `opt_in` lifts an unsubscribe recorded
    before the event was created (core.suppressions.apply_consent). None: the session collected none."""
    consent = fields.obj(session.get("consent"), "data.object.consent")
    choice = fields.text(consent.get("promotions"), "data.object.consent.promotions", 40)
    if choice not in ("opt_in", "opt_out"):
        return []
    who = identity(session)
    if who.email is None:
        return []
    if created is not None and (
        isinstance(created, bool) or not isinstance(created, int) or not 0 <= created < 2**40
    ):
        raise errors.InvalidInput("created must be a Unix time in seconds")
    at = datetime.fromtimestamp(created, UTC) if created is not None else None
    return [
        ingest.ProfileChange(
            subscribers.Identity(email=who.email),
            consent=suppressions.Consent(choice == "opt_in", at, f"connector:{SOURCE}"),
        )
    ]


def _session_id(session: dict[str, Any]) -> str:
    session_id = fields.ident(session.get("id"), "data.object.id")
    if session_id is None:
        raise errors.InvalidInput("data.object.id is required")
    return session_id


def identity(session: dict[str, Any]) -> subscribers.Identity:
    """`customer_details.email` (what the buyer typed), else `customer_email` (what the shop passed)."""
    details = fields.obj(session.get("customer_details"), "data.object.customer_details")
    email = fields.email(details.get("email"), "data.object.customer_details.email") or fields.email(
        session.get("customer_email"), "data.object.customer_email"
    )
    name = fields.text(details.get("name"), "data.object.customer_details.name", 255)
    first, _, last = (name or "").strip().partition(" ")
    attributes = {}
    customer = fields.ident(session.get("customer"), "data.object.customer")
    if customer:
        attributes["stripeCustomerId"] = customer
    return subscribers.Identity(
        email=email, first_name=first or None, last_name=last.strip() or None, attributes=attributes
    )


def _amount(session: dict[str, Any]) -> tuple[str | None, int | None]:
    unit = fields.currency(session.get("currency"), "data.object.currency")
    return unit, fields.minor(session.get("amount_total"), "data.object.amount_total")


def expired(session: dict[str, Any]) -> ingest.Action:
    """checkout.session.expired: the abandoned checkout, resumed by `after_expiration.recovery.url` when
    the session enabled recovery. One with no email has nobody to write to: nothing is stored."""
    who = identity(session)
    if not who.names_someone():
        return ingest.Ignored()
    after = fields.obj(session.get("after_expiration"), "data.object.after_expiration")
    recovery = fields.obj(after.get("recovery"), "data.object.after_expiration.recovery")
    unit, total = _amount(session)
    return ingest.CheckoutStarted(
        checkouts.CheckoutInput(
            checkout_id=_session_id(session),
            customer=who,
            currency=unit,
            total_cents=total,
            checkout_url=fields.web_url(recovery.get("url"), "data.object.after_expiration.recovery.url"),
            properties={"platform": SOURCE},
            source=SOURCE,
        )
    )


def completed(session: dict[str, Any]) -> ingest.Action:
    """checkout.session.completed: the order, by its PaymentIntent (what a refund names) else the session
    id; linked to the expired session it was recovered from (`recovered_from`), else to itself."""
    session_id = _session_id(session)
    who = identity(session)
    if not who.names_someone():
        return ingest.Ignored()
    unit, total = _amount(session)
    checkout_id = fields.ident(session.get("recovered_from"), "data.object.recovered_from") or session_id
    order_id = fields.ident(session.get("payment_intent"), "data.object.payment_intent") or session_id
    return ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=who,
            currency=unit,
            total_cents=total,
            status="placed",
            properties={"platform": SOURCE, "checkoutId": checkout_id, "stripeSessionId": session_id},
            source=SOURCE,
        )
    )


def refunded(charge: dict[str, Any]) -> ingest.Action:
    """charge.refunded: `amount_refunded` is everything refunded of the charge so far, taken as the
    order's refunded amount. Only an order cartback saw (by its PaymentIntent) is changed."""
    order_id = fields.ident(charge.get("payment_intent"), "data.object.payment_intent")
    if order_id is None:
        return ingest.Ignored()
    return ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=subscribers.Identity(),
            currency=fields.currency(charge.get("currency"), "data.object.currency"),
            total_cents=None,
            status="refunded",
            refund_amount_cents=fields.minor(charge.get("amount_refunded"), "data.object.amount_refunded"),
            properties={"platform": SOURCE},
            source=SOURCE,
        )
    )


_HANDLERS = {
    "checkout.session.expired": expired,
    "checkout.session.completed": completed,
    "charge.refunded": refunded,
}
