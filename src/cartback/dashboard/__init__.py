"""The web dashboard under /app: server-rendered Jinja pages with htmx for partial updates, every asset
served from static/ (no CDN, no build step). `install(app)` mounts it; web.py holds what pages share."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cartback import errors
from cartback.api import errors as api_errors
from cartback.dashboard import web


def render_error(exc: errors.CartbackError) -> Response:
    """Errors under /app as pages: an unsigned-in visitor goes to the sign-in page, anything else gets a
    page naming the problem with its status."""
    if isinstance(exc, errors.Unauthorized):
        return RedirectResponse(web.PREFIX + "/login", status_code=303)
    body = web.templates.env.get_template("error.html").render(
        status=exc.status_code, message=exc.message, prefix=web.PREFIX
    )
    return HTMLResponse(body, status_code=exc.status_code, headers=web.SECURITY_HEADERS)


def router() -> APIRouter:
    from cartback.dashboard import (
        auth,
        checkouts,
        connectors,
        events,
        messages,
        overview,
        people,
        sequences,
        settings,
    )

    pages = APIRouter(prefix=web.PREFIX, include_in_schema=False)
    nav = []
    for module in (auth, overview, checkouts, people, messages, events, sequences, settings, connectors):
        pages.include_router(module.router)
        if hasattr(module, "NAV"):
            nav.append(module.NAV)
    web.templates.env.globals["nav"] = nav
    return pages


def install(app: FastAPI) -> None:
    api_errors.register(web.PREFIX, render_error)
    app.mount(web.PREFIX + "/static", StaticFiles(directory=web.HERE / "static"), name="dashboard-static")
    app.include_router(router())

    app.get(web.PREFIX, include_in_schema=False)(_root)


async def _root() -> Response:
    return RedirectResponse(web.PREFIX + "/", status_code=307)
