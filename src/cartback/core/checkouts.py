"""A started checkout: remember the latest cart and append ecommerce.checkout_started exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cartback import ids
from cartback.core import events, subscribers
from cartback.store import checkouts as store
from cartback.store.db import Tx


@dataclass(frozen=True)
class CheckoutInput:
    checkout_id: str
    customer: subscribers.Identity
    currency: str | None = None
    total_cents: int | None = None
    checkout_url: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    source: str = "sequenzy"
    # When the checkout started, if the caller says (Klaviyo's `time`); else when it was received.
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class CheckoutRecorded:
    checkout_id: str
    subscriber_id: str
    event_id: str
    created: bool


def event_properties(data: CheckoutInput) -> dict[str, Any]:
    """The event's properties: the caller's extras, with the cart's own fields on top so a stray
    `properties.checkoutId` cannot contradict the real one."""
    return {
        **data.properties,
        "checkoutId": data.checkout_id,
        "checkoutUrl": data.checkout_url,
        "totalCents": data.total_cents,
        "currency": data.currency,
        "items": data.items,
    }


def record_checkout(tx: Tx, workspace_id: str, data: CheckoutInput, now: datetime) -> CheckoutRecorded:
    existing = store.find(tx, workspace_id, data.checkout_id)
    if existing is not None:
        # A retry, or the cart changed: keep the ids; refresh the snapshot so later emails show the
        # latest cart.
        subscribers.upsert(tx, workspace_id, data.customer, now)
        updated = replace(
            existing,
            currency=data.currency,
            total_cents=data.total_cents,
            checkout_url=data.checkout_url,
            items=data.items,
            properties=data.properties,
        )
        if updated != existing:
            store.update_snapshot(tx, replace(updated, updated_at=now))
        return CheckoutRecorded(
            existing.checkout_id, existing.subscriber_id, existing.event_id, created=False
        )

    subscriber, _ = subscribers.upsert(tx, workspace_id, data.customer, now)
    recorded = events.record(
        tx,
        workspace_id,
        name=events.CHECKOUT_STARTED,
        source=data.source,
        subscriber_id=subscriber.id,
        properties=event_properties(data),
        now=now,
        occurred_at=data.occurred_at,
        idempotency_key=f"checkout:{data.checkout_id}",
        known_new=True,
    )
    store.insert(
        tx,
        store.Checkout(
            id=ids.new_id("chk"),
            workspace_id=workspace_id,
            checkout_id=data.checkout_id,
            subscriber_id=subscriber.id,
            event_id=recorded.event.id,
            currency=data.currency,
            total_cents=data.total_cents,
            checkout_url=data.checkout_url,
            items=data.items,
            properties=data.properties,
            order_id=None,
            # A checkout counts by its own time (the `time` sent with it), not when it arrived.
            created_at=recorded.event.occurred_at,
            updated_at=now,
        ),
    )
    return CheckoutRecorded(data.checkout_id, subscriber.id, recorded.event.id, created=True)
