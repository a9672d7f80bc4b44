"""What the dashboard's pages read, each one use case `fn(tx, workspace_id, input, now)`: a page parses
its query, calls one of these and renders the result. Figures come from core/analytics, the read model
the API's reports use too (docs/analytics.md), so a page never counts on its own; lists and logs come
from store/reports and the other stores, scoped to the workspace."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cartback.core import analytics
from cartback.store import reports as store
from cartback.store.db import Tx
from cartback.store.reports import Funnel as Funnel


@dataclass(frozen=True)
class Period:
    """[start, end), cut into intervals of `interval` (hour, day, week)."""

    start: datetime
    end: datetime
    interval: str


@dataclass(frozen=True)
class Overview:
    report: analytics.Report
    abandoned: int
    funnel: Funnel


def overview(tx: Tx, workspace_id: str, period: Period, now: datetime) -> Overview:
    """The overview's figures: the recovery report (the one behind GET /api/v1/analytics/recovery), the
    checkouts still abandoned and the funnel checkout -> email -> click."""
    return Overview(
        report=analytics.report(tx, workspace_id, period.start, period.end, interval=period.interval),
        abandoned=store.abandoned(tx, workspace_id, period.start, period.end),
        funnel=store.funnel(tx, workspace_id, period.start, period.end),
    )

