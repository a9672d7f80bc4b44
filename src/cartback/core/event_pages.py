"""Reading events back a page at a time, whichever surface recorded them, with what a reader may ask for
beside them: the attribution credits of orders, the metrics and the profiles the events name (Klaviyo's
`GET /api/events` and its `include`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cartback.core import attribution, metrics, profiles
from cartback.store import events as event_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.events import Event as Event  # re-exported for api/
from cartback.store.events import Window as Window


@dataclass(frozen=True)
class Includes:
    attributions: bool = False
    metrics: bool = False
    profiles: bool = False


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    more: bool  # whether another event follows in the window's order
    credits: dict[str, list[attribution.Credit]] | None = None  # by event id, when asked for
    metrics: list[metrics.Metric] = field(default_factory=list)
    profiles: list[profiles.ProfileView] = field(default_factory=list)


def read_page(
    tx: Tx, workspace_id: str, window: Window, metric_ids: tuple[str, ...], size: int, includes: Includes
) -> EventPage:
    """At most `size` events of the window, of the metrics every one of `metric_ids` names (all when
    none is given), and what `includes` asks for about them."""
    if metric_ids:
        window = replace(window, names=metrics.event_names(tx, workspace_id, metric_ids))
    rows = event_store.page(tx, workspace_id, window, size + 1)
    return _with_includes(tx, workspace_id, rows[:size], len(rows) > size, includes)


def read_event(tx: Tx, workspace_id: str, event_id: str, includes: Includes) -> EventPage | None:
    event = event_store.find_by_id(tx, workspace_id, event_id)
    return None if event is None else _with_includes(tx, workspace_id, [event], False, includes)


def _with_includes(
    tx: Tx, workspace_id: str, found: list[Event], more: bool, includes: Includes
) -> EventPage:
    credits = attribution.credits(tx, workspace_id, [e.id for e in found]) if includes.attributions else None
    named: list[metrics.Metric] = []
    if includes.metrics:
        for name in sorted({e.name for e in found}):
            metric = metrics.find(tx, workspace_id, metrics.metric_id(workspace_id, name))
            if metric is not None:
                named.append(metric)
    people: list[profiles.ProfileView] = []
    if includes.profiles:
        ids = sorted({e.subscriber_id for e in found if e.subscriber_id})
        subs = [s for s in (subscriber_store.find_by_id(tx, workspace_id, i) for i in ids) if s is not None]
        people = profiles.views(tx, workspace_id, subs)
    return EventPage(found, more, credits, named, people)
