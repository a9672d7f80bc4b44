"""Store platform webhooks as the platforms send them, for the connector tests: the documented payloads
of tests/fixtures/connectors/, signed as each platform signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "connectors"


def payload(platform: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / platform / f"{name}.json").read_text())
    return data


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def base64_hmac(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(body: bytes, secret: str, topic: str, webhook_id: str | None = None) -> dict[str, str]:
    """The headers Shopify sends with a webhook."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64_hmac(body, secret),
        "X-Shopify-Webhook-Id": webhook_id or f"b54557e4-{secrets.token_hex(8)}",
        "X-Shopify-Shop-Domain": "example.myshopify.com",
        "X-Shopify-API-Version": "2025-01",
        "X-Shopify-Triggered-At": "2026-12-01T10:00:00.000000Z",
    }


def stripe_headers(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """`Stripe-Signature` as Stripe computes it, by the official library."""
    import stripe

    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    return {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header}


def woo_headers(body: bytes, secret: str, topic: str, delivery_id: str | None = None) -> dict[str, str]:
    """The headers WooCommerce sends with a webhook."""
    resource, _, event = topic.partition(".")
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": "https://example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": base64_hmac(body, secret),
        "X-WC-Webhook-ID": "12",
        "X-WC-Webhook-Delivery-ID": delivery_id or secrets.token_hex(16),
    }


def woo_order(status: str) -> dict[str, Any]:
    """The documented order in another status (paid: no payment URL needed any more)."""
    data = payload("woocommerce", "order_pending")
    data["status"] = status
    if status not in ("pending", "failed"):
        data["needs_payment"] = False
    return data


def shopify_customer(state: str, at: datetime | None, email: str = "bob@biller.com") -> dict[str, Any]:
    """The documented Shopify customer with another email marketing consent state, changed at `at`."""
    data = payload("shopify", "customers_create")
    data["email"] = email
    data["email_marketing_consent"]["state"] = state
    data["email_marketing_consent"]["consent_updated_at"] = at.isoformat() if at else None
    return data
