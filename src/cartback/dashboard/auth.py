"""Sign-in and sign-out."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from cartback.api import deps
from cartback.core import passwords, users
from cartback.dashboard import sessions, web
from cartback.store import users as user_store

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never another site (an open redirect) or a scheme-relative URL."""
    if target and target.startswith(web.PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return web.PREFIX + "/"


@router.get("/login")
async def login_page(request: Request, next: str | None = None, _: None = Depends(web.guard)) -> Response:
    session = request.state.session
    if session is None:
        session = request.state.session = sessions.new()
    response = web.render(request, "login.html", {"next": _safe_next(next), "error": None})
    web.set_session(request, response, session)
    return response


@router.post("/login")
async def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    _: None = Depends(web.guard),
) -> Response:
    services = deps.services_of(request)
    user = await services.db.read(lambda tx: user_store.find_by_email(tx, email)) if email.strip() else None
    # scrypt takes a core for ~0.1 s: off the event loop, and outside the shared database writer.
    if not await anyio.to_thread.run_sync(users.check_credentials, user, password) or user is None:
        return web.render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "Wrong email address or password.", "email": email},
            status_code=401,
        )
    new_hash = None
    if passwords.needs_rehash(user.password_hash):
        new_hash = await anyio.to_thread.run_sync(passwords.hash_password, password)
    now = services.clock.now()
    signed_in = user
    await services.db.write(lambda tx: users.record_sign_in(tx, signed_in, now, new_hash), notify=False)
    response = RedirectResponse(_safe_next(next), status_code=303)
    web.set_session(request, response, request.state.session.signed_in(user.id))
    return response


@router.post("/logout")
async def logout(request: Request, _: None = Depends(web.guard)) -> Response:
    response = RedirectResponse(web.PREFIX + "/login", status_code=303)
    web.set_session(request, response, sessions.new())
    return response
