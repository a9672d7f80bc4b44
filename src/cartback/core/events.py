"""One event model for every surface: canonical names, their vendor aliases, and appending to the log
with strict idempotency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cartback import ids, money
from cartback.store import events as event_store
from cartback.store.db import Tx

CHECKOUT_STARTED = "ecommerce.checkout_started"
ORDER_PLACED = "ecommerce.order_placed"
ORDER_CANCELLED = "ecommerce.order_cancelled"
ORDER_FULFILLED = "ecommerce.order_fulfilled"
ORDER_REFUNDED = "ecommerce.order_refunded"
# Not a checkout or an order, but named like them so sequences and filters can rely on one name.
PRODUCT_ADDED = "ecommerce.product_added"

# Segment's page, screen and group calls (docs/segment.md): what was viewed, which group (account) the
# person belongs to.
PAGE_VIEWED = "page.viewed"
SCREEN_VIEWED = "screen.viewed"
GROUP_JOINED = "group.joined"

# cartback's own events about a subscriber changing, appended with source "cartback" so automations can
# trigger on them. Properties: {"tag"} for tags, {"listId", "listName"} for lists.
SUBSCRIBER_CREATED = "subscriber.created"
TAG_ADDED = "subscriber.tag_added"
TAG_REMOVED = "subscriber.tag_removed"
LIST_ADDED = "subscriber.list_added"
LIST_REMOVED = "subscriber.list_removed"
SOURCE_CARTBACK = "cartback"

ORDER_EVENTS = {
    "placed": ORDER_PLACED,
    "cancelled": ORDER_CANCELLED,
    "fulfilled": ORDER_FULFILLED,
    "refunded": ORDER_REFUNDED,
}

# Names other surfaces use for the canonical events (CONTRACT.md, "One event model").
ALIASES = {
    "Started Checkout": CHECKOUT_STARTED,
    "Checkout Started": CHECKOUT_STARTED,
    "Placed Order": ORDER_PLACED,
    "Order Completed": ORDER_PLACED,
    "Cancelled Order": ORDER_CANCELLED,
    "Order Cancelled": ORDER_CANCELLED,
    "Refunded Order": ORDER_REFUNDED,
    "Order Refunded": ORDER_REFUNDED,
    "Fulfilled Order": ORDER_FULFILLED,
    "Product Added": PRODUCT_ADDED,
}

# The names cartback itself produces or maps to: a sequence may wait for any of them before one has been
# seen. (A store's own custom names are known once the workspace has received one.)
KNOWN_NAMES = frozenset(
    {
        CHECKOUT_STARTED,
        *ORDER_EVENTS.values(),
        PRODUCT_ADDED,
        PAGE_VIEWED,
        SCREEN_VIEWED,
        GROUP_JOINED,
        SUBSCRIBER_CREATED,
        TAG_ADDED,
        TAG_REMOVED,
        LIST_ADDED,
        LIST_REMOVED,
        *(
            f"email.{what}"
            for what in (
                "sent",
                "opened",
                "clicked",
                "bounced",
                "complained",
                "unsubscribed",
                "delivery_delayed",
            )
        ),
    }
)

# An event that happened longer ago than this is history being imported: kept, but it starts no flow.
HISTORICAL_AFTER = timedelta(hours=1)


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def value_of(properties: dict[str, Any]) -> float | None:
    """What metric aggregates sum for an event: its `value` (Klaviyo's field, an order's total), or a
    checkout's or order's totalCents in major units when it has no value."""
    value = properties.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    cents = properties.get("totalCents")
    if isinstance(cents, int) and not isinstance(cents, bool):
        currency = properties.get("currency")
        return float(money.to_major(cents, currency if isinstance(currency, str) else None))
    return None


@dataclass(frozen=True)
class Recorded:
    event: event_store.Event
    duplicate: bool


def record(
    tx: Tx,
    workspace_id: str,
    *,
    name: str,
    source: str,
    subscriber_id: str | None,
    properties: dict[str, Any],
    now: datetime,
    occurred_at: datetime | None = None,
    idempotency_key: str | None = None,
    known_new: bool = False,
) -> Recorded:
    """Append an event unless one with the same idempotency key exists; then return that one.
    `known_new`: the caller has just seen, in this transaction, that the key is unused (a checkout that
    does not exist yet cannot have its event), so the lookup is skipped; the unique constraint still
    guards against a concurrent writer."""
    if idempotency_key is not None and not known_new:
        existing = event_store.find_by_key(tx, workspace_id, idempotency_key)
        if existing is not None:
            return Recorded(existing, duplicate=True)
    event = new(
        workspace_id,
        name=name,
        source=source,
        subscriber_id=subscriber_id,
        properties=properties,
        now=now,
        occurred_at=occurred_at,
        idempotency_key=idempotency_key,
    )
    event_store.append(tx, event)
    return Recorded(event, duplicate=False)


def new(
    workspace_id: str,
    *,
    name: str,
    source: str,
    subscriber_id: str | None,
    properties: dict[str, Any],
    now: datetime,
    occurred_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> event_store.Event:
    """An event as `record` appends it, not yet stored (for `record_many`)."""
    occurred = occurred_at or now
    return event_store.Event(
        id=ids.new_id("evt"),
        workspace_id=workspace_id,
        subscriber_id=subscriber_id,
        name=canonical_name(name),
        source=source,
        properties=properties,
        occurred_at=occurred,
        received_at=now,
        idempotency_key=idempotency_key,
        historical=now - occurred > HISTORICAL_AFTER,
        value=value_of(properties),
    )


def record_many(tx: Tx, batch: list[event_store.Event]) -> None:
    """Append events made by `new` in one statement, leaving out those whose idempotency key is used
    already (by the log or earlier in `batch`)."""
    event_store.append_new(tx, batch)
