"""Sign-in and sign-out."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from cartback.api import deps, refusals
from cartback.core import passwords, signins, users
from cartback.dashboard import sessions, web

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
    guard: signins.Guard = request.app.state.sign_ins
    client = request.client.host if request.client else "unknown"
    context = {"next": _safe_next(next), "email": email}
    try:
        # The hash budget first: when a flood has spent it, the attempt is refused as busy having cost
        # neither a count nor a lookup (on PostgreSQL four counter transactions and a read).
        delay = await guard.gate.admit()
    except signins.Busy as exc:
        return await _refused(request, context, exc)
    try:
        # Counted (and refused when locked) before any hashing: a locked address or client costs a
        # counter lookup, not 32 MiB and 0.1 s of a core.
        try:
            await guard.attempts.begin(email, client)
        except signins.Locked:
            guard.gate.give_back()
            raise
        user = await services.db.read(lambda tx: users.find_for_sign_in(tx, email))
        # scrypt takes a core for ~0.1 s: off the event loop, outside the shared database writer, and
        # never more than CARTBACK_SIGN_IN_HASHES at once.
        matched = await guard.gate.run_admitted(delay, users.check_credentials, user, password)
        if not matched or user is None:
            return web.render(
                request,
                "login.html",
                {**context, "error": "Wrong email address or password."},
                status_code=401,
            )
        await guard.attempts.take_back(email, client)
        new_hash = None
        if passwords.needs_rehash(user.password_hash):
            # The password was right: when hashing is busy, sign in now and re-hash at a quieter sign-in.
            with contextlib.suppress(signins.Busy):
                new_hash = await guard.gate.run(passwords.hash_password, password)
    except (signins.Locked, signins.Busy) as exc:
        if isinstance(exc, signins.Busy):  # the password was never checked
            await guard.attempts.take_back(email, client)
        return await _refused(request, context, exc)
    now = services.clock.now()
    signed_in = user
    await services.db.write(lambda tx: users.record_sign_in(tx, signed_in, now, new_hash), notify=False)
    response = RedirectResponse(_safe_next(next), status_code=303)
    web.set_session(request, response, request.state.session.signed_in(user.id, user.session_version))
    return response


async def _refused(request: Request, context: dict[str, str], exc: signins.Locked | signins.Busy) -> Response:
    response = web.render(
        request, "login.html", {**context, "error": exc.message}, status_code=exc.status_code
    )
    response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, signins.Locked):  # Busy has waited already
        await refusals.wait(refusals.delay_of(request), exc.retry_after)
    return response


@router.post("/logout")
async def logout(request: Request, _: None = Depends(web.guard)) -> Response:
    session: sessions.Session | None = request.state.session
    if session is not None and session.user_id is not None:
        user_id = session.user_id
        # Ends this session and every other of the user's on the server, not only in this browser.
        await deps.services_of(request).db.write(lambda tx: users.sign_out(tx, user_id), notify=False)
    response = RedirectResponse(web.PREFIX + "/login", status_code=303)
    web.set_session(request, response, sessions.new())
    return response
