"""A cheaper way in for the hottest ingest routes, beside their ordinary FastAPI routes.

FastAPI's request handling (route matching through the included routers, the dependency solver, a
`Request` object, JSON parsed by the standard library, the response model validated again on the way
out) cost more CPU per checkout than storing it. A `LeanRoute` sits first in the application's routes and
answers only requests it can answer exactly as the FastAPI route would: a valid key with the route's
scope, a JSON object the orjson parser reads, every value storable, a body the request model accepts.
For anything else it answers nothing and hands the request, body and all, to the routes behind it, so
every error (401, 403, 400 and its message, 413, 415) and the OpenAPI document come from the FastAPI
route alone and stay as they were. What the write itself raises goes to the application's exception
handlers, as the FastAPI route's does, and is answered by the same renderer.

Used by Sequenzy's `POST /api/v1/checkouts` (a Bearer key, `application/json`) and Klaviyo's
`POST /api/events` (`Klaviyo-API-Key` or Bearer, either JSON media type, a `revision` header).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from cartback import errors, values
from cartback.api import deps, limits, scopes

Headers = list[tuple[bytes, bytes]]
# What the handler is given: the caller, the parsed body (a dict), the services and the request's headers;
# it answers with a response, or None to let the FastAPI route answer.
Handler = Callable[[deps.Principal, dict[str, Any], deps.Services, Headers], Awaitable[Response | None]]

# Set on a request's scope once the lean route declined it: the routes are matched again without it.
_DECLINED = "cartback.lean_declined"
_JSON = (b"application/json",)
_BEARER = ("bearer",)
# orjson reads an integer beyond 64 bits as a float where the standard library keeps it whole (and the
# storable-values rule refuses it): a body with a run of 19 digits anywhere is left to the FastAPI route.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


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


class LeanRoute(Route):
    """`handler` for `method path` when it can answer; otherwise the next route that matches. `scope` is
    the API-key scope the route needs (the FastAPI route's `x-cartback-scope`), `schemes` the
    Authorization schemes its surface takes (lower case), `media_types` the body types it reads as JSON."""

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
        super().__init__(path, self._serve, methods=[method], include_in_schema=False)
        self.needed = scope
        self.handler = handler
        self.schemes = schemes
        self.media_types = media_types

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(_DECLINED):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is not Match.FULL:
            # A wrong method is for the FastAPI route to answer (405 with every allowed method).
            return Match.NONE, {}
        return match, {**child, "route": self}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        raw = bytes(body)
        response = await self._answer(scope, raw)
        if response is not None:
            await response(scope, receive, send)
            return
        scope[_DECLINED] = True
        await scope["router"](scope, limits.replay_body(raw, receive), send)

    async def _answer(self, scope: Scope, body: bytes) -> Response | None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        key = secret(headers, self.schemes)
        if key is None or not body or not _json_body(headers, self.media_types):
            return None
        services: deps.Services = scope["app"].state.services
        try:
            who = await services.keys.authenticate(key)
        except errors.CartbackError:
            return None
        if not scopes.allows(who.scopes, self.needed):
            return None
        if _LONG_DIGITS.search(body) is not None:
            return None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        # Whatever the rule refuses is refused by the FastAPI route, with the value's place in the body.
        if not isinstance(payload, dict) or values.find_unstorable(payload) is not None:
            return None
        return await self.handler(who, payload, services, headers)
