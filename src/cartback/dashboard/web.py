"""What every dashboard page shares: templates, the session, the signed-in viewer, and CSRF checks.

`guard` runs before every dashboard route. It reads the session cookie and, on any unsafe method,
refuses the request unless it carries the session's CSRF token. `viewer` then resolves the signed-in
user and their workspace; every page reads only through `viewer.workspace_id`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from cartback import errors, logs
from cartback.api import deps
from cartback.core import users
from cartback.core.units import Tx
from cartback.dashboard import formats, sessions
from cartback.delivery import render_budget

PREFIX = "/app"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
formats.register(templates.env)

# Applied to every dashboard response. Scripts and styles come only from cartback itself; the message
# preview iframe is further locked down by its own sandbox attribute and response CSP.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Viewer:
    user: users.User
    workspace: users.Workspace

    @property
    def workspace_id(self) -> str:
        return self.workspace.id


async def codec(request: Request) -> sessions.Codec:
    """The cookie codec, keyed by the application secret (fetched, or generated, once per process)."""
    state = request.app.state
    cached: sessions.Codec | None = getattr(state, "dashboard_codec", None)
    if cached is None:
        from cartback import app as app_module  # the app module imports this package

        services = deps.services_of(request)
        secret = await anyio.to_thread.run_sync(app_module.secret_key, services.settings, services.db)
        cached = state.dashboard_codec = sessions.Codec(secret)
    return cached


async def guard(request: Request) -> None:
    """Load the session; refuse an unsafe request without the session's CSRF token."""
    session = (await codec(request)).loads(request.cookies.get(sessions.COOKIE))
    request.state.session = session
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    submitted = request.headers.get(sessions.CSRF_HEADER)
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        # Starlette keeps the parsed form on the request, so the route's Form() parameters reuse it.
        value = (await request.form()).get(sessions.CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    sessions.check_csrf(session, submitted)


async def viewer(request: Request, _: None = Depends(guard)) -> Viewer:
    session: sessions.Session | None = request.state.session
    if session is None or session.user_id is None:
        raise errors.Unauthorized("Please sign in.")
    user_id, version = session.user_id, session.version
    found = await deps.services_of(request).db.read(lambda tx: users.session_user(tx, user_id, version))
    if found is None:
        raise errors.Unauthorized("Please sign in.")
    signed_in = request.state.viewer = Viewer(*found)
    # For the access log line, and so that renders this page asks for spend this workspace's budget.
    logs.note(workspace_id=signed_in.workspace_id)
    render_budget.charge_to(signed_in.workspace_id)
    return signed_in


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def object_id(value: str, what: str) -> str:
    """An id from a URL: ours are `prefix_` + base32. Anything else names nothing and is a 404 before it
    reaches a query (PostgreSQL refuses NUL characters with an error, not an empty result)."""
    if not _ID.fullmatch(value):
        raise errors.NotFound(f"No {what} {value!r} in this workspace.")
    return value


def now(request: Request) -> datetime:
    return deps.services_of(request).clock.now().astimezone(UTC)


In = TypeVar("In")
T = TypeVar("T")
# A core use case: fn(tx, workspace_id, input, now) -> result.
UseCase = Callable[[Tx, str, In, datetime], T]


async def read(request: Request, viewer: Viewer, use_case: UseCase[In, T], given: In) -> T:
    """Run one core use case for the viewer's workspace, as one read: a page parses, calls this once and
    renders what it returns."""
    at = now(request)
    return await deps.services_of(request).db.read(lambda tx: use_case(tx, viewer.workspace_id, given, at))


async def write(request: Request, viewer: Viewer, use_case: UseCase[In, T], given: In) -> T:
    """Run one core use case for the viewer's workspace as one unit of work (the group-commit writer)."""
    services = deps.services_of(request)
    at = services.clock.now()
    return await services.db.write(lambda tx: use_case(tx, viewer.workspace_id, given, at))


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> Response:
    session: sessions.Session | None = getattr(request.state, "session", None)
    full = {
        "viewer": getattr(request.state, "viewer", None),
        "csrf_token": session.csrf if session else "",
        "csrf_field": sessions.CSRF_FIELD,
        "path": request.url.path,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, full, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def set_session(request: Request, response: Response, session: sessions.Session) -> None:
    cached: sessions.Codec = request.app.state.dashboard_codec
    response.set_cookie(
        sessions.COOKIE,
        cached.dumps(session),
        max_age=sessions.MAX_AGE,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=deps.services_of(request).settings.public_url.startswith("https://"),
    )
