"""A cheaper way in for the hottest ingest routes, beside their ordinary FastAPI routes.

FastAPI's request handling (the middleware layers, route matching through the included routers, the
dependency solver, a `Request` object, JSON parsed by the standard library, the response model validated
again on the way out) cost more CPU per checkout than storing it. `LeanFront` sits just inside the access
log and answers a `LeanRoute`'s requests itself when it can answer exactly as the FastAPI route would: a
Content-Length within the body limit, a valid key with the route's scope and budget left, a JSON object
the orjson parser reads, every value storable, a body the request model accepts. It takes on what the
layers it skips would have done for such a request: counting it against the key's rate limit (with the
same headers) and checking its body for NUL escapes. For anything else it answers nothing and hands the
request, body and all, to the layers and routes behind it, so every error (401, 403, 400 and its
message, 413, 415, 429) and the OpenAPI document come from the FastAPI route alone and stay as they
were; a request it already counted is not counted again (api/ratelimits.DECIDED). What the write itself
raises is answered as the application's exception handler answers it (api/errors.answer).

Used by Sequenzy's `POST /api/v1/checkouts` (a Bearer key, `application/json`) and Klaviyo's
`POST /api/events` (`Klaviyo-API-Key` or Bearer, either JSON media type, a `revision` header).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cartback import errors, values
from cartback.api import deps, limits, scopes
from cartback.api import errors as api_errors
from cartback.api import ratelimits as api_ratelimits
from cartback.core import ratelimits

Headers = list[tuple[bytes, bytes]]
# What the handler is given: the caller, the parsed body (a dict), the services and the request's headers;
# it answers with a response, or None to let the FastAPI route answer.
Handler = Callable[[deps.Principal, dict[str, Any], deps.Services, Headers], Awaitable[Response | None]]

_JSON = (b"application/json",)
_BEARER = ("bearer",)
# orjson reads an integer beyond 64 bits as a float where the standard library keeps it whole (and the
# storable-values rule refuses it): a body with a run of 19 digits anywhere is left to the FastAPI route.
# Found as a run of "0" in the body with every digit made "0" and every other byte "x": a regex search for
# the run cost 8 us on a 1 KB checkout, this 1 us.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_LONG_DIGITS = b"0" * 19


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), as Starlette's `request.headers.get` reads it."""
    for key, value in headers:
        if key == name:
            return value
    return None


def secret(headers: Headers, schemes: tuple[str, ...] = _BEARER) -> str | None:
    """The key of a well-formed `Authorization: <scheme> <key>` with one of `schemes` (lower case), else
    None. Read as each surface's authentication reads it (deps.bearer_token, klaviyo.principal)."""
    value = header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() in schemes and token else None


def _json_body(headers: Headers, media_types: tuple[bytes, ...]) -> bool:
    value = header(headers, b"content-type")
    return value is not None and value.split(b";")[0].strip().lower() in media_types


class LeanRoute:
    """`handler` for `method path`, when it can answer. `scope` is the API-key scope the route needs (the
    FastAPI route's `x-cartback-scope`), `schemes` the Authorization schemes its surface takes (lower
    case), `media_types` the body types it reads as JSON."""

    def __init__(
        self,
        path: str,
        method: str,
        scope: str,
        handler: Handler,
        *,
        schemes: tuple[str, ...] = _BEARER,
        media_types: tuple[bytes, ...] = _JSON,
    ) -> None:
        self.path = path
        self.method = method
        self.needed = scope
        self.handler = handler
        self.schemes = schemes
        self.media_types = media_types

    async def caller(self, headers: Headers, services: deps.Services) -> deps.Principal | None:
        """Who sends a request this route may answer, judged by its headers; None to leave it."""
        key = secret(headers, self.schemes)
        if key is None or not _json_body(headers, self.media_types):
            return None
        try:
            who = await services.keys.authenticate(key)
        except errors.CartbackError:
            return None
        return who if scopes.allows(who.scopes, self.needed) else None

    async def answer(
        self, who: deps.Principal, body: bytes, services: deps.Services, headers: Headers
    ) -> Response | None:
        """The answer to `body` from `who`, or None when the FastAPI route is to give it."""
        if _LONG_DIGITS in body.translate(_DIGITS_AS_ZEROS) or limits.has_nul_escape(body):
            return None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        # Whatever the rule refuses is refused by the FastAPI route, with the value's place in the body.
        if not isinstance(payload, dict) or values.find_unstorable(payload) is not None:
            return None
        return await self.handler(who, payload, services, headers)


def install(app: Any, routes: list[LeanRoute]) -> None:
    """Have `app`'s LeanFront answer `routes` (create_app adds the front once every surface is installed)."""
    app.state.lean_routes = [*getattr(app.state, "lean_routes", []), *routes]


class LeanFront:
    """ASGI middleware: the lean routes' requests it can answer, answered here; everything else passed on.
    `limiter` is the API rate limiter when limits are on, `refusal_delay` how late a budget's refusal is
    sent (api/refusals.py)."""

    def __init__(
        self,
        app: ASGIApp,
        routes: list[LeanRoute],
        max_bytes: int,
        limiter: ratelimits.Limiter | None = None,
        refusal_delay: float = 0.0,
    ) -> None:
        self.app = app
        self.routes = {(route.method, route.path): route for route in routes}
        self.max_bytes = max_bytes
        self.limiter = limiter
        self.policy = limiter.policy.header().encode() if limiter is not None else b""
        self.refusal_delay = refusal_delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
        else:
            await self._serve(route, scope, receive, send)

    async def _serve(self, route: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
        headers: Headers = scope["headers"]
        services: deps.Services = scope["app"].state.services
        size = self._plain_size(scope)
        who = await route.caller(headers, services) if size else None
        if who is None:
            await self._pass_on(scope, receive, send)
            return
        scope["route"] = route  # for the access line, as the router sets it (and will, if it is passed on)
        extra: Headers = []
        decision = None
        if self.limiter is not None:
            decision = await api_ratelimits.decide(self.limiter, scope["path"], who)
            if decision is not None:
                if not decision.allowed:
                    scope[api_ratelimits.DECIDED] = decision
                    await self._pass_on(scope, receive, send)
                    return
                extra = api_ratelimits.headers_for(decision, self.policy)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        raw = bytes(body)
        try:
            response = await route.answer(who, raw, services, headers) if len(raw) == size else None
        except errors.CartbackError as exc:
            response = await api_errors.answer(scope["path"], exc, self.refusal_delay)
        if response is None:
            if decision is not None:  # counted once: the rate limits behind take this decision
                scope[api_ratelimits.DECIDED] = decision
            await self._pass_on(scope, limits.replay_body(raw, receive), send)
            return
        head = [*response.raw_headers, *extra] if extra else response.raw_headers
        await send({"type": "http.response.start", "status": response.status_code, "headers": head})
        await send({"type": "http.response.body", "body": response.body})

    async def _pass_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Leave a lean route's request to the layers and routes behind."""
        await self.app(scope, receive, send)

    def _plain_size(self, scope: Scope) -> int:
        """The body's declared length when the request is one the front may read and answer: a
        Content-Length within the limit, not chunked or compressed, no NUL in the URL; else 0."""
        length = transfer = encoding = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                transfer = value
            elif name == b"content-encoding":
                encoding = value
        if length is None or transfer is not None or encoding not in (None, b"identity"):
            return 0
        if not length.isdigit() or limits.nul_in_url(scope):
            return 0
        size = int(length)
        return size if size <= self.max_bytes else 0
