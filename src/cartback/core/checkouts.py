"""A started checkout: remember the latest cart and append ecommerce.checkout_started exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cartback import ids
from cartback.core import events, subscribers
from cartback.store import checkouts as store
from cartback.store import events as event_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx, pipelined


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


@dataclass(frozen=True)
class CheckoutRequest:
    """One started checkout as `record_checkouts` takes it: which workspace, what, when received."""

    workspace_id: str
    data: CheckoutInput
    now: datetime


def record_checkouts(tx: Tx, requests: list[CheckoutRequest]) -> list[CheckoutRecorded]:
    """`record_checkout` for each request, as if run one after the other, in fewer statements: the
    commonest request, a new checkout by a new person named by email alone, is stored set-wise
    (`record_new`). The rest (a retry or a changed cart, someone already known, a person named by other
    ids, a checkout or an email seen earlier in `requests`) then go one by one through `record_checkout`,
    so they find what the set-wise part stored, except retries that would change nothing
    (`record_unchanged`), answered set-wise too. The group-commit writer calls this with the checkouts of
    one commit (Database.write_each)."""
    answers = record_new(tx, requests)
    answers |= record_unchanged(tx, requests, answers)
    for i, request in enumerate(requests):
        if i not in answers:
            answers[i] = record_checkout(tx, request.workspace_id, request.data, request.now)
    return [answers[i] for i in range(len(requests))]


def record_new(tx: Tx, requests: list[CheckoutRequest]) -> dict[int, CheckoutRecorded]:
    """The set-wise part of `record_checkouts`: the requests that are a new checkout by a new person
    named by an email, and perhaps an anonymous id, nothing else, each the first in `requests` to name
    its checkout, email or anonymous id, stored as `record_checkout` would store them, with one query per
    workspace for what exists and one executemany each for subscribers, events and checkouts (on
    PostgreSQL the three sent in one round trip). Returns their answers by position; every other request
    is left to the caller, to be recorded one by one after these."""
    answers: dict[int, CheckoutRecorded] = {}
    by_workspace: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        by_workspace.setdefault(request.workspace_id, []).append(i)
    new_subscribers: list[subscribers.Subscriber] = []
    new_events: list[event_store.Event] = []
    new_checkouts: list[store.Checkout] = []
    for workspace_id, members in by_workspace.items():
        seen_checkouts: set[str] = set()  # the checkouts of earlier requests
        named: set[tuple[str, str]] = set()  # the emails and anonymous ids of earlier requests
        candidates: dict[int, str] = {}  # request -> its email's key
        for i in members:
            data = requests[i].data
            customer = data.customer
            key = subscriber_store.email_key(customer.email) if customer.email else None
            names = {("email", key)} if key is not None else set()
            if customer.anonymous_id:
                names.add(("anonymous", customer.anonymous_id))
            if (
                key is not None
                and not (customer.external_id or customer.phone)
                and data.checkout_id not in seen_checkouts
                and named.isdisjoint(names)
            ):
                candidates[i] = key
            named |= names
            seen_checkouts.add(data.checkout_id)
        # What the database already has, for the candidates only, in one query.
        anonymous_ids = {i: a for i in candidates if (a := requests[i].data.customer.anonymous_id)}
        stored = store.taken(
            tx,
            workspace_id,
            [requests[i].data.checkout_id for i in candidates],
            list(candidates.values()),
            list(anonymous_ids.values()),
        )
        for i, key in candidates.items():
            request = requests[i]
            if (
                request.data.checkout_id in stored.checkout_ids
                or key in stored.email_keys
                or anonymous_ids.get(i) in stored.anonymous_ids
            ):
                continue
            sub = subscribers.new_from(workspace_id, request.data.customer, request.now)
            new_subscribers.append(sub)
            new_events.append(subscribers.created_event(sub, request.now))
            event = _checkout_event(workspace_id, request.data, sub.id, request.now)
            new_events.append(event)
            new_checkouts.append(_checkout_row(workspace_id, request.data, sub.id, event, request.now))
            answers[i] = CheckoutRecorded(request.data.checkout_id, sub.id, event.id, created=True)
    # Nothing reads what these write before the commit: on PostgreSQL they go in one round trip.
    with pipelined(tx):
        subscriber_store.insert_many(tx, new_subscribers)
        event_store.append_many(tx, new_events)
        store.insert_many(tx, new_checkouts)
    return answers


def record_unchanged(
    tx: Tx, requests: list[CheckoutRequest], answered: dict[int, CheckoutRecorded]
) -> dict[int, CheckoutRecorded]:
    """The retries among the requests not `answered` yet that `record_checkout` would answer without
    writing anything: the checkout is stored, its customer (found by email) would stay as stored, and so
    would its cart. Found with one query for the checkouts and one for the subscribers per workspace
    (instead of two or three queries each), and answered by position with the stored ids.

    One by one, an earlier request of the batch could change what such a retry is compared against, so
    a retry is left to the one-by-one rule when another request left to it names the same checkout, or
    could be about the same person (the same email key, or an external id, anonymous id or phone the
    person holds). What no such request touches is as stored when the retry's turn would come: requests
    answered set-wise write nothing, and `record_new` stores only checkouts and people not stored before."""
    answers: dict[int, CheckoutRecorded] = {}
    by_workspace: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        if i not in answered and request.data.customer.email:
            by_workspace.setdefault(request.workspace_id, []).append(i)
    for workspace_id, members in by_workspace.items():
        keys = {i: subscriber_store.email_key(requests[i].data.customer.email or "") for i in members}
        stored = store.find_many(tx, workspace_id, [requests[i].data.checkout_id for i in members])
        people = subscriber_store.find_many_by_email_key(tx, workspace_id, list(set(keys.values())))
        unchanged: dict[int, subscriber_store.Subscriber] = {}
        for i in members:
            data = requests[i].data
            existing, sub = stored.get(data.checkout_id), people.get(keys[i])
            if (
                existing is not None
                and sub is not None
                and _refreshed(existing, data) == existing
                and subscribers.merge_identity(tx, sub, data.customer) == sub
            ):
                unchanged[i] = sub
        # Fixed point: a retry left to the one-by-one rule may in turn touch another.
        others = [
            requests[i]
            for i, request in enumerate(requests)
            if i not in answered and i not in unchanged and request.workspace_id == workspace_id
        ]
        while others and unchanged:
            touched_checkouts = {r.data.checkout_id for r in others}
            touched_people = set().union(*(_finds_by(r.data.customer) for r in others))
            left = [
                i
                for i, sub in unchanged.items()
                if requests[i].data.checkout_id in touched_checkouts
                or not touched_people.isdisjoint(_held_by(keys[i], sub))
            ]
            for i in left:
                del unchanged[i]
            others = [requests[i] for i in left]
        for i in unchanged:
            existing = stored[requests[i].data.checkout_id]
            answers[i] = CheckoutRecorded(
                existing.checkout_id, existing.subscriber_id, existing.event_id, created=False
            )
    return answers


def _finds_by(customer: subscribers.Identity) -> set[tuple[str, str]]:
    """The ids a request could find (and so change) a person by."""
    named = {
        ("external", customer.external_id),
        ("anonymous", customer.anonymous_id),
        ("phone", customer.phone),
    }
    if customer.email:
        named.add(("email", subscriber_store.email_key(customer.email)))
    return {(kind, value) for kind, value in named if value}


def _held_by(email_key: str, sub: subscriber_store.Subscriber) -> set[tuple[str, str]]:
    return {
        (kind, value)
        for kind, value in (
            ("email", email_key),
            ("external", sub.external_id),
            ("anonymous", sub.anonymous_id),
            ("phone", sub.phone),
        )
        if value
    }


def _refreshed(existing: store.Checkout, data: CheckoutInput) -> store.Checkout:
    """The stored checkout with the request's cart: the snapshot a retry or a changed cart leaves."""
    return replace(
        existing,
        currency=data.currency,
        total_cents=data.total_cents,
        checkout_url=data.checkout_url,
        items=data.items,
        properties=data.properties,
    )


def _checkout_event(
    workspace_id: str, data: CheckoutInput, subscriber_id: str, now: datetime
) -> event_store.Event:
    return events.new(
        workspace_id,
        name=events.CHECKOUT_STARTED,
        source=data.source,
        subscriber_id=subscriber_id,
        properties=event_properties(data),
        now=now,
        occurred_at=data.occurred_at,
        idempotency_key=f"checkout:{data.checkout_id}",
    )


def _checkout_row(
    workspace_id: str, data: CheckoutInput, subscriber_id: str, event: event_store.Event, now: datetime
) -> store.Checkout:
    return store.Checkout(
        id=ids.new_id("chk"),
        workspace_id=workspace_id,
        checkout_id=data.checkout_id,
        subscriber_id=subscriber_id,
        event_id=event.id,
        currency=data.currency,
        total_cents=data.total_cents,
        checkout_url=data.checkout_url,
        items=data.items,
        properties=data.properties,
        order_id=None,
        # A checkout counts by its own time (the `time` sent with it), not when it arrived.
        created_at=event.occurred_at,
        updated_at=now,
    )


def record_checkout(tx: Tx, workspace_id: str, data: CheckoutInput, now: datetime) -> CheckoutRecorded:
    existing = store.find(tx, workspace_id, data.checkout_id)
    if existing is not None:
        # A retry, or the cart changed: keep the ids; refresh the snapshot so later emails show the
        # latest cart.
        subscribers.upsert(tx, workspace_id, data.customer, now)
        updated = _refreshed(existing, data)
        if updated != existing:
            store.update_snapshot(tx, replace(updated, updated_at=now))
        return CheckoutRecorded(
            existing.checkout_id, existing.subscriber_id, existing.event_id, created=False
        )

    subscriber, _ = subscribers.upsert(tx, workspace_id, data.customer, now)
    event = _checkout_event(workspace_id, data, subscriber.id, now)
    # The checkout did not exist a moment ago, so neither did its event: no lookup of the key first (the
    # unique constraint still guards against a concurrent writer).
    event_store.append(tx, event)
    store.insert(tx, _checkout_row(workspace_id, data, subscriber.id, event, now))
    return CheckoutRecorded(data.checkout_id, subscriber.id, event.id, created=True)
