"""Orders: one row per orderId holding its latest status, one event per status reached, and the
subscriber's revenue attributes recomputed from their orders so refunds and cancellations stay right."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cartback import ids
from cartback.core import events, money, subscribers
from cartback.store import checkouts as checkout_store
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
    order_id: str
    customer: subscribers.Identity
    currency: str
    total_cents: int
    status: str = "placed"
    order_number: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    ordered_at: datetime | None = None
    refund_amount_cents: int | None = None
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


def record_order(tx: Tx, workspace_id: str, data: OrderInput, now: datetime) -> OrderRecorded:
    subscriber, _ = subscribers.upsert(tx, workspace_id, data.customer, now)
    existing = store.find(tx, workspace_id, data.order_id)
    if existing is None:
        order = Order(
            id=ids.new_id("ord"),
            workspace_id=workspace_id,
            order_id=data.order_id,
            order_number=data.order_number,
            subscriber_id=subscriber.id,
            checkout_id=data.checkout_id,
            status=data.status,
            currency=data.currency,
            total_cents=data.total_cents,
            refund_amount_cents=data.refund_amount_cents,
            items=data.items,
            properties=data.properties,
            ordered_at=data.ordered_at or now,
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
            currency=data.currency,
            total_cents=data.total_cents,
            refund_amount_cents=_refund_after(existing, data),
            items=data.items or existing.items,
            properties={**existing.properties, **data.properties},
            ordered_at=data.ordered_at or existing.ordered_at,
        )
        if order != existing:
            order = replace(order, updated_at=now)
            store.save(tx, order)

    if order.checkout_id:
        checkout_store.link_order(tx, workspace_id, order.checkout_id, order.order_id, now)

    # Every order was placed, whatever status it is first seen in; then the status it is in now.
    reached = ["placed"] if order.status == "placed" else ["placed", order.status]
    event_ids, duplicate = [], True
    for status in reached:
        recorded = events.record(
            tx,
            workspace_id,
            name=events.ORDER_EVENTS[status],
            source=data.source,
            subscriber_id=subscriber.id,
            properties=event_properties(order),
            now=now,
            occurred_at=order.ordered_at if status == "placed" else now,
            idempotency_key=f"order:{order.order_id}:{status}",
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


def _refund_after(existing: Order, data: OrderInput) -> int | None:
    """Each push describes the order as it is now. A `refunded` push without an amount is a full refund
    (None), even after an earlier partial one; other statuses keep the amount already known."""
    if data.refund_amount_cents is not None or data.status == "refunded":
        return data.refund_amount_cents
    return existing.refund_amount_cents


def net_cents(order: Order) -> int:
    """What the customer finally paid for this order."""
    return net_of(order.status, order.total_cents, order.refund_amount_cents)


def net_of(status: str, total_cents: int, refund_amount_cents: int | None) -> int:
    """Nothing for a cancelled or fully refunded order; the total less the refund otherwise."""
    if status == "cancelled":
        return 0
    if status == "refunded" and refund_amount_cents is None:
        return 0
    return max(total_cents - (refund_amount_cents or 0), 0)


def revenue_attributes(orders: list[Order], totals: CustomerTotals | None = None) -> dict[str, Any]:
    """ordersCount, totalSpent, ltv, aov, lastOrderAt as Sequenzy shows them in customAttributes.

    Amounts are summed in one currency only, the one of the latest order; orders in other currencies
    are left out rather than added to a meaningless total. Cancelled and fully refunded orders do not
    count; a partial refund lowers the total. Totals sent by the shop (customerTotals) win, since the
    shop knows orders placed before cartback was connected."""
    if not orders:
        return {}
    currency = max(orders, key=lambda o: (o.ordered_at, o.created_at)).currency
    counted = [o for o in orders if o.currency == currency and net_cents(o) > 0]
    count = len(counted)
    spent = sum(net_cents(o) for o in counted)
    if totals is not None:
        count = totals.orders_count if totals.orders_count is not None else count
        spent = totals.total_spent_cents if totals.total_spent_cents is not None else spent
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
