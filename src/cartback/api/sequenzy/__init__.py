"""The Sequenzy-compatible API under /api/v1: the official `sequenzy` SDK works against it unchanged.

Its error envelope is `{"success": false, "error": "<message>", "code": "<code>"}`; every 2xx is a JSON
object,
because the SDK raises on an empty body.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.responses import JSONResponse, Response

from cartback import errors
from cartback.api import bodies, deps, lean, routing, scopes
from cartback.api import errors as api_errors

PREFIX = "/api/v1"


def render_error(exc: errors.CartbackError) -> Response:
    return JSONResponse(
        {"success": False, "error": exc.message, "code": exc.code}, status_code=exc.status_code
    )


async def principal(request: Request) -> deps.Principal:
    """Bearer-key authentication; the key's workspace scopes every query the route makes, and the key's
    scopes must allow the route (api/scopes.py)."""
    who = await deps.services_of(request).keys.authenticate(deps.bearer_token(request))
    return scopes.check(request, who)


def router() -> APIRouter:
    """Assemble the resource modules. Order matters where paths overlap (`/subscribers/external` before
    `/subscribers/{email}`), so each module's router is included in the order below."""
    from cartback.api.sequenzy import (
        analytics,
        commerce,
        events,
        lists,
        outbox,
        sequences,
        subscribers,
        suppressions,
        transactional,
        webhooks,
    )

    api = routing.PrefixRouter(prefix=PREFIX, dependencies=[Depends(principal), Depends(bodies.storable)])
    for module in (
        analytics,
        commerce,
        events,
        lists,
        outbox,
        sequences,
        subscribers,
        suppressions,
        transactional,
        webhooks,
    ):
        api.include_router(module.router)
    return api


def install(app: FastAPI) -> None:
    from cartback.api.sequenzy import commerce, inbound

    api_errors.register(PREFIX, render_error)
    # The checkout ingest's cheaper way in (api/lean.py).
    lean.install(app, commerce.lean_routes(PREFIX))
    app.include_router(router())
    # Provider notifications authenticate by Bearer or Basic (SNS, Postmark), so not under `principal`.
    app.include_router(inbound.router)
