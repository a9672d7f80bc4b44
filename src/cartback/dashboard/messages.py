"""Messages: the outbox / sent log, and one message with its headers, delivery attempts, tracking events
and a rendered preview.

The preview is served at its own URL and shown in an `<iframe sandbox="">`: no script runs, no form
submits, no link navigates (so a click in the preview never counts as a click), and the response's own
CSP forbids scripts, frames and plugins. The open-tracking pixel is taken out of the previewed HTML, so
looking at a message never records an `email.opened`.
"""

from __future__ import annotations

import email
import email.policy
import re

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import HTMLResponse, Response

from cartback.core import reports
from cartback.dashboard import web

router = APIRouter()
NAV = ("/app/messages", "Messages")
PAGE = 50
STATUSES = ("queued", "sending", "sent", "kept", "failed", "suppressed", "unknown")

# A message's HTML is the tenant's template filled with shopper-supplied data (image URLs included): the
# preview loads nothing from elsewhere, or any URL in it would learn the operator's IP address, browser and
# when the message was looked at. Images inlined as data: URLs still show.
PREVIEW_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_OPEN_PIXEL = re.compile(r"<img\b[^>]*/t/o/[^>]*>", re.IGNORECASE)


@router.get("/messages")
async def outbox(
    request: Request,
    status: str = Query("", max_length=20),
    to: str = Query("", max_length=320),
    page: int = Query(1, ge=1, le=10_000),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    query = reports.OutboxQuery(status if status in STATUSES else None, to or None, PAGE, (page - 1) * PAGE)
    items, total = await web.read(request, viewer, reports.outbox, query)
    return web.render(
        request,
        "messages.html",
        {
            "items": items,
            "total": total,
            "status": status,
            "to": to,
            "statuses": STATUSES,
            "page": page,
            "more": page * PAGE < total,
        },
    )


def _headers(mime: str | None) -> list[tuple[str, str]]:
    if not mime:
        return []
    head = mime.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    parsed = email.message_from_string(head + "\r\n\r\n", policy=email.policy.default)
    return [(name, str(value)) for name, value in parsed.items()]


@router.get("/messages/{message_id}")
async def message(request: Request, message_id: str, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    found = await web.read(request, viewer, reports.message, web.object_id(message_id, "message"))
    return web.render(request, "message.html", {**vars(found), "headers": _headers(found.item.mime)})


@router.get("/messages/{message_id}/preview")
async def preview(request: Request, message_id: str, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    item = await web.read(request, viewer, reports.message_item, web.object_id(message_id, "message"))
    html = item.message.html
    if html is None:
        body = "<pre>" + (item.message.text or "").replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
    else:
        body = _OPEN_PIXEL.sub("", html)
    return HTMLResponse(body, headers=PREVIEW_HEADERS)
