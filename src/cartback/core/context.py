"""What filters, stop rules and templates see of an event: one normalised shape whichever API it came
through (CONTRACT.md, "One event model"), beside the raw properties."""

from __future__ import annotations

from typing import Any

from cartback import money
from cartback.store.checkouts import Checkout
from cartback.store.events import Event
from cartback.store.subscribers import Subscriber


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def normal_item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {}
    return {
        **item,
        "title": item.get("title") or item.get("name") or item.get("ProductName"),
        "quantity": item.get("quantity") if item.get("quantity") is not None else item.get("Quantity"),
        "priceCents": item.get("priceCents"),
        "imageUrl": item.get("imageUrl") or item.get("image_url") or item.get("ImageURL"),
        "url": item.get("url") or item.get("ProductURL"),
    }


def event_data(event: Event) -> dict[str, Any]:
    """The normalised event: `checkoutId`, `checkoutUrl`, `totalCents`, `currency`, `items[]` (title,
    quantity, priceCents, imageUrl), `value` (major units), the raw properties both at the top level and
    under `properties`. Filters and rules use dot paths into this."""
    props = dict(event.properties)
    total = _int(props.get("totalCents"))
    currency = props.get("currency")
    value = props.get("value")
    if value is None and total is not None:
        value = money.to_major(total, currency if isinstance(currency, str) else None)
    items = props.get("items")
    return {
        **props,
        "name": event.name,
        "id": event.id,
        "occurredAt": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "checkoutId": props.get("checkoutId"),
        "checkoutUrl": props.get("checkoutUrl"),
        "totalCents": total,
        "currency": currency,
        "value": value,
        "items": [normal_item(i) for i in items] if isinstance(items, list) else [],
        "properties": props,
    }


def subscriber_data(sub: Subscriber) -> dict[str, Any]:
    """The subscriber as templates see it (Sequenzy's field names, attributes also at the top level)."""
    return {
        **sub.attributes,
        "id": sub.id,
        "email": sub.email,
        "firstName": sub.first_name,
        "lastName": sub.last_name,
        "externalId": sub.external_id,
        "phone": sub.phone,
        "status": sub.status,
        "timezone": sub.timezone,
        "tags": list(sub.tags),
        "attributes": dict(sub.attributes),
        "customAttributes": dict(sub.attributes),
    }


def checkout_data(checkout: Checkout) -> dict[str, Any]:
    """The latest snapshot of a cart: templates show this, so a cart changed after the event shows as it
    is now."""
    return {
        "checkoutId": checkout.checkout_id,
        "checkoutUrl": checkout.checkout_url,
        "totalCents": checkout.total_cents,
        "currency": checkout.currency,
        "items": [normal_item(i) for i in checkout.items],
        "properties": dict(checkout.properties),
        "orderId": checkout.order_id,
        "updatedAt": checkout.updated_at.isoformat().replace("+00:00", "Z"),
    }
