"""Store platforms' own webhooks, unchanged, at /hooks/<platform>/<connector id> (docs/connectors.md).

The route reads the raw body (signatures are over its exact bytes), finds the connector, checks the
platform's signature with the connector's secrets, and only then parses: a bad or missing signature is a
401 and nothing is read further. A topic cartback does not map is a 200 storing nothing (platforms
disable endpoints that fail); a malformed body is a 400. Each platform's module has the same two
functions: `verify(headers, body, secrets, now)` and `parse(headers, body) -> connectors.Webhook`.
Errors are `{"error": ..., "code": ...}`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel
from starlette.datastructures import Headers

from cartback import errors
from cartback.api import deps, limits
from cartback.core import connectors

PREFIX = "/hooks"

Platform = Literal["shopify", "stripe", "woocommerce", "bigcommerce"]


class Mapper(Protocol):
    def verify(self, headers: Headers, body: bytes, secrets: tuple[str, ...], now: datetime) -> None: ...

    def parse(self, headers: Headers, body: bytes) -> connectors.Webhook: ...


class Accepted(BaseModel):
    """`applied`: the webhook was stored now; `replayed`: its id was applied before, nothing changed.
    Neither: a topic cartback does not map."""

    ok: bool = True
    applied: bool
    replayed: bool


def _mappers() -> dict[str, Mapper]:
    from cartback.api.hooks import bigcommerce, shopify, stripe, woocommerce

    return {"shopify": shopify, "stripe": stripe, "woocommerce": woocommerce, "bigcommerce": bigcommerce}


async def sealer_of(request: Request) -> connectors.Sealer:
    """The sealer of connector secrets, keyed by the server's secret key (fetched once per process)."""
    state = request.app.state
    cached: connectors.Sealer | None = getattr(state, "connector_sealer", None)
    if cached is None:
        from cartback import app as app_module  # the app module imports this package

        services = deps.services_of(request)
        secret = await anyio.to_thread.run_sync(app_module.secret_key, services.settings, services.db)
        cached = state.connector_sealer = connectors.Sealer(secret)
    return cached


router = APIRouter(prefix=PREFIX, tags=["connectors"])


@router.post(
    "/{platform}/{connector_id}",
    response_model=Accepted,
    responses={
        400: {"description": "A malformed body"},
        401: {"description": "A missing, forged or stale signature: nothing is stored"},
        404: {"description": "No such connector for this platform"},
    },
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}, "required": False}
    },
)
async def receive(
    platform: Platform,
    connector_id: str,
    request: Request,
    svc: deps.Services = Depends(deps.services),
) -> Accepted:
    """A platform's webhook, signed as the platform signs it; applied once per webhook id."""
    mapper = _mappers()[platform]
    body = await request.body()
    now = svc.clock.now()
    sealer = await sealer_of(request)
    src = await svc.db.read(lambda tx: connectors.source(tx, sealer, platform, connector_id, now))
    mapper.verify(request.headers, body, src.secrets, now)
    if limits.has_nul_escape(body):
        raise errors.InvalidInput("NUL characters (\\u0000) are not allowed in values")
    hook = mapper.parse(request.headers, body)
    if hook.actions is None:
        return Accepted(applied=False, replayed=False)
    done = await svc.db.write(lambda tx: connectors.receive(tx, src, hook, now))
    return Accepted(applied=done.applied, replayed=done.replayed)


def install(app: FastAPI) -> None:
    app.include_router(router)
