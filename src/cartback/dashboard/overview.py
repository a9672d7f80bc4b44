"""The overview: checkouts started, abandoned and recovered, recovered revenue per currency, emails sent,
opened and clicked over a chosen range, as figures, SVG charts per interval, a funnel checkout -> email ->
click -> order, and per sequence, by the definitions of core/analytics (the report behind
GET /api/v1/analytics/recovery; docs/analytics.md), counted in the database (see `summary`)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from cartback import errors
from cartback.api import deps
from cartback.core import analytics
from cartback.dashboard import charts, web
from cartback.store import analytics as analytics_store
from cartback.store import reports
from cartback.store.db import Tx

router = APIRouter()
NAV = ("/app/", "Overview")

RANGES = {
    "1d": ("Last 24 hours", timedelta(days=1)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "90d": ("Last 90 days", timedelta(days=90)),
}
MAX_DAYS = 366


def _period(now: datetime, range_key: str, start: str, end: str) -> tuple[datetime, datetime, str]:
    """[start, end) from a preset, or from two dates (UTC days, both included)."""
    if start or end:
        try:
            first = date.fromisoformat(start)
            last = date.fromisoformat(end) if end else now.date()
        except ValueError as exc:
            raise errors.InvalidInput("Dates must be written YYYY-MM-DD.") from exc
        if last < first:
            raise errors.InvalidInput("The end date must not be before the start date.")
        if (last - first).days >= MAX_DAYS:
            raise errors.InvalidInput(f"Choose at most {MAX_DAYS} days.")
        begin = datetime(first.year, first.month, first.day, tzinfo=UTC)
        return begin, begin + timedelta(days=(last - first).days + 1), "custom"
    key = range_key if range_key in RANGES else "30d"
    return now - RANGES[key][1], now, key


def _interval(start: datetime, end: datetime) -> str:
    span = end - start
    if span <= timedelta(days=2):
        return "hour"
    return "day" if span <= timedelta(days=62) else "week"


@dataclass
class Summary:
    """The overview's figures: in total, per interval and per sequence."""

    buckets: list[analytics.Bucket]
    total: analytics.Tally
    series: list[analytics.Tally]
    sequences: dict[str, analytics.Tally]
    names: dict[str, tuple[str, dict[str, Any]]]


def summary(tx: Tx, workspace_id: str, start: datetime, end: datetime, interval: str) -> Summary:
    """The figures core/analytics.report gives for the workspace and its sequences, by the same
    definitions, but counted by the database per interval instead of row by row in Python: on a large
    workspace the report reads every email, checkout and run of the range, which takes seconds. Recovered
    orders and their revenue come from the report's own store query and `net_cents`.
    tests/integration/test_dashboard_overview.py checks that both give the same figures."""
    cuts = analytics.buckets(start, end, interval, ZoneInfo("UTC"))
    starts = [b.start for b in cuts]
    total, series = analytics.Tally(), [analytics.Tally() for _ in cuts]
    per_sequence: dict[str, analytics.Tally] = defaultdict(analytics.Tally)
    for index, count in reports.checkouts_per_interval(tx, workspace_id, start, end, starts).items():
        total.checkouts_started += count
        series[index].checkouts_started += count
    for _, sequence_id, count in reports.runs_per_interval(tx, workspace_id, start, end, starts):
        per_sequence[sequence_id].checkouts_started += count
    for mail in reports.mail_per_interval(tx, workspace_id, start, end, starts):
        for tally in (total, series[mail.bucket], per_sequence[mail.sequence_id]):
            tally.sent += mail.sent
            tally.delivered += mail.delivered
            tally.opened += mail.opened
            tally.clicked += mail.clicked
    for order in analytics_store.recovered_orders(tx, workspace_id, start, end):
        cents = analytics.net_cents(order)
        if cents <= 0:
            continue  # cancelled or fully refunded: nothing was recovered
        index = bisect.bisect_right(starts, order.ordered_at) - 1
        for tally in (total, series[index], per_sequence[order.sequence_id]):
            tally.add_order(order.currency, cents)
    return Summary(cuts, total, series, dict(per_sequence), analytics_store.sequence_names(tx, workspace_id))


def _label(moment: datetime, interval: str) -> str:
    return moment.strftime("%H:%M") if interval == "hour" else moment.strftime("%b %d")


@router.get("/")
async def overview(
    request: Request,
    range: str = Query("30d", max_length=10),
    start: str = Query("", max_length=10),
    end: str = Query("", max_length=10),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    begin, finish, chosen = _period(web.now(request), range, start, end)
    interval = _interval(begin, finish)

    def read(tx: Tx) -> dict[str, Any]:
        return {
            "summary": summary(tx, viewer.workspace_id, begin, finish, interval),
            "abandoned": reports.abandoned(tx, viewer.workspace_id, begin, finish),
            "funnel": reports.funnel(tx, viewer.workspace_id, begin, finish),
        }

    data = await deps.services_of(request).db.read(read)
    figures: Summary = data["summary"]
    total = figures.total
    labels = [_label(b.label, interval) for b in figures.buckets]
    series = figures.series
    sequences = sorted(
        (
            (figures.names.get(sequence_id, (sequence_id, {}))[0], sequence_id, tally)
            for sequence_id, tally in figures.sequences.items()
        ),
        key=lambda row: (-row[2].sent, row[0]),
    )
    return web.render(
        request,
        "overview.html",
        {
            "total": total,
            "abandoned": data["abandoned"],
            "ranges": RANGES,
            "range": chosen,
            "start": begin,
            "end": finish,
            "start_text": start,
            "end_text": end,
            "interval": interval,
            "rate": analytics.rate,
            "sequences": sequences,
            "rows": list(zip(labels, series, strict=True)),
            "checkout_chart": charts.bars(
                "Checkouts per " + interval,
                labels,
                [
                    charts.Series("started", [t.checkouts_started for t in series]),
                    charts.Series("recovered", [t.recovered for t in series]),
                ],
            ),
            "email_chart": charts.bars(
                "Emails per " + interval,
                labels,
                [
                    charts.Series("sent", [t.sent for t in series]),
                    charts.Series("opened", [t.opened for t in series]),
                    charts.Series("clicked", [t.clicked for t in series]),
                ],
            ),
            "funnel_chart": charts.funnel(
                "From checkout to order",
                [
                    ("Checkouts", total.checkouts_started),
                    ("Emailed", data["funnel"].emailed),
                    ("Clicked", data["funnel"].clicked),
                    ("Ordered", total.recovered),
                ],
            ),
        },
    )
