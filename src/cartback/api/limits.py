"""Refuse oversized and non-JSON bodies before anything reads them, in the caller's error envelope."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cartback import errors
from cartback.api import errors as api_errors

_JSON_TYPES = (b"application/json", b"application/vnd.api+json")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Public pages (/u, /t) and the dashboard take forms; only the APIs insist on JSON.
_API_PREFIXES = ("/api/", "/v1/")
# Amazon SNS posts its JSON with `Content-Type: text/plain` and cannot be told otherwise.
_TEXT_JSON_PATHS = ("/api/v1/inbound/ses",)
# Segment-protocol clients label their JSON as they please: analytics.js sends text/plain (a CORS-simple
# type), RudderStack's Node SDK lets axios call its gzipped JSON form-urlencoded, some send no type at all.
# The Segment API reads any of these as JSON (api/segment) and refuses a body that is not.
_ANY_TYPE_PREFIXES = ("/v1/",)
_SEGMENT_TYPES = (b"", b"text/plain", b"application/x-www-form-urlencoded", *_JSON_TYPES)
# A JSON `\u0000` escape, i.e. one not itself escaped (preceded by an even run of backslashes). PostgreSQL
# text cannot hold NUL, so such a value would fail at the store as a 5xx; it is refused here as a 400.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_ESCAPE = b"\\u0000"
_NUL_MESSAGE = "NUL characters (\\u0000) are not allowed in values"


def has_nul_escape(body: bytes | bytearray) -> bool:
    """Whether a JSON body holds a `\\u0000` escape: for bodies this middleware cannot see into (gzip)."""
    # The plain substring test first: the pattern can start matching at every byte (its backslash run may
    # be empty), so searching a body with it costs tens of microseconds, a tenth of a checkout's CPU.
    return _NUL_ESCAPE in body and _JSON_NUL.search(body) is not None


def nul_in_url(scope: Scope) -> bool:
    return "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")


class _TooLarge(Exception):
    pass


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over the buffered body once, then defers to the server (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimits:
    """ASGI middleware: 413 past `max_bytes` (by Content-Length, or by buffering a chunked body up to the
    limit), 415 when an API body is not JSON, 400 when an API request carries a NUL character."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        api = path.startswith(_API_PREFIXES)
        if api and nul_in_url(scope):
            await api_errors.render(path, errors.InvalidInput(_NUL_MESSAGE))(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            await api_errors.render(path, errors.InvalidInput("invalid Content-Length"))(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(path, scope, receive, send)
            return
        has_body = chunked or (declared or 0) > 0
        if has_body and api:
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if path.startswith(_ANY_TYPE_PREFIXES):
                allowed = ctype in _SEGMENT_TYPES
            else:
                allowed = ctype in _JSON_TYPES or (ctype == b"text/plain" and path in _TEXT_JSON_PATHS)
            if not allowed:
                exc = errors.UnsupportedMediaType(
                    f"Content-Type must be application/json, not {ctype.decode('latin-1') or 'missing'}"
                )
                await api_errors.render(path, exc)(scope, receive, send)
                return

        if declared is None or (api and has_body):
            # Read the body here, up to the limit: a chunked body has no Content-Length to check (counting
            # while the app reads is not enough, since FastAPI turns any error raised by `receive` into a
            # 400), and an API body is checked for NUL escapes. The app reads it whole anyway.
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away; nobody to answer
                    return
                body += message.get("body", b"")
                if len(body) > self.max_bytes:
                    await self._too_large(path, scope, receive, send)
                    return
                more = message.get("more_body", False)
            compressed = headers.get(b"content-encoding", b"identity").strip().lower() != b"identity"
            if api and not compressed and has_nul_escape(body):
                await api_errors.render(path, errors.InvalidInput(_NUL_MESSAGE))(scope, receive, send)
                return
            await self.app(scope, replay_body(bytes(body), receive), send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._too_large(path, scope, receive, send)

    async def _too_large(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        exc = errors.PayloadTooLarge(f"request body exceeds the {self.max_bytes}-byte limit")
        await api_errors.render(path, exc)(scope, receive, send)
