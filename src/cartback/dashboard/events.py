"""The event log: every event of the workspace, newest first, filtered by name, source or person, and
refreshed live (htmx polls the rows every few seconds)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from cartback.core import events as core_events
from cartback.core import reports
from cartback.dashboard import web

router = APIRouter()
NAV = ("/app/events", "Events")
SOURCES = ("sequenzy", "klaviyo", "segment", "cartback")
LIMIT = 100
KNOWN_NAMES = (
    core_events.CHECKOUT_STARTED,
    core_events.ORDER_PLACED,
    "ecommerce.order_cancelled",
    "ecommerce.order_refunded",
    "ecommerce.order_fulfilled",
    "email.sent",
    "email.opened",
    "email.clicked",
)


async def _rows(
    request: Request, viewer: web.Viewer, name: str, source: str, person: str, after: str = ""
) -> dict[str, Any]:
    query = reports.EventQuery(
        name.strip() or None, source if source in SOURCES else None, person, LIMIT, after or None
    )
    data = await web.read(request, viewer, reports.event_log, query)
    return {
        **vars(data),
        "name": name,
        "source": source,
        "person": person,
        "sources": SOURCES,
        "known_names": KNOWN_NAMES,
        "limit": LIMIT,
    }


@router.get("/events")
async def event_log(
    request: Request,
    name: str = Query("", max_length=255),
    source: str = Query("", max_length=20),
    person: str = Query("", max_length=320),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    return web.render(request, "events.html", await _rows(request, viewer, name, source, person))


@router.get("/events/rows")
async def event_rows(
    request: Request,
    name: str = Query("", max_length=255),
    source: str = Query("", max_length=20),
    person: str = Query("", max_length=320),
    after: str = Query("", max_length=64),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    """The rows stored after `after` (the newest row the page shows), newest first: what the page's htmx
    poll puts above the rows it has, which stay as they are (a row opened to read stays open)."""
    data = await _rows(request, viewer, name, source, person, after)
    return web.render(request, "_event_rows.html", {**data, "only_rows": True})
