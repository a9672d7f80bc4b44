"""Abandoned checkouts, as Shopify lists them: each checkout no order completed on its own, newest first,
with its cart, value, customer, the emails sent for it and the order an email won back, if one did."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from cartback.core import analytics, reports
from cartback.dashboard import web

router = APIRouter()
NAV = ("/app/checkouts", "Abandoned checkouts")
PAGE = 50


@router.get("/checkouts")
async def listing(
    request: Request,
    page: int = Query(1, ge=1, le=10_000),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    query = reports.AbandonedQuery(limit=PAGE, offset=(page - 1) * PAGE)
    found, total = await web.read(request, viewer, reports.abandoned_checkouts, query)
    return web.render(
        request,
        "checkouts.html",
        {
            "checkouts": found,
            "total": total,
            "page": page,
            "more": page * PAGE < total,
            "definition": analytics.DEFINITIONS["abandoned"],
        },
    )
