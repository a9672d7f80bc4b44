"""People: search subscribers; a profile with attributes, order totals, events, enrollments (each step's
state and why runs skipped or stopped), messages, and an explain panel for a chosen sequence."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from cartback.core import reports
from cartback.dashboard import web

router = APIRouter()
NAV = ("/app/people", "People")
PAGE = 50


@router.get("/people")
async def search(
    request: Request,
    q: str = Query("", max_length=200),
    page: int = Query(1, ge=1, le=10_000),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    query = reports.PeopleQuery(q.strip(), limit=PAGE + 1, offset=(page - 1) * PAGE)
    found, total = await web.read(request, viewer, reports.people, query)
    return web.render(
        request,
        "people.html",
        {"q": q, "people": found[:PAGE], "more": len(found) > PAGE, "page": page, "total": total},
    )


@router.get("/people/{subscriber_id}")
async def profile(
    request: Request,
    subscriber_id: str,
    sequence: str = Query("", max_length=64),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    query = reports.PersonQuery(
        web.object_id(subscriber_id, "person"), web.object_id(sequence, "sequence") if sequence else None
    )
    return web.render(request, "person.html", vars(await web.read(request, viewer, reports.person, query)))


@router.get("/people/{subscriber_id}/explain")
async def explain(
    request: Request,
    subscriber_id: str,
    sequence: str = Query(..., max_length=64),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    """The explain panel alone, for htmx to swap in; the profile page renders the same with ?sequence=."""
    query = reports.PersonQuery(web.object_id(subscriber_id, "person"), web.object_id(sequence, "sequence"))
    return web.render(request, "_explain.html", vars(await web.read(request, viewer, reports.explain, query)))
