"""What operators and load balancers call: GET /healthz, /readyz and /metrics.

Module-level functions reading the app's state, not closures over what create_app built: FastAPI keeps
every endpoint it has inspected in caches of its own for the life of the process (4,096 entries), and a
closure there kept its whole app alive, its database engines and compiled statements too, long after the
app was let go (a process that builds many apps, as the test suite does, grew without end).
"""

from __future__ import annotations

import hmac
from typing import Protocol

import anyio.to_thread
import prometheus_client
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import JSONResponse, Response

from cartback.api import deps
from cartback.metrics import Metrics

router = APIRouter(tags=["operations"])


class Database(Protocol):
    """What /readyz asks of the database (store.db.Database)."""

    dialect: str

    async def ping(self) -> None: ...


def install(app: FastAPI, database: Database) -> None:
    app.state.database = database
    app.include_router(router)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The database answers; a load balancer may send traffic."""
    database: Database = request.app.state.database
    try:
        await database.ping()
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": database.dialect})


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format. Open like /healthz unless CARTBACK_METRICS_TOKEN is set."""
    services: deps.Services = request.app.state.services
    expected = services.settings.metrics_token
    if expected:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return JSONResponse(
                {"error": "send 'Authorization: Bearer <CARTBACK_METRICS_TOKEN>'", "code": "unauthorized"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    metrics: Metrics = request.app.state.metrics
    # The enrollment gauge queries the database: off the event loop.
    body = await anyio.to_thread.run_sync(metrics.exposition)
    return Response(body, media_type=prometheus_client.CONTENT_TYPE_LATEST)
