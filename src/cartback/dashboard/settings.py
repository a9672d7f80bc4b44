"""Settings: the workspace's sender identity, API keys (a new secret is shown once; revoke), webhook
endpoints (a new signing secret is shown once; enable, disable, delete), store connectors (their routes
in dashboard/connectors.py) and suppressions (search, add and lift, each with its reason).

Every change goes through the same core/store functions as the API, scoped to the viewer's workspace.
A secret is shown in the response to the POST that made it, never in a URL, and is not stored in clear.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from cartback import addresses, errors, headers, ids
from cartback.api import deps
from cartback.core import connectors, reports, shops, suppressions, webhooks, workspaces
from cartback.dashboard import web
from cartback.delivery import mime, smtp, targets

router = APIRouter()
NAV = ("/app/settings", "Settings")

_NOTICES = {
    "sender": "Sender saved.",
    "shop": "Shop identity saved.",
    "revoked": "Key revoked. Requests with it are refused within a few seconds on every node.",
    "webhook-enabled": "Webhook enabled.",
    "webhook-disabled": "Webhook disabled; its pending deliveries are cancelled.",
    "webhook-deleted": "Webhook deleted.",
    "suppressed": "Address suppressed.",
    "lifted": "Suppression lifted.",
    "connector-removed": "Connector removed: its webhooks are refused (404) from now on.",
}


def _check_email(value: str) -> str:
    try:
        return addresses.normalise(value)
    except addresses.InvalidAddress as exc:
        raise errors.InvalidInput(f"{exc}.") from None


def _sender(name: str, address: str) -> str | None:
    """'Shop <shop@example.com>' from the two fields; None (the server default) when both are empty."""
    name, address = name.strip(), address.strip()
    if not name and not address:
        return None
    address = _check_email(address)
    if '"' in name or len(name) > 70:
        raise errors.InvalidInput("The sender name must be at most 70 characters, without <, > or quotes.")
    try:
        return headers.named(name, address)
    except headers.InvalidHeader as exc:
        raise errors.InvalidInput(f"The sender name {exc}.") from None


async def _page(
    request: Request,
    viewer: web.Viewer,
    *,
    q: str = "",
    notice: str | None = None,
    problem: str | None = None,
    new_key: str | None = None,
    new_webhook_secret: str | None = None,
    connector: connectors.Made | None = None,
    test_email: tuple[bool, str] | None = None,
    status_code: int = 200,
) -> Response:
    public_url = deps.services_of(request).settings.public_url
    data = await web.read(request, viewer, workspaces.settings, q.strip() or None)
    last_delivery = await web.read(request, viewer, reports.last_delivery, None)
    smtp_url = deps.services_of(request).settings.smtp_url
    return web.render(
        request,
        "settings.html",
        {
            **vars(data),
            "q": q,
            "notice": notice,
            "problem": problem,
            "new_key": new_key,
            "new_webhook_secret": new_webhook_secret,
            "scopes": workspaces.ALL_SCOPES,
            "least_scope": LEAST_SCOPE,
            "event_types": webhooks.EVENT_TYPES,
            "reasons": suppressions.REASONS,
            "default_from": deps.services_of(request).settings.from_,
            "connector": connector,
            "transport": smtp.parse_url(smtp_url).describe() if smtp_url else None,
            "last_delivery": last_delivery,
            "test_email": test_email,
            "platforms": connectors.PLATFORMS,
            "chosen_by_shop": connectors.CHOSEN_BY_SHOP,
            "grace_hours": int(connectors.DEFAULT_GRACE.total_seconds() // 3600),
            "hook_url": lambda platform, connector_id: connectors.webhook_url(
                public_url, platform, connector_id
            ),
        },
        status_code=status_code,
    )


def _done(notice: str, anchor: str) -> Response:
    return RedirectResponse(f"{web.PREFIX}/settings?done={notice}#{anchor}", status_code=303)


@router.get("/settings")
async def settings_page(
    request: Request,
    q: str = Query("", max_length=320),
    done: str = Query("", max_length=40),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    return await _page(request, viewer, q=q, notice=_NOTICES.get(done))


async def _form(request: Request) -> dict[str, Any]:
    data = await request.form()
    return {key: [v for v in data.getlist(key) if isinstance(v, str)] for key in data}


def _one(form: dict[str, Any], key: str) -> str:
    values = form.get(key) or [""]
    return str(values[0])


async def _attempt(
    request: Request, viewer: web.Viewer, change: Awaitable[object], notice: str, anchor: str
) -> Response:
    """Await a write (one core use case); a refusal re-renders the page with the message (status 400),
    nothing changed."""
    try:
        await change
    except errors.InvalidInput as exc:
        return await _page(request, viewer, problem=exc.message, status_code=400)
    return _done(notice, anchor)


@router.post("/settings/sender")
async def save_sender(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await _form(request)
    try:
        sender = _sender(_one(form, "from_name"), _one(form, "from_email"))
    except errors.InvalidInput as exc:
        return await _page(request, viewer, problem=exc.message, status_code=400)
    change = web.write(request, viewer, workspaces.set_sender, sender)
    return await _attempt(request, viewer, change, "sender", "sender")


@router.post("/settings/shop")
async def save_shop(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await _form(request)
    name, address = _one(form, "shop_name"), _one(form, "shop_address")
    change = deps.services_of(request).db.write(
        lambda tx: shops.update(tx, viewer.workspace_id, name, address)
    )
    return await _attempt(request, viewer, change, "shop", "shop")


LEAST_SCOPE = "events:write"


@router.post("/settings/keys")
async def create_key(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await _form(request)
    # Least power by default: a key that can only send events (what a storefront needs).
    key = workspaces.NewKey(
        _one(form, "name").strip()[:200], tuple(form.get("scopes") or ()) or (LEAST_SCOPE,)
    )
    try:
        _, secret = await web.write(request, viewer, workspaces.create_api_key, key)
    except errors.InvalidInput as exc:
        return await _page(request, viewer, problem=exc.message, status_code=400)
    return await _page(request, viewer, new_key=secret)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    key_id = web.object_id(key_id, "API key")
    services = deps.services_of(request)
    if not key_id.startswith("key_"):
        raise errors.NotFound(f"No API key {key_id!r} in this workspace.")
    await web.write(request, viewer, workspaces.revoke_api_key, key_id)
    services.keys.forget()
    return _done("revoked", "keys")


@router.post("/settings/webhooks")
async def create_webhook(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await _form(request)
    services = deps.services_of(request)
    chosen = form.get("events") or None
    now = services.clock.now()
    try:
        await targets.check_url(_one(form, "url"), allow_private=services.settings.webhook_allow_private)
        _, secret = await services.db.write(
            lambda tx: webhooks.create(
                tx,
                viewer.workspace_id,
                name=_one(form, "name"),
                url=_one(form, "url"),
                event_types=chosen,
                now=now,
            )
        )
    except errors.InvalidInput as exc:
        return await _page(request, viewer, problem=exc.message, status_code=400)
    return await _page(request, viewer, new_webhook_secret=secret)


@router.post("/settings/webhooks/{endpoint_id}")
async def change_webhook(
    request: Request, endpoint_id: str, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    endpoint_id = web.object_id(endpoint_id, "webhook")
    action = _one(await _form(request), "action")
    now = deps.services_of(request).clock.now()
    if action == "delete":
        deleted = deps.services_of(request).db.write(
            lambda tx: webhooks.delete(tx, viewer.workspace_id, endpoint_id)
        )
        return await _attempt(request, viewer, deleted, "webhook-deleted", "webhooks")
    if action not in ("enabled", "disabled"):
        raise errors.InvalidInput("action must be enabled, disabled or delete")
    switched = deps.services_of(request).db.write(
        lambda tx: webhooks.update(tx, viewer.workspace_id, endpoint_id, now=now, status=action)
    )
    return await _attempt(request, viewer, switched, f"webhook-{action}", "webhooks")


@router.post("/settings/suppressions")
async def add_suppression(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await _form(request)
    reason, note = _one(form, "reason"), _one(form, "detail").strip()[:500] or None
    try:
        email = _check_email(_one(form, "email"))
        if reason not in suppressions.REASONS:
            raise errors.InvalidInput(f"The reason must be one of {', '.join(suppressions.REASONS)}.")
    except errors.InvalidInput as exc:
        return await _page(request, viewer, problem=exc.message, status_code=400)
    now = deps.services_of(request).clock.now()
    change = deps.services_of(request).db.write(
        lambda tx: suppressions.suppress(
            tx, viewer.workspace_id, email, reason, "dashboard", now, detail=note
        )
    )
    return await _attempt(request, viewer, change, "suppressed", "suppressions")


@router.post("/settings/suppressions/lift")
async def lift_suppression(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await _form(request)
    lifted = suppressions.Lift(_one(form, "email").strip(), _one(form, "reason"))
    await web.write(request, viewer, suppressions.lift, lifted)
    return _done("lifted", "suppressions")


@router.post("/settings/test-email")
async def send_test_email(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    """Send one email through the configured transport to the signed-in user and say what it answered;
    nothing is stored, so the outbox and the figures stay the shop's own mail."""
    services = deps.services_of(request)
    to = viewer.user.email
    if not services.settings.smtp_url:
        said = (
            f"No email was sent to {to}: no transport is set (CARTBACK_SMTP_URL), so mail is kept in the "
            "outbox and not delivered."
        )
        return await _page(request, viewer, test_email=(False, said))
    data = await web.read(request, viewer, workspaces.settings, None)
    sender = data.workspace.from_address or services.settings.from_
    now = services.clock.now()
    token = ids.new_id("test")
    try:
        envelope = mime.envelope_of(sender, to)
    except ValueError as exc:
        return await _page(request, viewer, test_email=(False, f"No email was sent: {exc}."), status_code=400)
    raw = mime.build(
        message_id=token,
        rfc_message_id=f"<{token}@{mime.domain_of(envelope.sender)}>",
        from_email=sender,
        to_email=to,
        subject="cartback test email",
        html=None,
        text="This test email was sent from Settings to check that mail reaches you.\r\n",
        kind="transactional",
        date=now,
    )
    transport = smtp.SmtpTransport.from_url(services.settings.smtp_url, concurrency=1, timeout=15.0)
    try:
        result = await transport.send(envelope.sender, envelope.recipients, raw)
    finally:
        await transport.close()
    server = smtp.parse_url(services.settings.smtp_url).describe()
    if result.status == "sent":
        said = f"Test email sent to {to}: {server} answered {result.describe()}."
    else:
        said = f"The test email to {to} was not sent: {server} answered {result.describe()}."
    return await _page(request, viewer, test_email=(result.status == "sent", said))
