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
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cartback import errors
from cartback.api import deps
from cartback.api import errors as api_errors
from cartback.core import events, suppressions
from cartback.delivery import tokens
from cartback.store import deliveries
from cartback.store import messages as message_store
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx

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
# Workspace ids are ours (`ws_` + base32); anything else in a token cannot name one, and is refused before
# it reaches a query (PostgreSQL refuses NUL characters with a 5xx-worthy error).
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class _Link:
    """A verified token: what it says, its workspace, and its message if that still exists."""

    payload: dict[str, Any]
    workspace: workspace_store.Workspace
    message: message_store.MessageRef | None

    def properties(self) -> dict[str, Any]:
        message = self.message
        return {
            "messageId": self.payload["m"],
            "sequenceId": message.sequence_id if message else None,
            "nodeId": message.node_id if message else None,
        }


# -- reads and writes ---------------------------------------------------------------------------------


def _workspace(tx: Tx, workspace_id: str) -> workspace_store.Workspace | None:
    if not _ID.fullmatch(workspace_id):
        return None
    try:
        return workspace_store.get_workspace(tx, workspace_id)
    except errors.NotFound:
        return None


def _resolve(tx: Tx, token: str, kind: str) -> _Link:
    """The verified link of `kind` ("u", "o" or "c"); NotFound for anything else."""
    found: dict[str, workspace_store.Workspace] = {}

    def secret_for(workspace_id: str) -> str | None:
        ws = _workspace(tx, workspace_id)
        if ws is None:
            return None
        found[workspace_id] = ws
        return ws.secret

    if not token.isascii():
        # Our tokens are base64url; tokens.verify would meet a TypeError comparing non-ASCII signatures.
        raise errors.NotFound("This link is not valid.")
    try:
        payload = tokens.verify(token, secret_for)
    except tokens.InvalidToken as exc:
        raise errors.NotFound("This link is not valid.") from exc
    message_id = payload.get("m")
    if payload.get("k") != kind or not isinstance(message_id, str) or not _ID.fullmatch(message_id):
        raise errors.NotFound("This link is not valid.")
    workspace = found[payload["w"]]
    return _Link(payload, workspace, message_store.ref(tx, workspace.id, message_id))


def _record(tx: Tx, link: _Link, name: str, column: str, now: datetime, extra: dict[str, Any]) -> None:
    """Append the event (every open and click counts) and stamp the first one on the delivery row."""
    assert link.message is not None
    events.record(
        tx,
        link.workspace.id,
        name=name,
        source=events.SOURCE_CARTBACK,
        subscriber_id=link.message.subscriber_id,
        properties={**link.properties(), **extra},
        now=now,
    )
    deliveries.stamp(tx, link.message.id, column, now)


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

    def look(tx: Tx) -> tuple[_Link, str | None]:
        link = _resolve(tx, token, "u")
        email = link.payload.get("e")
        if not isinstance(email, str) or "@" not in email:
            raise errors.NotFound("This link is not valid.")
        return link, suppressions.blocking_reason(tx, link.workspace.id, email, "marketing")

    link, blocked = await svc.db.read(look)
    email = html.escape(str(link.payload["e"]))
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
    link = await svc.db.read(lambda tx: _resolve(tx, token, "u"))
    email = link.payload.get("e")
    if not isinstance(email, str) or "@" not in email:
        raise errors.NotFound("This link is not valid.")
    source = (
        "one_click" if _one_click(await request.body(), request.headers.get("content-type", "")) else "link"
    )
    now = svc.clock.now()
    await svc.db.write(
        lambda tx: suppressions.suppress(
            tx,
            link.workspace.id,
            email,
            "unsubscribed",
            source,
            now,
            detail=f"message {link.payload['m']}",
            properties=link.properties(),
        )
    )
    shop = html.escape(link.workspace.display_name)
    return _page(
        "You are unsubscribed",
        f"<p><strong>{html.escape(email)}</strong> gets no more emails from {shop}.</p>",
    )


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, svc: deps.Services = Depends(deps.services)) -> Response:
    """Record an open. Every fetch is an `email.opened` event; the first also sets `opened_at`."""
    link = await svc.db.read(lambda tx: _resolve(tx, token, "o"))
    if link.message is None:
        raise errors.NotFound()
    now = svc.clock.now()
    await svc.db.write(lambda tx: _record(tx, link, "email.opened", "opened_at", now, {}))
    return Response(PIXEL, media_type="image/gif", headers=_HEADERS)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
async def click(token: str, request: Request, svc: deps.Services = Depends(deps.services)) -> Response:
    """Record a click and redirect to the URL signed into the token. HEAD (link checkers) redirects
    without counting."""
    link = await svc.db.read(lambda tx: _resolve(tx, token, "c"))
    url = link.payload.get("u")
    if (
        not isinstance(url, str)
        or not url.lower().startswith(("http://", "https://"))
        or link.message is None
    ):
        raise errors.NotFound("This link is not valid.")
    if request.method == "GET":
        now = svc.clock.now()
        await svc.db.write(lambda tx: _record(tx, link, "email.clicked", "clicked_at", now, {"url": url}))
    return RedirectResponse(url, status_code=302, headers=_HEADERS)


def install(app: FastAPI) -> None:
    app.include_router(router)
    # Errors on these pages are small HTML pages, not an API's JSON envelope.
    api_errors.register("/u", _error_page)
    api_errors.register("/t", _error_page)
