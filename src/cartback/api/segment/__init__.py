"""The Segment-compatible Tracking API under /v1: `segment-analytics-python` (and any Segment source
pointed at cartback) works unchanged.

Authentication is HTTP Basic with the write key (one of our API keys) as the user name and an empty
password; the key may also come as `writeKey` in the body, as Segment accepts (analytics.js sends it only
there). Bodies are JSON whatever their Content-Type says, and may be gzipped.
Errors are `{"success": false, "code": ..., "message": ...}` (the client reads `code` and `message`), and
bad input is always a 4xx the client does not retry: it retries 408, 410, 429, 460 and 5xx only.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cartback import errors
from cartback.api import bodies, deps, limits, routing, scopes
from cartback.api import errors as api_errors

PREFIX = "/v1"
# gzip, and the alias some HTTP stacks still send for it.
_GZIP = ("gzip", "x-gzip")


def render_error(exc: errors.CartbackError) -> Response:
    """Segment's error body. Never a retryable status for bad input: the client would resend forever.
    A conflict here can only be concurrent writers racing on the same rows, which a retry resolves, while
    the client drops a batch answered 409: so it is a 503, which the client retries."""
    status = 503 if isinstance(exc, errors.Conflict) else exc.status_code
    return JSONResponse({"success": False, "code": exc.code, "message": exc.message}, status_code=status)


def inflate(raw: bytes, limit: int) -> bytes:
    """A gzip body, inflated to at most `limit` bytes: a small body that inflates without end (a zip
    bomb) is a 413 once past the limit, not memory exhausted."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise HTTPException(400, "malformed gzip body") from exc
    if len(body) > limit:
        raise HTTPException(413, f"request body exceeds the {limit}-byte limit once inflated")
    if not inflater.eof or inflater.unused_data:
        raise HTTPException(400, "malformed gzip body: truncated, or data after its end")
    return body


class SegmentRequest(Request):
    """A request whose body is inflated when it says `Content-Encoding: gzip`."""

    async def body(self) -> bytes:
        if not hasattr(self, "_decoded"):
            raw = await super().body()
            encoding = self.headers.get("content-encoding", "identity").strip().lower()
            if encoding in _GZIP:
                limit = deps.services_of(self).settings.max_body_bytes
                decoded = inflate(raw, limit)
                # The body-limit middleware could not look inside the compressed body.
                if limits.has_nul_escape(decoded):
                    raise HTTPException(400, "NUL characters (\\u0000) are not allowed in values")
            elif encoding in ("identity", ""):
                decoded = raw
            else:
                raise HTTPException(415, f"Content-Encoding must be gzip or identity, not {encoding}")
            self._decoded = decoded
        return self._decoded


def as_json(scope: Scope) -> Scope:
    """The request labelled `application/json`, whatever it said: Segment-protocol clients send their JSON
    as text/plain (analytics.js), form-urlencoded (RudderStack's Node SDK) or untyped (api/limits lets
    only these through). FastAPI parses a body as JSON only when so labelled; one that is not JSON is then
    a 400 like any malformed body."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


class SegmentRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(SegmentRequest(as_json(request.scope), request.receive))

        return route


class BrowserAccess:
    """ASGI middleware: CORS for /v1 alone, as Segment's own API answers it. analytics.js posts from the
    shop's pages, from any origin, and its Authorization header makes the browser ask first (a preflight
    OPTIONS). The write key is no secret (it is in every page) and no cookie is involved, so any origin
    may post; the other APIs and the dashboard stay same-origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=["*"], allow_methods=["POST"], allow_headers=["*"], max_age=86400
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def header_key(request: Request) -> str | None:
    """The write key from `Authorization: Basic base64(key:)`; `Bearer <key>` is accepted too."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        raise errors.Unauthorized("send the write key as the HTTP Basic user name")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise errors.Unauthorized("malformed HTTP Basic credentials") from exc
    user, _, password = decoded.partition(":")
    # Segment's clients send the key as the user name; a key given as the password alone is taken too.
    return user or password or None


async def body_key(request: Request) -> str | None:
    """`writeKey` from the JSON body, which the client sends beside the Basic header."""
    try:
        payload = await request.json()
    except Exception:  # unreadable bodies are refused by the route itself, with their own message
        return None
    key = payload.get("writeKey") if isinstance(payload, dict) else None
    return (key.strip() or None) if isinstance(key, str) else None


async def principal(request: Request) -> deps.Principal:
    """The workspace of the write key: from the Basic header, else from `writeKey` in the body. Every route
    here is ingest, so the key needs `events:write` (api/scopes.py)."""
    key = header_key(request) or await body_key(request)
    if not key:
        raise errors.Unauthorized("missing write key: send it as the HTTP Basic user name")
    return scopes.check(request, await deps.services_of(request).keys.authenticate(key))


def router() -> APIRouter:
    from cartback.api.segment import tracking

    api = routing.PrefixRouter(prefix=PREFIX, dependencies=[Depends(principal), Depends(bodies.storable)])
    api.include_router(tracking.router)
    return api


def install(app: FastAPI) -> None:
    api_errors.register(PREFIX, render_error)
    app.include_router(router())
