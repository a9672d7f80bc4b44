"""Recovered revenue: which sequence email, if any, earned an order.

The rules (docs/analytics.md has them for users):

- A *touch* is a sequence email the order's subscriber clicked or opened (each click and open counts, not
  only the first) or received (the transport accepted it).
- A touch qualifies when it happened at or before the order and no longer before it than the window:
  `engagement_window` (5 days, Klaviyo's default) for clicks and opens, `receipt_window` (1 day) for
  receipts. Both ends are inclusive: a click exactly 5 days before the order counts.
- If the order names a checkout (`checkoutId`) and qualifying touches come from the enrollment that
  checkout started, that enrollment wins over any other sequence, even one touched later (kind
  `checkout`): the email about this very cart recovered it.
- Otherwise the last touch wins, engagement before receipt: the latest click or open; only if there is
  none, the latest receipt. At the same instant a click beats an open.
- An order is attributed once, when the dispatcher first sees its `ecommerce.order_placed` event; later
  pushes of the same order (refunds, cancellations) change what it is worth, read from `orders` when
  reporting, never whom it is attributed to.

`choose` is pure, so the rules are tested without a database; `attribute` applies them in the dispatcher's
transaction, and `hook` makes that a worker event hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cartback import ids, values
from cartback.core import events
from cartback.store import attributions as store
from cartback.store import events as event_store
from cartback.store.db import Tx
from cartback.store.events import Event

CLICK = "click"
OPEN = "open"
RECEIPT = "receipt"
CHECKOUT = "checkout"
KINDS = (CHECKOUT, CLICK, OPEN, RECEIPT)

# At the same instant, a click says more than an open, an open more than a receipt.
_STRENGTH = {CLICK: 2, OPEN: 1, RECEIPT: 0}


@dataclass(frozen=True)
class Rules:
    engagement_window: timedelta = timedelta(days=5)
    receipt_window: timedelta = timedelta(days=1)

    @property
    def lookback(self) -> timedelta:
        return max(self.engagement_window, self.receipt_window)


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class PlacedOrder:
    order_id: str
    event_id: str
    subscriber_id: str
    checkout_id: str | None
    ordered_at: datetime
    total_cents: int
    currency: str


@dataclass(frozen=True)
class Choice:
    touch: store.Touch
    kind: str


def qualifies(touch: store.Touch, ordered_at: datetime, rules: Rules = DEFAULT_RULES) -> bool:
    if touch.at > ordered_at:
        return False
    window = rules.receipt_window if touch.kind == RECEIPT else rules.engagement_window
    return ordered_at - touch.at <= window


def _last(touches: list[store.Touch]) -> store.Touch:
    # Engagement before receipt, then the latest, then the stronger signal; the message id only makes
    # the answer the same on every run.
    return max(touches, key=lambda t: (t.kind != RECEIPT, t.at, _STRENGTH[t.kind], t.message_id))


def choose(
    touches: Iterable[store.Touch],
    ordered_at: datetime,
    checkout_id: str | None,
    rules: Rules = DEFAULT_RULES,
) -> Choice | None:
    """The touch that earned an order placed at `ordered_at`, or None if no email did."""
    eligible = [t for t in touches if qualifies(t, ordered_at, rules)]
    if not eligible:
        return None
    if checkout_id is not None:
        same_cart = [t for t in eligible if t.checkout_id == checkout_id]
        if same_cart:
            return Choice(_last(same_cart), CHECKOUT)
    best = _last(eligible)
    return Choice(best, best.kind)


def placed_order(event: Event) -> PlacedOrder | None:
    """The order an `ecommerce.order_placed` event describes (core/orders.py writes these properties)."""
    props = event.properties
    order_id, total, currency = props.get("orderId"), props.get("totalCents"), props.get("currency")
    if (
        event.name != events.ORDER_PLACED
        or event.subscriber_id is None
        or not isinstance(order_id, str)
        or not isinstance(total, int)
        or isinstance(total, bool)
        or not isinstance(currency, str)
    ):
        return None
    checkout = props.get("checkoutId")
    return PlacedOrder(
        order_id=order_id,
        event_id=event.id,
        subscriber_id=event.subscriber_id,
        checkout_id=str(checkout) if checkout not in (None, "") else None,
        ordered_at=event.occurred_at,
        total_cents=total,
        currency=currency.upper(),
    )


def attribute(tx: Tx, event: Event, now: datetime, rules: Rules = DEFAULT_RULES) -> store.Attribution | None:
    """Attribute the order of an `ecommerce.order_placed` event, once. Idempotent: a second call for the
    same order (a replayed dispatch, a retried batch) finds the row and does nothing; the unique
    constraint on (workspace, order) holds even if two transactions raced."""
    order = placed_order(event)
    if order is None or store.exists(tx, event.workspace_id, order.order_id):
        return None
    if order.ordered_at < values.EARLIEST:
        # An old record dated before the API bounded times (year 1, say): no email precedes it, and its
        # window would start before the first representable date.
        return None
    touches = store.touches(
        tx, event.workspace_id, order.subscriber_id, order.ordered_at - rules.lookback, order.ordered_at
    )
    choice = choose(touches, order.ordered_at, order.checkout_id, rules)
    if choice is None:
        return None
    touch = choice.touch
    row = store.Attribution(
        id=ids.new_id("att"),
        workspace_id=event.workspace_id,
        order_id=order.order_id,
        order_event_id=order.event_id,
        subscriber_id=order.subscriber_id,
        sequence_id=touch.sequence_id,
        enrollment_id=touch.enrollment_id,
        message_id=touch.message_id,
        node_id=touch.node_id,
        kind=choice.kind,
        touched_at=touch.at,
        ordered_at=order.ordered_at,
        amount_cents=order.total_cents,
        currency=order.currency,
        attributed_at=now,
        value=event.value,
    )
    store.insert(tx, row)
    return row


@dataclass(frozen=True)
class Credit:
    """An attributed order event and the log's `email.sent` event of the email that earned it (None
    when that event is gone)."""

    attribution: store.Attribution
    sent_event_id: str | None


def credits(tx: Tx, workspace_id: str, event_ids: list[str]) -> dict[str, list[Credit]]:
    """The credit of each of these events that is an attributed order, by event id (Klaviyo's
    `include=attributions`)."""
    out: dict[str, list[Credit]] = {}
    for row in store.for_order_events(tx, workspace_id, event_ids):
        # The key the sender gives each message's email.sent event (scheduler/mail_sender.py).
        sent = event_store.find_by_key(tx, workspace_id, f"email.sent:{row.message_id}")
        out.setdefault(row.order_event_id, []).append(Credit(row, sent.id if sent else None))
    return out


def hook(rules: Rules = DEFAULT_RULES) -> Callable[[Tx, Event, datetime, dict[Any, Any]], None]:
    """The worker's event hook: attribution runs in the dispatcher's transaction, after ingest replied, so
    it costs requests nothing, and it commits with the event's `dispatched_at`, so a crash either does
    both or neither."""

    def attribute_event(tx: Tx, event: Event, now: datetime, cache: dict[Any, Any]) -> None:
        if event.name == events.ORDER_PLACED:
            attribute(tx, event, now, rules)

    return attribute_event
