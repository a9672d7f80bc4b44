"""The public pages an email links to, reached without an API key: the signed token in the URL is the
only authority (delivery/links.py makes them, delivery/tokens.py checks them).

    GET  /u/{token}          a confirmation page; unsubscribes nobody (link scanners fetch every GET)
    POST /u/{token}          unsubscribes at once: RFC 8058 one-click (`List-Unsubscribe=One-Click`) or
                             the page's button
    GET  /t/o/{token}.gif    the open pixel: records `email.opened`
    GET  /t/c/{token}        records `email.clicked`, then 302 to the URL signed into the token, never
                             anywhere else

A forged, altered or malformed token, a token of another kind, or one of a deleted workspace is a 404
page that changes nothing. Opens and clicks of a deleted message are 404s too. Unsubscribing does not
need the message: the token names the address and the workspace, and an unsubscribe request is honoured
for as long as the workspace exists.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cartback import errors
from cartback.api import deps
from cartback.api import errors as api_errors
from cartback.core import links

router = APIRouter(include_in_schema=False)

# A transparent 1x1 GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_HEADERS = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "X-Robots-Tag": "noindex, nofollow",
    # The token must not reach the shop (or anyone) through the Referer header.
    "Referrer-Policy": "no-referrer",
}


# -- pages ---------------------------------------------------------------------------------------------


_PAGE_STYLE = (
    "body{margin:0;padding:48px 16px;background:#f4f4f5;color:#18181b;"
    'font:16px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif}'
    "main{max-width:440px;margin:0 auto;padding:32px;background:#fff;border-radius:8px;text-align:center}"
    "h1{margin:0 0 12px;font-size:22px}p{margin:0 0 16px;color:#3f3f46}"
    "button{padding:12px 28px;border:0;border-radius:6px;background:#18181b;color:#fff;font:inherit;"
    "font-weight:600;cursor:pointer}"
)


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """A small self-contained page: no scripts, fonts or images from anywhere."""
    heading = html.escape(title)
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{heading}</title><style>{_PAGE_STYLE}</style></head>\n'
        f"<body><main><h1>{heading}</h1>{body}</main></body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code, headers=_HEADERS)


def _error_page(exc: errors.CartbackError) -> HTMLResponse:
    titles = {404: "Link not found", 405: "Not allowed", 413: "Too large", 503: "Try again shortly"}
    title = titles.get(exc.status_code, "Something is wrong with this link")
    if exc.status_code == 404:
        message = "This link is not valid. It may have been changed, or it has expired."
    else:
        message = exc.message
    return _page(title, f"<p>{html.escape(message)}</p>", exc.status_code)


def _one_click(body: bytes, content_type: str) -> bool:
    """RFC 8058: the mail client POSTs `List-Unsubscribe=One-Click`, form-encoded or as multipart."""
    if content_type.startswith("multipart/form-data"):
        return b'name="List-Unsubscribe"' in body and b"One-Click" in body
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return False
    return fields.get("List-Unsubscribe") == ["One-Click"]


@router.get("/u/{token}")
async def unsubscribe_page(token: str, svc: deps.Services = Depends(deps.services)) -> Response:
    """Confirm before unsubscribing: security scanners follow every link in an email with a GET."""
    now = svc.clock.now()
    found = await svc.db.read(lambda tx: links.recipient(tx, token, now))
    link, blocked = found.link, found.blocked
    email = html.escape(found.email)
    shop = html.escape(link.workspace.display_name)
    if blocked:
        return _page(
            "You are unsubscribed", f"<p><strong>{email}</strong> gets no more emails from {shop}.</p>"
        )
    form = (
        f'<form method="post" action="{html.escape(token, quote=True)}">'
        '<input type="hidden" name="confirm" value="1">'
        "<button type=submit>Unsubscribe</button></form>"
    )
    return _page("Unsubscribe?", f"<p>Stop emails from {shop} to <strong>{email}</strong>?</p>{form}")


@router.post("/u/{token}")
async def unsubscribe(token: str, request: Request, svc: deps.Services = Depends(deps.services)) -> Response:
    """Unsubscribe at once: the one-click POST of RFC 8058, or the confirmation page's button."""
    now = svc.clock.now()
    found = await svc.db.read(lambda tx: links.recipient(tx, token, now))
    link, email = found.link, found.email
    source = (
        "one_click" if _one_click(await request.body(), request.headers.get("content-type", "")) else "link"
    )
    unsubscribe = links.Unsubscribe(email, source, str(link.payload["m"]), link.properties())
    await svc.db.write(lambda tx: links.unsubscribe(tx, link.workspace.id, unsubscribe, now))
    shop = html.escape(link.workspace.display_name)
    return _page(
        "You are unsubscribed",
        f"<p><strong>{html.escape(email)}</strong> gets no more emails from {shop}.</p>",
    )


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, svc: deps.Services = Depends(deps.services)) -> Response:
    """Record an open. Every fetch is an `email.opened` event; the first also sets `opened_at`."""
    now = svc.clock.now()
    link = await svc.db.read(lambda tx: links.resolve(tx, token, "o", now))
    if link.message is None:
        raise errors.NotFound()
    opened = links.Tracking("email.opened", "opened_at", link.message, link.properties())
    await svc.db.write(lambda tx: links.track(tx, link.workspace.id, opened, now))
    return Response(PIXEL, media_type="image/gif", headers=_HEADERS)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
async def click(token: str, request: Request, svc: deps.Services = Depends(deps.services)) -> Response:
    """Record a click and redirect to the URL signed into the token. HEAD (link checkers) redirects
    without counting."""
    now = svc.clock.now()
    link = await svc.db.read(lambda tx: links.resolve(tx, token, "c", now))
    url = link.payload.get("u")
    if (
        not isinstance(url, str)
        or not url.lower().startswith(("http://", "https://"))
        or link.message is None
    ):
        raise errors.NotFound("This link is not valid.")
    if request.method == "GET":
        clicked = links.Tracking(
            "email.clicked", "clicked_at", link.message, {**link.properties(), "url": url}
        )
        await svc.db.write(lambda tx: links.track(tx, link.workspace.id, clicked, now))
    return RedirectResponse(url, status_code=302, headers=_HEADERS)


def install(app: FastAPI) -> None:
    app.include_router(router)
    # Errors on these pages are small HTML pages, not an API's JSON envelope.
    api_errors.register("/u", _error_page)
    api_errors.register("/t", _error_page)
