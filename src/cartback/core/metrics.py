"""Metrics as Klaviyo shows them: one per event name a workspace has, whichever surface the events came
through, named as Klaviyo names it ("Started Checkout" for ecommerce.checkout_started).

A metric's id is derived from the workspace and the event name, so it is the same on every node and
forever, needs no table, and names nothing in another workspace. `created` is when its first event
occurred, `updated` when its latest did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cartback.core import events
from cartback.store import events as event_store
from cartback.store import sequences as sequence_store
from cartback.store.db import Tx
from cartback.store.sequences import Sequence

# Klaviyo's names for cartback's own events; any other event name is its own metric name.
KLAVIYO_NAMES = {
    events.CHECKOUT_STARTED: "Started Checkout",
    events.ORDER_PLACED: "Placed Order",
    events.ORDER_CANCELLED: "Cancelled Order",
    events.ORDER_REFUNDED: "Refunded Order",
    events.ORDER_FULFILLED: "Fulfilled Order",
    "email.sent": "Received Email",
    "email.opened": "Opened Email",
    "email.clicked": "Clicked Email",
    "email.bounced": "Bounced Email",
    "email.unsubscribed": "Unsubscribed",
    "email.complained": "Marked Email as Spam",
}
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 6


@dataclass(frozen=True)
class Metric:
    id: str
    name: str
    event_name: str
    created: datetime
    updated: datetime


def display_name(event_name: str) -> str:
    return KLAVIYO_NAMES.get(event_name, event_name)


def metric_id(workspace_id: str, event_name: str) -> str:
    """Six base-62 characters, like Klaviyo's metric ids."""
    number = int.from_bytes(hashlib.sha256(f"{workspace_id}\x00{event_name}".encode()).digest()[:8], "big")
    out = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


def _metric(tx: Tx, workspace_id: str, event_name: str) -> Metric | None:
    first, last = event_store.name_span(tx, workspace_id, event_name)
    if first is None or last is None:
        return None
    return Metric(metric_id(workspace_id, event_name), display_name(event_name), event_name, first, last)


def list_metrics(tx: Tx, workspace_id: str) -> list[Metric]:
    """Every metric of the workspace, by name."""
    found = [_metric(tx, workspace_id, name) for name in event_store.distinct_names(tx, workspace_id)]
    return sorted((m for m in found if m is not None), key=lambda m: (m.name, m.event_name))


def flows_triggered(tx: Tx, workspace_id: str, event_name: str) -> list[Sequence]:
    """The sequences this metric's event starts now (live and taking enrollments): Klaviyo's
    flow-triggers of a metric."""
    return sequence_store.triggered_by(tx, workspace_id, event_name)


def event_name_of(tx: Tx, workspace_id: str, ident: str) -> str | None:
    """The event name behind a metric id, or None when the workspace has no such metric."""
    for name in event_store.distinct_names(tx, workspace_id):
        if metric_id(workspace_id, name) == ident:
            return name
    return None


def find(tx: Tx, workspace_id: str, ident: str) -> Metric | None:
    name = event_name_of(tx, workspace_id, ident)
    return None if name is None else _metric(tx, workspace_id, name)


def event_names(tx: Tx, workspace_id: str, metric_ids: tuple[str, ...]) -> tuple[str, ...] | None:
    """The event names that every one of these metric ids names (None: no id given, all names; an
    unknown id or two different ones: none)."""
    names: tuple[str, ...] | None = None
    for ident in metric_ids:
        name = event_name_of(tx, workspace_id, ident)
        names = (name,) if name is not None and names in (None, (name,)) else ()
    return names


@dataclass(frozen=True)
class MetricView:
    metric: Metric
    flows: list[Sequence] | None  # the flow-triggers, when asked for


def read_metrics(tx: Tx, workspace_id: str, metric_id: str | None, *, flows: bool) -> list[MetricView]:
    """Every metric of the workspace (`metric_id` None) or the one it names (none when unknown), each
    with the sequences its event starts when `flows` asks for them."""
    if metric_id is None:
        found = list_metrics(tx, workspace_id)
    else:
        one = find(tx, workspace_id, metric_id)
        found = [] if one is None else [one]
    return [MetricView(m, flows_triggered(tx, workspace_id, m.event_name) if flows else None) for m in found]
