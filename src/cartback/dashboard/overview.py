"""The overview: what checkouts and emails did over a chosen range."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from cartback.api import deps
from cartback.dashboard import web
from cartback.store import reports

router = APIRouter()
NAV = ("/app/", "Overview")

RANGES = {
    "1d": ("Last 24 hours", timedelta(days=1)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "90d": ("Last 90 days", timedelta(days=90)),
}


@router.get("/")
async def overview(
    request: Request, range: str = "30d", viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    if range not in RANGES:
        range = "30d"
    end = web.now(request)
    start = end - RANGES[range][1]
    totals = await deps.services_of(request).db.read(
        lambda tx: reports.totals(tx, viewer.workspace_id, start, end)
    )
    return web.render(
        request,
        "overview.html",
        {"totals": totals, "ranges": RANGES, "range": range, "start": start, "end": end},
    )
