"""The overview: checkouts started, abandoned and recovered, recovered revenue per currency, emails sent,
opened and clicked over a chosen range, as figures, SVG charts per interval, a funnel checkout -> email ->
click -> order, and per sequence: the report of core/analytics, the very one behind
GET /api/v1/analytics/recovery (docs/analytics.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from cartback import errors
from cartback.api import deps
from cartback.core import analytics, reports
from cartback.dashboard import charts, web

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
    data = await web.read(request, viewer, reports.overview, reports.Period(begin, finish, interval))
    figures = data.report
    total = figures.workspace.total
    labels = [_label(b.label, interval) for b in figures.buckets]
    series = figures.workspace.series
    sequences = sorted(
        (
            (figures.names.get(sequence_id, (sequence_id, {}))[0], sequence_id, slot.total)
            for sequence_id, slot in figures.sequences.items()
        ),
        key=lambda row: (-row[2].sent, row[0]),
    )
    return web.render(
        request,
        "overview.html",
        {
            "total": total,
            # Without SMTP the outbox transport keeps every email: the figure must not read as delivered.
            "transport": deps.services_of(request).settings.smtp_url,
            "definitions": analytics.DEFINITIONS,
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
            "funnel_chart": charts.funnel("From email to order", data.funnel.stages()),
        },
    )
