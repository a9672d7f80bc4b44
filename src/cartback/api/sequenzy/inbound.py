"""Bounce and complaint notifications from mail providers: /api/v1/inbound/{bounces,ses,postmark}.

Authentication is the workspace's API key (scope `events:write` suffices), as a Bearer token or as the
HTTP Basic password (Amazon SNS and Postmark can only carry credentials in the URL:
`https://x:KEY@host/api/v1/inbound/ses`). A 401 here carries `WWW-Authenticate: Basic` so that a client
which waits for a challenge sends them.

Every notification is idempotent: a replay (SNS and Postmark retry) finds the suppression already there,
and a soft bounce records its `email.delivery_delayed` event once per provider notification id. Hard
bounces and complaints suppress (core/suppressions.py); soft bounces never do. Shapes: docs/suppressions.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from email.utils import parseaddr
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import Field
from starlette.exceptions import HTTPException

from cartback import errors
from cartback.api import deps, scopes
from cartback.api.sequenzy import PREFIX, models
from cartback.core import suppressions

log = logging.getLogger(__name__)

MAX_NOTICES = 1000
# Only SNS's own hosts are ever fetched to confirm a subscription (no request to a URL a caller chose).
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
SUBSCRIBE_TIMEOUT = 5.0


def _challenge(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'Basic realm="cartback"'})


async def inbound_principal(request: Request) -> deps.Principal:
    """The API key as Bearer, or as the Basic password (or the Basic user when the password is empty)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _challenge("malformed Basic credentials") from exc
        secret = password or user
    elif scheme.lower() == "bearer" and value.strip():
        secret = value.strip()
    else:
        raise _challenge("missing API key: send it as a Bearer token or as the Basic auth password")
    try:
        who = await deps.services_of(request).keys.authenticate(secret)
    except errors.Unauthorized as exc:
        raise _challenge(exc.message) from exc
    return scopes.check(request, who)


router = APIRouter(prefix=PREFIX + "/inbound", tags=["inbound"])

Who = deps.Principal
Svc = deps.Services


async def _apply(svc: Svc, workspace_id: str, notices: list[suppressions.Notice]) -> dict[str, Any]:
    now = svc.clock.now()
    actions = (
        await svc.db.write(lambda tx: suppressions.apply_notices(tx, workspace_id, notices, now))
        if notices
        else []
    )
    return {
        "success": True,
        "processed": len(notices),
        "suppressed": actions.count("suppressed"),
        "results": [
            {"email": n.email, "kind": n.kind, "action": a} for n, a in zip(notices, actions, strict=True)
        ],
    }


def _address(value: Any) -> str:
    """The bare address of `"Name" <a@b>` or `a@b`; a 400 when there is none."""
    raw = str(value or "")
    _, address = parseaddr(raw)
    try:
        return models.check_email(address or raw)
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from exc


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidInput(f"malformed JSON body: {exc}") from exc


# -- generic -----------------------------------------------------------------------------------------


class GenericNotice(models.WireModel):
    type: Literal["bounce", "complaint", "unsubscribe"]
    email: models.Email
    bounce_type: Literal["hard", "soft"] = "hard"
    bounce_sub_type: str | None = Field(None, max_length=100)
    detail: str | None = Field(None, max_length=2000)
    id: str | None = Field(None, max_length=200)

    def notice(self) -> suppressions.Notice:
        kind = {"complaint": "complaint", "unsubscribe": "unsubscribe"}.get(self.type)
        if kind is None:
            kind = "hard_bounce" if self.bounce_type == "hard" else "soft_bounce"
        # Without an id, the content names the notice: the same soft bounce posted twice is one event.
        notice_id = self.id or hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:32]
        return suppressions.Notice(
            kind=kind,
            email=self.email,
            source="webhook:generic",
            bounce_type=("Permanent" if self.bounce_type == "hard" else "Transient")
            if self.type == "bounce"
            else None,
            bounce_sub_type=self.bounce_sub_type,
            diagnostic=self.detail,
            notice_id=notice_id,
        )


@router.post("/bounces", **scopes.requires(scopes.EVENTS_WRITE))
async def generic_notifications(
    body: GenericNotice | list[GenericNotice],
    who: Who = Depends(inbound_principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """`{"type": "bounce"|"complaint"|"unsubscribe", "email", "bounceType": "hard"|"soft", "detail",
    "id"}` or a list of them (at most 1000). Hard bounces, complaints and unsubscribes suppress; soft
    bounces are recorded as `email.delivery_delayed` only."""
    items = body if isinstance(body, list) else [body]
    if len(items) > MAX_NOTICES:
        raise errors.InvalidInput(f"at most {MAX_NOTICES} notifications per request")
    return await _apply(svc, who.workspace_id, [item.notice() for item in items])


# -- Amazon SES (through SNS, or the raw event) -----------------------------------------------------


async def _confirm_subscription(url: str) -> bool:
    """GET the SubscribeURL, only when it is https on an SNS host, with a short timeout and no
    redirects. False (logged) when that is not so or the request fails; the URL is in the log either way."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
    except ValueError:  # a host it cannot read, as an IPv6 bracket left open
        scheme, host = "", ""
    if scheme != "https" or not _SNS_HOST.match(host):
        log.warning("SNS subscription: not an SNS URL, not confirmed automatically: %s", url)
        return False
    try:
        async with httpx.AsyncClient(timeout=SUBSCRIBE_TIMEOUT, follow_redirects=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        log.warning("SNS subscription: confirming failed (%s); open this URL to confirm: %s", exc, url)
        return False
    if response.status_code != 200:
        log.warning(
            "SNS subscription: confirming answered %s; open to confirm: %s", response.status_code, url
        )
        return False
    log.info("SNS subscription confirmed: %s", url)
    return True


def ses_notices(message: dict[str, Any], notice_id: str | None) -> list[suppressions.Notice]:
    """Notices in one SES notification (`notificationType`) or event (`eventType`). A Permanent bounce is
    hard; Transient and Undetermined are soft. A complaint with feedback type `not-spam` is ignored."""
    kind = message.get("notificationType") or message.get("eventType")
    mail: dict[str, Any] = message["mail"] if isinstance(message.get("mail"), dict) else {}
    if kind == "Bounce":
        bounce = message.get("bounce") or {}
        bounce_type = bounce.get("bounceType")
        ident = notice_id or bounce.get("feedbackId") or mail.get("messageId")
        return [
            suppressions.Notice(
                kind="hard_bounce" if bounce_type == "Permanent" else "soft_bounce",
                email=_address(r.get("emailAddress")),
                source="webhook:ses",
                bounce_type=bounce_type,
                bounce_sub_type=bounce.get("bounceSubType"),
                diagnostic=r.get("diagnosticCode"),
                notice_id=ident,
            )
            for r in bounce.get("bouncedRecipients") or []
        ]
    if kind == "Complaint":
        complaint = message.get("complaint") or {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        return [
            suppressions.Notice(
                kind="complaint",
                email=_address(r.get("emailAddress")),
                source="webhook:ses",
                diagnostic=complaint.get("complaintFeedbackType"),
                notice_id=notice_id or complaint.get("feedbackId"),
            )
            for r in complaint.get("complainedRecipients") or []
        ]
    return []


@router.post("/ses", **scopes.requires(scopes.EVENTS_WRITE))
async def ses_notifications(
    request: Request, who: Who = Depends(inbound_principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """An SNS message (sent as text/plain): SubscriptionConfirmation is confirmed by fetching its
    SubscribeURL when that is an SNS host (and logged either way); Notification carries the SES JSON in
    `Message`. A raw SES event JSON (EventBridge, a relay) is accepted too. Delivery, Send, Open and other
    types are acknowledged and ignored. SNS signatures are not verified: the API key authenticates."""
    body = await _json(request)
    if not isinstance(body, dict):
        raise errors.InvalidInput("expected an SNS message or an SES event object")
    sns_type = body.get("Type")
    if sns_type in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        url = str(body.get("SubscribeURL") or "")
        log.warning("SNS %s for topic %s: SubscribeURL %s", sns_type, body.get("TopicArn"), url)
        confirmed = (
            await _confirm_subscription(url) if sns_type == "SubscriptionConfirmation" and url else False
        )
        return {"success": True, "type": sns_type, "subscribeUrl": url, "confirmed": confirmed}
    notice_id = None
    message: Any = body
    if sns_type == "Notification":
        notice_id = body.get("MessageId")
        raw = body.get("Message")
        try:
            message = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError as exc:
            raise errors.InvalidInput(f"SNS Message is not JSON: {exc}") from exc
    elif sns_type is not None:
        return {"success": True, "processed": 0, "ignored": sns_type}
    if not isinstance(message, dict):
        raise errors.InvalidInput("the SES notification is not a JSON object")
    notices = ses_notices(message, notice_id)
    result = await _apply(svc, who.workspace_id, notices)
    if not notices:
        result["ignored"] = message.get("notificationType") or message.get("eventType")
    return result


# -- Postmark ---------------------------------------------------------------------------------------

# Bounce types that mean the mailbox will not take mail (Postmark deactivates them too).
_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SUPPRESSION = {
    "HardBounce": "hard_bounce",
    "SpamComplaint": "complaint",
    "ManualSuppression": "unsubscribe",
}


def postmark_notice(record: dict[str, Any]) -> suppressions.Notice | None:
    """The notice in one Postmark webhook record, or None for a record that suppresses nothing."""
    record_type = record.get("RecordType")
    ident = str(record["ID"]) if record.get("ID") is not None else None
    if record_type == "Bounce":
        bounce_type = str(record.get("Type") or "")
        if bounce_type == "SpamComplaint":
            kind = "complaint"
        elif bounce_type == "Unsubscribe":
            kind = "unsubscribe"
        else:
            kind = "hard_bounce" if bounce_type in _POSTMARK_HARD else "soft_bounce"
        return suppressions.Notice(
            kind=kind,
            email=_address(record.get("Email")),
            source="webhook:postmark",
            bounce_type="Permanent" if kind == "hard_bounce" else "Transient",
            bounce_sub_type=bounce_type or None,
            diagnostic=record.get("Description") or record.get("Details"),
            notice_id=ident,
        )
    if record_type == "SpamComplaint":
        return suppressions.Notice(
            kind="complaint",
            email=_address(record.get("Email")),
            source="webhook:postmark",
            diagnostic=record.get("Description"),
            notice_id=ident,
        )
    if record_type == "SubscriptionChange" and record.get("SuppressSending"):
        kind = _POSTMARK_SUPPRESSION.get(str(record.get("SuppressionReason")), "unsubscribe")
        return suppressions.Notice(
            kind=kind,
            email=_address(record.get("Recipient")),
            source="webhook:postmark",
            bounce_type="Permanent" if kind == "hard_bounce" else None,
            diagnostic=f"Postmark suppression: {record.get('SuppressionReason')}",
        )
    return None


@router.post("/postmark", **scopes.requires(scopes.EVENTS_WRITE))
async def postmark_notifications(
    request: Request, who: Who = Depends(inbound_principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Postmark's bounce webhook (`RecordType: Bounce`; HardBounce, BadEmailAddress and
    ManuallyDeactivated suppress, other types are soft), its spam complaint webhook, and its
    suppression webhook (`SubscriptionChange` with `SuppressSending: true`; reactivations are not
    mirrored). Delivery, open and click records are acknowledged and ignored."""
    body = await _json(request)
    records = body if isinstance(body, list) else [body]
    if len(records) > MAX_NOTICES or not all(isinstance(r, dict) for r in records):
        raise errors.InvalidInput(f"expected a Postmark webhook object (or a list of at most {MAX_NOTICES})")
    notices = [n for n in (postmark_notice(r) for r in records) if n is not None]
    result = await _apply(svc, who.workspace_id, notices)
    if not notices:
        result["ignored"] = records[0].get("RecordType") if records else None
    return result
