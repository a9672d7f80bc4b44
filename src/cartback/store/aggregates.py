"""Metric aggregates over the event log: count, sum of `value` and unique subscribers of one event name
per time range, optionally grouped by the flow (sequence) that sent an email or earned an order.

Each time bucket is a query or two over a range of the covering index (workspace_id, name, occurred_at,
subscriber_key, value), so the event rows themselves are never read: a million events take well under a
second on SQLite and PostgreSQL alike (bench/aggregates.py). Unique subscribers are counted by grouping
(a hash aggregate on PostgreSQL, twice as fast as COUNT(DISTINCT), which sorts), and that one grouping
gives the count and sum as well."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import attributions, events
from cartback.store.types import UTCDateTime

# Group keys: the sequence an email event came from (its properties say), or the sequence an order was
# attributed to (the attributions table says).
FLOW = "$flow"
ATTRIBUTED_FLOW = "$attributed_flow"


@dataclass(frozen=True)
class Figures:
    count: int
    sum_value: float
    unique: int


_START = sa.bindparam("start", type_=UTCDateTime)
_END = sa.bindparam("end", type_=UTCDateTime)
_IN_RANGE = [
    events.c.workspace_id == sa.bindparam("workspace_id"),
    events.c.name == sa.bindparam("name"),
    events.c.occurred_at >= _START,
    events.c.occurred_at < _END,
]
_TOTALS = sa.select(sa.func.count(), sa.func.sum(events.c.value), sa.literal(0)).where(*_IN_RANGE)
# All three in one scan: per subscriber (events without one form a NULL group, which count() of the key
# skips) their events and values, then the totals and the number of subscribers.
_per_subscriber = (
    sa.select(
        events.c.subscriber_key.label("subscriber_key"),
        sa.func.count().label("n"),
        sa.func.sum(events.c.value).label("v"),
    )
    .where(*_IN_RANGE)
    .group_by(events.c.subscriber_key)
    .subquery()
)
_WITH_UNIQUE = sa.select(
    sa.func.sum(_per_subscriber.c.n),
    sa.func.sum(_per_subscriber.c.v),
    sa.func.count(_per_subscriber.c.subscriber_key),
)
_ATTRIBUTED_RANGE = [
    attributions.c.workspace_id == sa.bindparam("workspace_id"),
    attributions.c.ordered_at >= _START,
    attributions.c.ordered_at < _END,
]
# Attributed orders of a range per sequence, from the attributions table alone (it copies each order
# event's value and subscriber_key, and ordered_at is the event's occurred_at).
_ATTRIBUTED = (
    sa.select(
        attributions.c.sequence_id,
        sa.func.count(),
        sa.func.sum(attributions.c.value),
        sa.func.count(sa.distinct(attributions.c.subscriber_key)),
    )
    .where(*_ATTRIBUTED_RANGE)
    .group_by(attributions.c.sequence_id)
)
# Subscribers with an unattributed order in the range: those with more orders than attributed ones.
_all_per_subscriber = (
    sa.select(events.c.subscriber_key.label("key"), sa.func.count().label("n"))
    .where(*_IN_RANGE, events.c.subscriber_key.is_not(None))
    .group_by(events.c.subscriber_key)
    .subquery()
)
_attributed_per_subscriber = (
    sa.select(attributions.c.subscriber_key.label("key"), sa.func.count().label("n"))
    .where(*_ATTRIBUTED_RANGE)
    .group_by(attributions.c.subscriber_key)
    .subquery()
)
_UNIQUE_UNATTRIBUTED = (
    sa.select(sa.func.count())
    .select_from(
        _all_per_subscriber.outerjoin(
            _attributed_per_subscriber, _attributed_per_subscriber.c.key == _all_per_subscriber.c.key
        )
    )
    .where(_all_per_subscriber.c.n > sa.func.coalesce(_attributed_per_subscriber.c.n, 0))
)


def _params(workspace_id: str, name: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {"workspace_id": workspace_id, "name": name, "start": start, "end": end}


def figures(
    tx: Tx,
    workspace_id: str,
    name: str,
    ranges: list[tuple[datetime, datetime]],
    measurements: tuple[str, ...],
) -> list[Figures]:
    """The figures of each [start, end) range, in order."""
    out = []
    for start, end in ranges:
        query = _WITH_UNIQUE if "unique" in measurements else _TOTALS
        count, total, unique = tx.execute(query, _params(workspace_id, name, start, end)).one()
        out.append(Figures(int(count or 0), float(total or 0), int(unique)))
    return out


def figures_by(
    tx: Tx,
    workspace_id: str,
    name: str,
    ranges: list[tuple[datetime, datetime]],
    measurements: tuple[str, ...],
    by: str,
    *,
    attributable: bool = False,
) -> list[dict[str, Figures]]:
    """Per range, the figures of each group ("" for events outside any flow). `attributable`: the events
    are the ones attributions point at (placed orders)."""
    if by == ATTRIBUTED_FLOW:
        if not attributable:
            # Only orders are attributed: every event of another metric is in the "" group.
            return [{"": f} if f.count else {} for f in figures(tx, workspace_id, name, ranges, measurements)]
        return [_by_attributed_flow(tx, workspace_id, name, r, measurements) for r in ranges]
    if by != FLOW:
        raise ValueError(f"unknown group key {by!r}")
    # The sending sequence is in the email event's properties: these rows are read, not just the index.
    key = sa.func.coalesce(events.c.properties["sequenceId"].as_string(), "")
    unique: Any = sa.func.count(sa.distinct(events.c.subscriber_key))
    if "unique" not in measurements:
        unique = sa.literal(0)
    query = (
        sa.select(key, sa.func.count(), sa.func.sum(events.c.value), unique).where(*_IN_RANGE).group_by(key)
    )
    out = []
    for start, end in ranges:
        rows = tx.execute(query, _params(workspace_id, name, start, end)).all()
        out.append({str(k): Figures(int(c), float(s or 0), int(u)) for k, c, s, u in rows})
    return out


def _by_attributed_flow(
    tx: Tx, workspace_id: str, name: str, span: tuple[datetime, datetime], measurements: tuple[str, ...]
) -> dict[str, Figures]:
    """The attributed groups come from the (small) attributions table; the rest of the range's events
    form the "" group: its count and sum are the totals less the attributed ones, exactly."""
    params = _params(workspace_id, name, *span)
    (total,) = figures(tx, workspace_id, name, [span], measurements)
    out: dict[str, Figures] = {}
    for sequence_id, count, value, unique in tx.execute(_ATTRIBUTED, params).all():
        out[str(sequence_id)] = Figures(int(count), float(value or 0), int(unique))
    if not out:
        return {"": total} if total.count else {}
    rest_count = total.count - sum(f.count for f in out.values())
    if rest_count:
        rest_unique = tx.execute(_UNIQUE_UNATTRIBUTED, params).scalar_one() if "unique" in measurements else 0
        rest_sum = total.sum_value - sum(f.sum_value for f in out.values())
        out[""] = Figures(rest_count, round(rest_sum, 6), int(rest_unique))
    return out
