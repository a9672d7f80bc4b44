"""Applying Segment messages: each messageId once, a whole batch in one transaction.

The API module turns each message into one of the actions below (Segment's e-commerce events become the
canonical checkouts and orders there). Here every action not applied before is applied, and its messageId
is remembered in the same transaction: a replayed batch, or a message retried inside a later batch,
changes nothing, not even a subscriber's traits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cartback.core import checkouts, events, identities, orders, subscribers
from cartback.store import orders as order_store
from cartback.store import segment_messages as store
from cartback.store.db import Tx

SOURCE = "segment"


@dataclass(frozen=True)
class Identify:
    identity: subscribers.Identity


@dataclass(frozen=True)
class Track:
    """Any track that is neither a checkout nor an order: an event by its (canonical) name."""

    identity: subscribers.Identity
    name: str
    properties: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class Checkout:
    data: checkouts.CheckoutInput


@dataclass(frozen=True)
class Order:
    """Order Completed, Refunded or Cancelled. Amounts are in minor units; None where the message gave
    none. A refund or cancellation of a known order keeps its total and currency: Segment's `total` on
    Order Refunded is the amount refunded, not a new order total."""

    identity: subscribers.Identity
    order_id: str
    status: str
    currency: str | None
    total_cents: int | None
    items: list[dict[str, Any]]
    properties: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True)
class Alias:
    """`previous_id` (an anonymousId or an earlier userId) is now known as `user_id`."""

    previous_id: str
    user_id: str


@dataclass(frozen=True)
class Ignored:
    """A call with nothing to store: accepted and remembered by its messageId."""


Action = Identify | Track | Checkout | Order | Alias | Ignored


@dataclass(frozen=True)
class Message:
    message_id: str
    type: str
    action: Action


@dataclass(frozen=True)
class Outcome:
    applied: int
    replayed: int


def apply_batch(tx: Tx, workspace_id: str, messages: list[Message], now: datetime) -> Outcome:
    """Apply every message whose messageId is new, in order. A messageId repeated inside the batch counts
    once, as a replay of its first occurrence."""
    done = store.seen(tx, workspace_id, [m.message_id for m in messages])
    applied: list[tuple[str, str]] = []
    for message in messages:
        if message.message_id in done:
            continue
        done.add(message.message_id)
        _apply(tx, workspace_id, message, now)
        applied.append((message.message_id, message.type))
    store.add(tx, workspace_id, applied, now)
    return Outcome(applied=len(applied), replayed=len(messages) - len(applied))


def _identity(action: Action) -> subscribers.Identity | None:
    if isinstance(action, Identify | Track | Order):
        return action.identity
    if isinstance(action, Checkout):
        return action.data.customer
    return None


def _with_identity(action: Action, identity: subscribers.Identity) -> Action:
    if isinstance(action, Identify | Track | Order):
        return replace(action, identity=identity)
    if isinstance(action, Checkout):
        return replace(action, data=replace(action.data, customer=identity))
    return action


def _apply(tx: Tx, workspace_id: str, message: Message, now: datetime) -> None:
    action = message.action
    identity = _identity(action)
    if identity is not None:
        # A call naming both an anonymousId and a known person merges the anonymous profile first, so
        # what it recorded and what this call records end up on one subscriber.
        linked = identities.link(tx, workspace_id, identity, now)
        if linked is not identity:
            action = _with_identity(action, linked)
    if isinstance(action, Alias):
        identities.alias(tx, workspace_id, action.previous_id, action.user_id, now)
    elif isinstance(action, Identify):
        subscribers.upsert(tx, workspace_id, action.identity, now)
    elif isinstance(action, Checkout):
        checkouts.record_checkout(tx, workspace_id, action.data, now)
    elif isinstance(action, Order):
        orders.record_order(tx, workspace_id, _order_input(tx, workspace_id, action), now)
    elif isinstance(action, Track):
        sub, _ = subscribers.upsert(tx, workspace_id, action.identity, now)
        events.record(
            tx,
            workspace_id,
            name=action.name,
            source=SOURCE,
            subscriber_id=sub.id,
            properties=action.properties,
            now=now,
            occurred_at=action.occurred_at,
            idempotency_key=f"segment:{message.message_id}",
        )


def _order_input(tx: Tx, workspace_id: str, action: Order) -> orders.OrderInput:
    existing = order_store.find(tx, workspace_id, action.order_id)
    items_total = sum(int(i.get("priceCents") or 0) * int(i.get("quantity") or 0) for i in action.items)
    given = action.total_cents if action.total_cents is not None else items_total
    data = orders.OrderInput(
        order_id=action.order_id,
        customer=action.identity,
        currency=action.currency or (existing.currency if existing else "USD"),
        total_cents=given,
        status=action.status,
        items=action.items,
        properties=action.properties,
        ordered_at=action.occurred_at if action.status == "placed" or existing is None else None,
        source=SOURCE,
    )
    if action.status == "placed" or existing is None:
        return data
    # A refund or cancellation of an order already known: its total stays; a refund smaller than it is
    # partial, anything else (or no amount) a full refund.
    refund = None
    if action.status == "refunded" and action.total_cents is not None:
        refund = action.total_cents if action.total_cents < existing.total_cents else None
    return replace(
        data,
        currency=existing.currency,
        total_cents=existing.total_cents,
        refund_amount_cents=refund,
    )
