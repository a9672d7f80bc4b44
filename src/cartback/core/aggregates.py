"""Metric aggregates, Klaviyo's `POST /api/metric-aggregates` without the wire format: for one event
name, the count, the sum of `value` and the unique subscribers per hour/day/week/month of a time zone,
in total or per flow (`$flow`: the sequence an email came from; `$attributed_flow`: the sequence an order
was attributed to, see core/attribution.py). Amounts are summed as the events carry them: Klaviyo's
`sum_value` does not split currencies either, so recovered revenue per currency is in core/analytics.py."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from cartback import errors
from cartback.core import analytics, events, metrics
from cartback.store import aggregates as store
from cartback.store.db import Tx

MEASUREMENTS = ("count", "sum_value", "unique")
GROUP_KEYS = (store.FLOW, store.ATTRIBUTED_FLOW)
# Klaviyo answers at most a year per query.
MAX_RANGE_DAYS = 366


@dataclass(frozen=True)
class Query:
    name: str
    measurements: tuple[str, ...]
    start: datetime
    end: datetime
    interval: str = "day"
    timezone: str = "UTC"
    by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    dimensions: list[str]
    measurements: dict[str, list[float | int]]


@dataclass(frozen=True)
class Result:
    dates: list[datetime]
    rows: list[Row]


def check(query: Query) -> None:
    unknown = [m for m in query.measurements if m not in MEASUREMENTS]
    if not query.measurements or unknown:
        raise errors.InvalidInput(f"measurements must be some of {', '.join(MEASUREMENTS)}")
    bad = [b for b in query.by if b not in GROUP_KEYS]
    if bad:
        raise errors.InvalidInput(f"cannot group by {bad[0]!r}; supported: {', '.join(GROUP_KEYS)}")
    if len(query.by) > 1:
        raise errors.InvalidInput("group by one key at a time")
    if query.end <= query.start:
        raise errors.InvalidInput("the datetime filter's end must be after its start")
    if (query.end - query.start).days > MAX_RANGE_DAYS:
        raise errors.InvalidInput(f"the datetime range may span at most {MAX_RANGE_DAYS} days")


def _values(figures: store.Figures, measurements: tuple[str, ...]) -> dict[str, float | int]:
    return {m: getattr(figures, m) for m in measurements}


def aggregate(tx: Tx, workspace_id: str, query: Query) -> Result:
    check(query)
    cuts = analytics.buckets(query.start, query.end, query.interval, analytics.zone(query.timezone))
    ranges = [(b.start, b.end) for b in cuts]
    dates = [b.label for b in cuts]
    if not query.by:
        got = store.figures(tx, workspace_id, query.name, ranges, query.measurements)
        series = [_values(f, query.measurements) for f in got]
        return Result(dates, [Row([], {m: [v[m] for v in series] for m in query.measurements})])
    grouped = store.figures_by(
        tx,
        workspace_id,
        query.name,
        ranges,
        query.measurements,
        query.by[0],
        attributable=query.name == events.ORDER_PLACED,
    )
    keys = sorted({k for bucket in grouped for k in bucket})
    empty = store.Figures(0, 0.0, 0)
    rows = []
    for key in keys:
        series = [_values(bucket.get(key, empty), query.measurements) for bucket in grouped]
        rows.append(Row([key], {m: [v[m] for v in series] for m in query.measurements}))
    return Result(dates, rows)


def aggregate_metric(tx: Tx, workspace_id: str, query: Query) -> Result | None:
    """`aggregate` for the metric whose id is `query.name` (Klaviyo asks by metric id); None when the
    workspace has no such metric."""
    name = metrics.event_name_of(tx, workspace_id, query.name)
    if name is None:
        return None
    return aggregate(tx, workspace_id, replace(query, name=name))
