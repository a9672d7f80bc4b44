"""Orders: one row per orderId holding its latest status and what was refunded of it, one event per
status reached (one per refund), and the figures every surface shows of a customer's orders.

The one order-status rule, whichever API reports the change:

* every order was placed, whatever status it is first seen in; its total is set when it is placed (or
  when a Sequenzy push states it) and a later status change keeps it;
* refunds accumulate: each refund event with its own id is kept as its own event and adds its amount
  to the order's refunded amount, capped at the order's total; a refund without an amount refunds
  the rest. A Sequenzy push states the refunded amount so far instead, and that amount is taken;
* a cancellation (with an amount or without) voids the whole order;
* every status change keeps the sender's time: the event occurs when the sender says it did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cartback import ids, money
from cartback.core import events, subscribers
from cartback.store import checkouts as checkout_store
from cartback.store import events as event_store
from cartback.store import orders as store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.orders import Order

STATUSES = tuple(events.ORDER_EVENTS)


@dataclass(frozen=True)
class CustomerTotals:
    """What the shop itself knows of the customer's history, orders cartback never saw included."""

    orders_count: int | None = None
    total_spent_cents: int | None = None


@dataclass(frozen=True)
class OrderInput:
    """One report of an order: it was placed, or it changed status.

    `total_cents` is the order's total when the sender states it (a Sequenzy push, a placed order);
    None keeps the known total. `amount_cents` is the amount a status event carries (Klaviyo's value,
    Segment's total): for a refund the amount refunded, and the order's total when the order was never
    seen before. `refund_amount_cents` is a Sequenzy push's statement of everything refunded so far.
    `event_id` is the sender's own id of this event (Klaviyo's unique_id, Segment's messageId): each
    refund with its own id is a refund of its own. `occurred_at` is when the change happened."""

    order_id: str
    customer: subscribers.Identity
    currency: str | None
    total_cents: int | None
    status: str = "placed"
    order_number: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    ordered_at: datetime | None = None
    refund_amount_cents: int | None = None
    amount_cents: int | None = None
    event_id: str | None = None
    occurred_at: datetime | None = None
    customer_totals: CustomerTotals | None = None
    source: str = "sequenzy"

    @property
    def checkout_id(self) -> str | None:
        value = self.properties.get("checkoutId")
        return str(value) if value not in (None, "") else None


@dataclass(frozen=True)
class OrderRecorded:
    order_id: str
    subscriber_id: str
    status: str
    event_ids: list[str]
    duplicate: bool


def event_properties(order: Order) -> dict[str, Any]:
    return {
        **order.properties,
        "orderId": order.order_id,
        "orderNumber": order.order_number,
        "status": order.status,
        "checkoutId": order.checkout_id,
        "totalCents": order.total_cents,
        "currency": order.currency,
        "value": money.to_major(order.total_cents, order.currency),
        "refundAmountCents": order.refund_amount_cents,
        "items": order.items,
    }


def refund_properties(order: Order, refund_cents: int) -> dict[str, Any]:
    """A refund event's properties: the order as it is after the refund, with this refund's own amount
    as `refundCents` and as the `value` that metric aggregates sum."""
    return {
        **event_properties(order),
        "refundCents": refund_cents,
        "value": money.to_major(refund_cents, order.currency),
    }


def _event_key(order_id: str, status: str, refund_key: str | None) -> str:
    if status != "refunded" or refund_key is None:
        return f"order:{order_id}:{status}"
    # Hashed: a sender's id may be long and the key column is not (300 characters: an order id of 255
    # leaves room for 24 hex digits).
    digest = hashlib.sha256(refund_key.encode()).hexdigest()[:24]
    return f"order:{order_id}:refunded:{digest}"


def _refund_key(data: OrderInput, refunded_after: int) -> str:
    """What makes a refund this one: the sender's event id; for a Sequenzy push, which states the order
    as it is, the refunded amount it reaches (the same push again is the same refund)."""
    if data.event_id is not None:
        return f"{data.source}:{data.event_id}"
    return f"{data.source}:total:{refunded_after}"


def _total(existing: Order | None, data: OrderInput) -> int:
    if data.total_cents is not None:
        return data.total_cents
    if existing is not None:
        return existing.total_cents
    # First seen in a later status: what that event carries is all that is known of the order.
    return data.amount_cents or 0


def _refunded_after(existing: Order | None, data: OrderInput, total: int) -> int:
    before = existing.refund_amount_cents if existing is not None else 0
    if data.refund_amount_cents is not None:
        stated = data.refund_amount_cents  # a Sequenzy push: everything refunded so far
    elif data.status != "refunded":
        stated = before
    elif existing is None or data.amount_cents is None:
        stated = total  # a refund without an amount, or of an order never seen: the whole order
    else:
        stated = before + data.amount_cents
    return min(stated, total)


def known_customer(tx: Tx, workspace_id: str, order_id: str) -> subscribers.Identity | None:
    """The person a known order belongs to, for a report that names only the order (a store platform's
    refund or status webhook); None when the order was never seen."""
    order = store.find(tx, workspace_id, order_id)
    if order is None:
        return None
    sub = subscriber_store.find_by_id(tx, workspace_id, order.subscriber_id)
    if sub is None:
        return None
    return subscribers.Identity(email=sub.email, external_id=sub.external_id, anonymous_id=sub.anonymous_id)


def _legacy_refund(
    tx: Tx, workspace_id: str, existing: Order, data: OrderInput, status_key: str
) -> event_store.Event | None:
    """The refund event stored before refunds accumulated (migration 0017), when this refund is the one it
    records, now keyed as this refund; else None.

    Back then an order had one refund event, keyed `order:<id>:refunded`, that kept neither Klaviyo's
    unique_id nor Segment's messageId; migration 0017 re-keyed a Sequenzy push's (its amount says which
    refund it is), but a sender's id cannot be recovered. So a refund with a sender's id whose amount is
    the one that event recorded (`refundAmountCents`; none: the whole order) is taken for it, sent again
    (a retry after the upgrade), and the event takes this refund's key: the refund is not added twice,
    and a later refund of the same amount is a new one."""
    if data.event_id is None:
        return None
    legacy = event_store.find_by_key(tx, workspace_id, _event_key(data.order_id, "refunded", None))
    if legacy is None or legacy.source != data.source:
        return None
    recorded = legacy.properties.get("refundAmountCents")
    amount = data.amount_cents
    if recorded is None or recorded == existing.total_cents:
        same = amount is None or amount >= existing.total_cents
    else:
        same = amount == recorded
    if not same:
        return None
    event_store.set_key(tx, workspace_id, legacy.id, status_key)
    return legacy


def record_order(tx: Tx, workspace_id: str, data: OrderInput, now: datetime) -> OrderRecorded:
    """Apply one order report by the rule above. A report already applied (the same status, the same
    refund) changes nothing and comes back as a duplicate."""
    subscriber, _ = subscribers.upsert(tx, workspace_id, data.customer, now)
    existing = store.find(tx, workspace_id, data.order_id)
    total = _total(existing, data)
    refunded = _refunded_after(existing, data, total)
    refund_key = _refund_key(data, refunded) if data.status == "refunded" else None
    status_key = _event_key(data.order_id, data.status, refund_key)
    if existing is not None and data.status == "refunded":
        applied = event_store.find_by_key(tx, workspace_id, status_key) or _legacy_refund(
            tx, workspace_id, existing, data, status_key
        )
        if applied is not None:
            # This very refund again (a retry): it was added once, and nothing changes now.
            placed = event_store.find_by_key(tx, workspace_id, _event_key(data.order_id, "placed", None))
            event_ids = [e.id for e in (placed, applied) if e is not None]
            return OrderRecorded(existing.order_id, subscriber.id, existing.status, event_ids, True)
    refund_cents = refunded - (existing.refund_amount_cents if existing is not None else 0)
    ordered_at = data.ordered_at or (
        data.occurred_at if data.status == "placed" or existing is None else None
    )
    currency = data.currency or (existing.currency if existing is not None else "USD")
    if existing is None:
        order = Order(
            id=ids.new_id("ord"),
            workspace_id=workspace_id,
            order_id=data.order_id,
            order_number=data.order_number,
            subscriber_id=subscriber.id,
            checkout_id=data.checkout_id,
            status=data.status,
            currency=currency,
            total_cents=total,
            refund_amount_cents=refunded,
            items=data.items,
            properties=data.properties,
            ordered_at=ordered_at or now,
            created_at=now,
            updated_at=now,
        )
        store.insert(tx, order)
    else:
        order = replace(
            existing,
            order_number=data.order_number or existing.order_number,
            checkout_id=data.checkout_id or existing.checkout_id,
            status=data.status,
            # A status change of a known order keeps its currency and total unless the sender states them.
            currency=currency if data.total_cents is not None else existing.currency,
            total_cents=total,
            refund_amount_cents=refunded,
            items=data.items or existing.items,
            properties={**existing.properties, **data.properties},
            ordered_at=ordered_at or existing.ordered_at,
        )
        if order != existing:
            order = replace(order, updated_at=now)
            store.save(tx, order)

    if order.checkout_id:
        checkout_store.link_order(tx, workspace_id, order.checkout_id, order.order_id, now)

    # Every order was placed, whatever status it is first seen in; then the status it is in now.
    reached = ["placed"] if data.status == "placed" else ["placed", data.status]
    event_ids, duplicate = [], True
    for status in reached:
        if status == "refunded":
            properties = refund_properties(order, max(refund_cents, 0))
        else:
            properties = event_properties(order)
        recorded = events.record(
            tx,
            workspace_id,
            name=events.ORDER_EVENTS[status],
            source=data.source,
            subscriber_id=subscriber.id,
            properties=properties,
            now=now,
            occurred_at=order.ordered_at if status == "placed" else (data.occurred_at or now),
            idempotency_key=_event_key(order.order_id, status, refund_key),
        )
        event_ids.append(recorded.event.id)
        duplicate = duplicate and recorded.duplicate

    attributes = {
        **subscriber.attributes,
        **revenue_attributes(store.for_subscriber(tx, workspace_id, subscriber.id), data.customer_totals),
    }
    if attributes != subscriber.attributes:
        subscriber_store.save(tx, subscriber.with_changes(attributes=attributes, updated_at=now))
    return OrderRecorded(
        order.order_id, subscriber.id, order.status, event_ids, duplicate and existing is not None
    )


def net_cents(order: Order) -> int:
    """What the customer finally paid for this order."""
    return net_of(order.status, order.total_cents, order.refund_amount_cents)


def net_of(status: str, total_cents: int, refunded_cents: int) -> int:
    """Nothing for a cancelled order; the total less what was refunded otherwise."""
    if status == "cancelled":
        return 0
    return max(total_cents - refunded_cents, 0)


@dataclass(frozen=True)
class OrderTotals:
    """A customer's orders in one currency, as every surface shows them: the orders that still count
    (neither cancelled nor refunded in full), what they came to net of refunds, and what was refunded."""

    currency: str
    orders: int
    spent_cents: int
    refunded_cents: int


def totals(orders: list[Order]) -> list[OrderTotals]:
    """Per currency, in currency order. Amounts of different currencies are never added together."""
    out: dict[str, OrderTotals] = {}
    for order in orders:
        net = net_cents(order)
        refunded = 0 if order.status == "cancelled" else min(order.refund_amount_cents, order.total_cents)
        was = out.get(order.currency, OrderTotals(order.currency, 0, 0, 0))
        out[order.currency] = OrderTotals(
            order.currency,
            was.orders + (1 if net > 0 else 0),
            was.spent_cents + net,
            was.refunded_cents + refunded,
        )
    return [out[c] for c in sorted(out)]


def totals_for(tx: Tx, workspace_id: str, subscriber_id: str) -> list[OrderTotals]:
    """The customer's order totals per currency (the dashboard's person page)."""
    return totals(store.for_subscriber(tx, workspace_id, subscriber_id))


def revenue_attributes(orders: list[Order], customer: CustomerTotals | None = None) -> dict[str, Any]:
    """ordersCount, totalSpent, ltv, aov, lastOrderAt as Sequenzy shows them in customAttributes (and
    Klaviyo in the profile's properties).

    The figures are `totals` of one currency, the one of the latest order: the same counts and amounts
    the person page shows for it. Totals sent by the shop (customerTotals) win, since the shop knows
    orders placed before cartback was connected."""
    if not orders:
        return {}
    currency = max(orders, key=lambda o: (o.ordered_at, o.created_at)).currency
    mine = next(t for t in totals(orders) if t.currency == currency)
    count, spent = mine.orders, mine.spent_cents
    if customer is not None:
        count = customer.orders_count if customer.orders_count is not None else count
        spent = customer.total_spent_cents if customer.total_spent_cents is not None else spent
    last = max((o.ordered_at for o in orders if o.status != "cancelled"), default=None)
    return {
        "ordersCount": count,
        "totalSpentCents": spent,
        "totalSpent": money.to_major(spent, currency),
        "ltv": money.to_major(spent, currency),
        "aov": money.to_major(round(spent / count), currency) if count else 0,
        "currency": currency,
        "lastOrderAt": last.isoformat().replace("+00:00", "Z") if last else None,
    }
