"""The outermost middleware: a request id for every request, one access log line, and the request metrics.

The id is the caller's `X-Request-Id` when it is a plausible one (1-128 characters of letters, digits and
`._:+/=-`; a load balancer's or client's trace id passes), else a new one; either way it is sent back in
`X-Request-Id` and carried by every log line written while the request is handled.

The access line names the route's path template (`/api/v1/subscribers/{email}`, not the address), the
status, the duration, the API surface and the workspace; never a header, a query string or a body.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cartback import logs
from cartback import metrics as metrics_module
from cartback.delivery import render_budget

_VALID_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
_HEADER = b"x-request-id"

log = logging.getLogger("cartback.access")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's request id if it is acceptable, else a new random one."""
    for name, value in headers:
        if name == _HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return secrets.token_hex(16)


def path_template(scope: Scope) -> str:
    """The matched route's template with its routers' prefixes (`/api/v1/subscribers/{email}`), or a fixed
    placeholder: never the raw path, which may hold an email address or a signed token."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "<unmatched>"
    # An included router's route knows only its own part of the path; the prefixes before it are the
    # static part of the request path that the route's pattern does not cover.
    regex = getattr(route, "path_regex", None)
    path: str = scope["path"]
    if regex is None or regex.match(path):
        return template
    start = path.find("/", 1)
    while start > 0:
        if regex.match(path[start:]):
            return path[:start] + template
        start = path.find("/", start + 1)
    return template


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: metrics_module.Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        encoded_id = request_id.encode("ascii")
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _HEADER]
                headers.append((_HEADER, encoded_id))
                message = {**message, "headers": headers}
            await send(message)

        with logs.request_scope(request_id=request_id) as fields, render_budget.request():
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                path: str = scope["path"]
                surface = metrics_module.surface_of(path)
                method: str = scope["method"]
                self.metrics.request_done(
                    surface, status, seconds, ingest=metrics_module.is_ingest(method, path)
                )
                level = logging.ERROR if status >= 500 else logging.INFO
                if log.isEnabledFor(level):
                    line: dict[str, Any] = {
                        "method": method,
                        "path": path_template(scope),
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "surface": surface,
                        "workspace_id": fields.get("workspace_id"),
                    }
                    logs.write_line(log, level, "request", line)
