"""Ingest from the tracking APIs (Klaviyo's events, Segment's calls): one path for both.

Each API's mapper turns what it received into the actions below, plain data decided before any
transaction; `apply` runs a whole request's actions in one transaction of the group-commit writer.
Checkouts, orders and events then go through the same core rules as the Sequenzy API's
(`core.checkouts`, `core.orders`, `core.profiles`), so no surface has rules of its own.

A message may carry the sender's message id (Segment's messageId): it is applied once per workspace,
and remembered in the same transaction, so a replayed batch, or a message retried inside a later batch,
changes nothing, not even a subscriber's traits. Events without one (Klaviyo's) are deduplicated by
their own unique id, per profile and metric."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cartback.core import checkouts, events, identities, orders, profiles, subscribers, suppressions
from cartback.store import segment_messages as message_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx


@dataclass(frozen=True)
class ProfileChange:
    """The person the identity names, created or updated with its names and attributes."""

    identity: subscribers.Identity
    profile_id: str | None = None
    # The person's email marketing consent as a store platform records it (core.suppressions applies it).
    consent: suppressions.Consent | None = None


@dataclass(frozen=True)
class CheckoutStarted:
    data: checkouts.CheckoutInput
    profile_id: str | None = None


@dataclass(frozen=True)
class OrderStatusChange:
    """An order placed, fulfilled, cancelled or refunded (`core.orders` says what each does)."""

    data: orders.OrderInput
    profile_id: str | None = None


@dataclass(frozen=True)
class CustomEvent:
    """Any event that is neither a checkout nor an order, by its (canonical) name. `unique_id` makes it
    this event: per profile and name (Klaviyo), or across the workspace (`global_id`: Segment's
    messageId, which names one message whoever it is about)."""

    identity: subscribers.Identity
    name: str
    properties: dict[str, Any]
    occurred_at: datetime | None
    unique_id: str
    source: str
    global_id: bool = False
    profile_id: str | None = None


@dataclass(frozen=True)
class Alias:
    """`previous_id` (an anonymous id or an earlier userId) is now known as `user_id`."""

    previous_id: str
    user_id: str


@dataclass(frozen=True)
class Ignored:
    """A call with nothing to store: accepted and, with a message id, remembered."""


Action = ProfileChange | CheckoutStarted | OrderStatusChange | CustomEvent | Alias | Ignored


@dataclass(frozen=True)
class Message:
    action: Action
    # The sender's id of the message, applied once per workspace; None: the action dedupes itself.
    message_id: str | None = None
    # The sender's name for the kind of message, kept with the message id (identify, track...).
    type: str = "track"


@dataclass(frozen=True)
class Outcome:
    applied: int
    replayed: int


@dataclass(frozen=True)
class Request:
    """One request's messages as `apply_many` takes them: which workspace, what, when received."""

    workspace_id: str
    messages: list[Message]
    now: datetime


def apply(tx: Tx, workspace_id: str, messages: list[Message], now: datetime) -> Outcome:
    """Apply every message, in order, except those whose message id was applied before. A message id
    repeated inside the batch counts once, as a replay of its first occurrence."""
    done = message_store.seen(tx, workspace_id, [m.message_id for m in messages if m.message_id])
    remembered: list[tuple[str, str]] = []
    applied = 0
    for message in messages:
        if message.message_id is not None:
            if message.message_id in done:
                continue
            done.add(message.message_id)
            remembered.append((message.message_id, message.type))
        _apply(tx, workspace_id, message.action, now)
        applied += 1
    message_store.add(tx, workspace_id, remembered, now)
    return Outcome(applied=applied, replayed=len(messages) - applied)


def apply_many(tx: Tx, requests: list[Request]) -> list[Outcome]:
    """`apply` for each request, as if run one after the other in this order, in fewer statements: the
    message ids are looked up once per workspace and remembered with one executemany, and a started
    checkout that `checkouts.record_new` can store set-wise (a new checkout by a new person) is stored so
    when no earlier action names its checkout, email or anonymous id, nor changes an order in its
    workspace (an order links its checkout). Every other action is then applied one by one, in order.
    Running those after the set-wise ones changes nothing: what those store is nothing an earlier action
    could find or change, so each person's events keep their order. The group-commit writer calls this
    with the requests of one commit (Database.write_each)."""
    wanted: dict[str, list[str]] = {}
    for request in requests:
        ids = [m.message_id for m in request.messages if m.message_id is not None]
        if ids:
            wanted.setdefault(request.workspace_id, []).extend(ids)
    done = {workspace_id: message_store.seen(tx, workspace_id, ids) for workspace_id, ids in wanted.items()}
    remembered: list[tuple[str, str, str, datetime]] = []
    actions: list[tuple[str, Action, datetime]] = []
    outcomes: list[Outcome] = []
    for request in requests:
        applied = 0
        for message in request.messages:
            if message.message_id is not None:
                seen = done[request.workspace_id]
                if message.message_id in seen:
                    continue
                seen.add(message.message_id)
                remembered.append((request.workspace_id, message.message_id, message.type, request.now))
            actions.append((request.workspace_id, message.action, request.now))
            applied += 1
        outcomes.append(Outcome(applied=applied, replayed=len(request.messages) - applied))

    named: set[tuple[str, str, str]] = set()
    ordered: set[str] = set()  # workspaces where an earlier action changes an order
    started: dict[int, checkouts.CheckoutRequest] = {}
    for k, (workspace_id, action, now) in enumerate(actions):
        names = _names(workspace_id, action)
        if (
            isinstance(action, CheckoutStarted)
            and action.profile_id is None
            and workspace_id not in ordered
            and named.isdisjoint(names)
        ):
            started[k] = checkouts.CheckoutRequest(workspace_id, action.data, now)
        named |= names
        if isinstance(action, OrderStatusChange):
            ordered.add(workspace_id)
    positions = list(started)
    stored = {positions[i] for i in checkouts.record_new(tx, list(started.values()))}
    for k, (workspace_id, action, now) in enumerate(actions):
        if k not in stored:
            _apply(tx, workspace_id, action, now)
    message_store.add_many(tx, remembered)
    return outcomes


def _names(workspace_id: str, action: Action) -> set[tuple[str, str, str]]:
    """The emails, external ids, anonymous ids, phones and checkouts by which `action` may find or change
    a person or a checkout, besides those it finds through a stored row (a profile id, an order's
    customer), which a new checkout by a new person cannot be."""
    if isinstance(action, Alias):
        return {
            (workspace_id, "anonymous", action.previous_id),
            (workspace_id, "external", action.previous_id),
            (workspace_id, "external", action.user_id),
        }
    if isinstance(action, ProfileChange | CustomEvent):
        identity = action.identity
    elif isinstance(action, CheckoutStarted | OrderStatusChange):
        identity = action.data.customer
    else:
        return set()
    names = set()
    if identity.email:
        names.add((workspace_id, "email", subscriber_store.email_key(identity.email)))
    for kind, value in (
        ("external", identity.external_id),
        ("anonymous", identity.anonymous_id),
        ("phone", identity.phone),
    ):
        if value:
            names.add((workspace_id, kind, value))
    if isinstance(action, CheckoutStarted):
        names.add((workspace_id, "checkout", action.data.checkout_id))
    return names


def _identity(
    tx: Tx, workspace_id: str, identity: subscribers.Identity, profile_id: str | None, now: datetime
) -> subscribers.Identity:
    """The identity to apply: completed from the profile an id names, and with an anonymous profile now
    named beside an email or externalId merged into that person first, so that what it recorded and
    what this call records end up on one subscriber."""
    identity = profiles.complete(tx, workspace_id, identity, profile_id)
    return identities.link(tx, workspace_id, identity, now)


def _apply(tx: Tx, workspace_id: str, action: Action, now: datetime) -> None:
    if isinstance(action, Alias):
        identities.alias(tx, workspace_id, action.previous_id, action.user_id, now)
    elif isinstance(action, ProfileChange):
        who = _identity(tx, workspace_id, action.identity, action.profile_id, now)
        sub, _ = subscribers.upsert(tx, workspace_id, who, now)
        # The consent is the named address's: the one the platform sent, else the person's own.
        address = who.email or sub.email
        if action.consent is not None and address:
            suppressions.apply_consent(tx, workspace_id, address, action.consent, now)
    elif isinstance(action, CheckoutStarted):
        who = _identity(tx, workspace_id, action.data.customer, action.profile_id, now)
        checkouts.record_checkout(tx, workspace_id, replace(action.data, customer=who), now)
    elif isinstance(action, OrderStatusChange):
        customer = action.data.customer
        if not customer.names_someone() and action.profile_id is None:
            # A report naming only the order (a store platform's refund): the order's own customer; an
            # order never seen has nobody to attach it to, and nothing is stored.
            known = orders.known_customer(tx, workspace_id, action.data.order_id)
            if known is None:
                return
            customer = known
        who = _identity(tx, workspace_id, customer, action.profile_id, now)
        orders.record_order(tx, workspace_id, replace(action.data, customer=who), now)
    elif isinstance(action, CustomEvent):
        who = _identity(tx, workspace_id, action.identity, action.profile_id, now)
        if action.global_id:
            sub, _ = subscribers.upsert(tx, workspace_id, who, now)
            events.record(
                tx,
                workspace_id,
                name=action.name,
                source=action.source,
                subscriber_id=sub.id,
                properties=action.properties,
                now=now,
                occurred_at=action.occurred_at,
                idempotency_key=f"{action.source}:{action.unique_id}",
            )
        else:
            profiles.record_event(
                tx,
                workspace_id,
                who,
                name=action.name,
                properties=action.properties,
                unique_id=action.unique_id,
                occurred_at=action.occurred_at,
                now=now,
                source=action.source,
            )
