"""The Sequenzy transactional resource: `POST /transactional/send` and template CRUD.

Send, as the SDK calls it: `to` (one address or a list; each recipient gets its own message), a saved
template by `slug` (or its alias `templateId`) or inline `subject` + `body` (alias `html`), `variables`,
`from` or `fromEmail`/`fromName`, `emailType` transactional (default) or marketing, and the
`Idempotency-Key` header. cartback specifics (docs/suppressions.md has the why):

* A suppressed recipient is not an error: the send answers 200, the recipient's message is stored with
  status `suppressed` and nothing is queued, and `diagnostics` (status `warning`) plus `suppressed[]` say
  who and why. Sequenzy does the same (its worker records such sends as `suppressed`).
* `preview`: a string is the preview text (the SDK's meaning); JSON `true` renders without storing or
  sending anything and returns the rendered messages.
* `replyTo` (with `replyToName`) becomes the message's Reply-To. Custom `headers` are added to the
  message, except those the message builder owns or that are malformed: `ignoredHeaders` lists each of
  those with its reason, as Sequenzy does. A header value with a line break or another control character
  is a 400, like one in `from`, `replyTo`, their names or `subject` (headers.py).
* `cc`, `bcc`, `attachments`, `senderProfileId` and `replyProfileId` are refused with a 400 rather than
  dropped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query
from pydantic import Field

from cartback import errors
from cartback import headers as mail_headers
from cartback.api import deps
from cartback.api.sequenzy import models, principal
from cartback.core import transactional

router = APIRouter(tags=["transactional"])

Who = deps.Principal
Svc = deps.Services

# -- send -------------------------------------------------------------------------------------------


class SendTransactionalRequest(models.WireModel):
    # The bound is on the list: on the union it bounded a single address to 50 characters too.
    to: models.Email | Annotated[list[models.Email], Field(max_length=transactional.MAX_RECIPIENTS)]
    slug: str | None = Field(None, max_length=200)
    template_id: str | None = Field(None, max_length=200)
    subject: models.HeaderText | None = Field(None, max_length=2000)
    body: str | None = Field(None, max_length=2_000_000)
    html: str | None = Field(None, max_length=2_000_000)
    preview: str | bool | None = None
    variables: dict[str, Any] | None = None
    from_: str | None = Field(None, alias="from", max_length=400)
    from_email: models.Email | None = None
    from_name: str | None = Field(None, max_length=255)
    sender_profile_id: str | None = None
    reply_to: str | None = Field(None, max_length=400)
    reply_to_name: str | None = Field(None, max_length=255)
    reply_profile_id: str | None = None
    cc: str | list[str] | None = None
    bcc: str | list[str] | None = None
    headers: dict[str, str] | None = None
    attachments: list[dict[str, Any]] | None = None
    email_type: Literal["transactional", "marketing"] | None = None
    subscriber_external_id: str | None = Field(None, max_length=255)
    track_as: str | None = Field(None, max_length=255)
    tracking_settings: dict[str, Any] | None = None


def request_hash(body: SendTransactionalRequest) -> str:
    """What 'the same request' means for an Idempotency-Key: the JSON fields the caller sent."""
    sent = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return hashlib.sha256(orjson.dumps(sent, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _sender(body: SendTransactionalRequest) -> str | None:
    if body.from_ and (body.from_email or body.from_name):
        raise errors.InvalidInput("`from` cannot be combined with `fromEmail` or `fromName`")
    if body.from_name and not body.from_email:
        raise errors.InvalidInput("`fromName` needs `fromEmail`")
    if body.from_:
        return _header("from", mail_headers.mailbox, body.from_)
    if body.from_email:
        if body.from_name:
            _header("fromName", mail_headers.check_name, body.from_name)
        return _header("fromEmail", lambda v: mail_headers.named(body.from_name, v), body.from_email)
    return None


def _header(field: str, check: Callable[[str], str], value: str) -> str:
    """`check(value)`, a 400 naming the field when the value cannot be that mail header."""
    try:
        return check(value)
    except ValueError as exc:
        raise errors.InvalidInput(f"`{field}`: {exc}") from None


def _reply_to(body: SendTransactionalRequest) -> str | None:
    if body.reply_to_name and not body.reply_to:
        raise errors.InvalidInput("`replyToName` needs `replyTo`")
    if not body.reply_to:
        return None
    if body.reply_to_name:
        _header("replyToName", mail_headers.check_name, body.reply_to_name)
    return _header("replyTo", lambda v: mail_headers.named(body.reply_to_name, v), body.reply_to)


def _refuse_unsupported(body: SendTransactionalRequest) -> None:
    for name, value in (("cc", body.cc), ("bcc", body.bcc), ("attachments", body.attachments)):
        if value:
            raise errors.InvalidInput(f"`{name}` is not supported by cartback yet; send without it")
    if body.sender_profile_id or body.reply_profile_id:
        raise errors.InvalidInput("cartback has no sender or reply profiles; use `from` and `replyTo`")
    if body.track_as is not None and (body.slug or body.template_id):
        raise errors.InvalidInput("`trackAs` cannot be combined with `slug`/`templateId`")


# Headers the message builder owns (Sequenzy's list); never taken from the caller.
_RESERVED = {
    "from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "mime-version",
    "return-path", "received", "received-spf", "delivered-to", "dkim-signature", "authentication-results",
}  # fmt: skip
_RESERVED_PREFIXES = ("content-", "x-sequenzy-", "x-ses-", "arc-", "resent-")
_MARKETING_MANAGED = {"list-unsubscribe", "list-unsubscribe-post", "precedence", "feedback-id"}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")
MAX_HEADERS = 50


def sort_headers(headers: dict[str, str], email_type: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The caller's headers split into those added to the message and those ignored, each of the latter
    with its reason."""
    applied: dict[str, str] = {}
    out = []
    seen: set[str] = set()
    for count, (name, value) in enumerate(headers.items()):
        low = name.lower()
        # A line break would add a header of the caller's choosing: refused outright, not ignored.
        _header(f"headers.{name}", mail_headers.check_text, value)
        if count >= MAX_HEADERS:
            reason = "too_many_headers"
        elif not _HEADER_NAME.match(name):
            reason = "invalid_name"
        elif not _HEADER_VALUE.match(value) or len(name) + 2 + len(value) > 998:
            reason = "invalid_value"
        elif low in seen:
            reason = "duplicate"
        elif low in _RESERVED or low.startswith(_RESERVED_PREFIXES):
            reason = "reserved"
        elif email_type == "marketing" and low in _MARKETING_MANAGED:
            reason = "managed_in_marketing_mode"
        elif low == "list-unsubscribe-post" and "list-unsubscribe" not in {h.lower() for h in headers}:
            reason = "requires_list_unsubscribe"
        else:
            reason = None
        seen.add(low)
        if reason is None:
            applied[name] = value
        else:
            out.append({"name": name, "reason": reason})
    return applied, out


def _one(a: str | None, b: str | None, names: str) -> str | None:
    if a is not None and b is not None and a != b:
        raise errors.InvalidInput(f"{names} must match when both are sent")
    return a if a is not None else b


def _diagnostics(result: transactional.SendResult) -> dict[str, Any] | None:
    diag = result.diagnostics
    suppressed = [r for r in result.recipients if r.reason and r.status in ("suppressed", "preview")]
    if diag is None and not suppressed:
        return None
    parts = []
    missing = diag.missing if diag else []
    unused = diag.unused if diag else []
    if missing:
        parts.append(f"missing variables (rendered empty): {', '.join(missing)}")
    if unused:
        parts.append(f"unused variables: {', '.join(unused)}")
    if suppressed:
        parts.append(
            "not sent to suppressed recipients: " + ", ".join(f"{r.email} ({r.reason})" for r in suppressed)
        )
    return {
        "status": "warning",
        "message": "; ".join(parts),
        "missingRequiredVariables": [
            {"name": n, "lookupName": n, "message": f"{n} is not in variables and renders empty"}
            for n in missing
        ],
        "unusedVariables": [{"name": n, "message": f"{n} is not used by the template"} for n in unused],
    }


def _rendered_json(recipient: transactional.Recipient) -> dict[str, Any]:
    rendered = recipient.rendered
    return {
        "to": recipient.email,
        "suppressed": recipient.reason,
        "subject": rendered.subject if rendered else None,
        "previewText": rendered.preheader if rendered else None,
        "html": rendered.html if rendered else None,
        "text": rendered.text if rendered else None,
    }


@router.post("/transactional/send")
async def send_transactional(
    body: SendTransactionalRequest,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", max_length=255),
) -> dict[str, Any]:
    """Queue one message per recipient (see the module docstring for suppressed recipients, `preview`
    and what is not supported). The same Idempotency-Key and request returns the original `emailSendId`
    with `idempotentReplay: true`; the same key with another request is a 409."""
    _refuse_unsupported(body)
    slug = _one(body.slug, body.template_id, "`slug` and `templateId`")
    html = _one(body.body, body.html, "`body` and `html`")
    if slug and html is not None:
        raise errors.InvalidInput("send a template `slug` or direct content (`body`/`html`), not both")
    email_type = body.email_type or "transactional"
    applied, ignored = sort_headers(body.headers or {}, email_type)
    to_list = body.to if isinstance(body.to, list) else [body.to]
    key = idempotency_key.strip() if idempotency_key and idempotency_key.strip() else None
    req = transactional.SendRequest(
        to=transactional.unique_recipients(to_list),
        email_type=email_type,
        slug=slug,
        subject=body.subject,
        html=html,
        preview_text=body.preview if isinstance(body.preview, str) else None,
        variables=body.variables or {},
        sender=_sender(body),
        subscriber_external_id=body.subscriber_external_id,
        idempotency_key=key,
        request_hash=request_hash(body) if key else None,
        reply_to=_reply_to(body),
        headers=applied,
    )
    options = svc.mail
    preview = body.preview is True
    now = svc.clock.now()
    if preview:
        result = await svc.db.read(
            lambda tx: transactional.send(tx, who.workspace_id, req, options, now, preview=True)
        )
    else:
        # Rendered before the write: the writer commits every workspace's requests.
        drafts = await svc.db.read(
            lambda tx: transactional.compose_ahead(tx, who.workspace_id, req, options, now)
        )
        result = await svc.db.write(
            lambda tx: transactional.send(tx, who.workspace_id, req, options, now, drafts=drafts)
        )
    first = result.recipients[0] if result.recipients else None
    response: dict[str, Any] = {
        "success": True,
        "emailSendId": first.message_id if first else None,
        "jobId": first.message_id if first else None,
        "to": body.to if isinstance(body.to, str) else req.to,
        "cc": [],
        "bcc": [],
        "emailType": email_type,
        "idempotentReplay": result.replay,
        "recipients": [
            {"email": r.email, "emailSendId": r.message_id, "status": r.status, "reason": r.reason}
            for r in result.recipients
        ],
        "suppressed": [{"email": r.email, "reason": r.reason} for r in result.recipients if r.reason],
    }
    if preview:
        response["preview"] = True
        response["rendered"] = [_rendered_json(r) for r in result.recipients]
    diagnostics = _diagnostics(result)
    if diagnostics is not None:
        response["diagnostics"] = diagnostics
    if body.headers:
        response["ignoredHeaders"] = ignored
    warnings = []
    if body.track_as is not None:
        warnings.append("trackAs is accepted and ignored: cartback keeps no per-email stats yet")
    if warnings:
        response["warnings"] = warnings
    if result.template is not None:
        tpl = result.template
        response["transactional"] = {"id": tpl.id, "name": tpl.name, "slug": tpl.slug}
    return response


# -- templates --------------------------------------------------------------------------------------


def template_json(template: transactional.Template) -> dict[str, Any]:
    """A `TransactionalEmailDetails` object (no `blocks`: cartback templates are Liquid HTML)."""
    return {
        "id": template.id,
        "slug": template.slug,
        "name": template.name,
        "subject": template.subject,
        "previewText": template.preview_text,
        "html": template.html,
        "text": template.text,
        "fromEmail": template.from_email,
        "enabled": True,
        "labels": [],
        "variables": transactional.template_variables(template),
        "createdAt": models.iso(template.created_at),
        "updatedAt": models.iso(template.updated_at),
    }


class _TemplateFields(models.WireModel):
    subject: models.HeaderText | None = Field(None, max_length=2000)
    preview_text: str | None = Field(None, max_length=2000)
    html: str | None = Field(None, max_length=2_000_000)
    text: str | None = Field(None, max_length=2_000_000)
    from_email: models.Mailbox | None = Field(None, max_length=400)
    enabled: bool | None = None
    labels: list[str] | None = None
    blocks: list[dict[str, Any]] | None = None

    def values(self) -> dict[str, Any]:
        """The fields sent, by our names."""
        keep = ("name", "slug", "subject", "preview_text", "html", "text", "from_email")
        return {k: getattr(self, k) for k in self.model_fields_set if k in keep}

    def warnings(self) -> list[str]:
        if self.blocks:
            raise errors.InvalidInput("`blocks` are not supported: send the template as `html` (Liquid)")
        out = []
        if self.enabled is False:
            out.append("enabled: cartback templates are always enabled; delete one to stop its use")
        if self.labels:
            out.append("labels are not stored")
        return out


class CreateTemplateRequest(_TemplateFields):
    name: models.NonEmpty
    slug: str | None = Field(None, max_length=200)
    prompt: str | None = None
    style: str | None = None
    tone: str | None = None


class UpdateTemplateRequest(_TemplateFields):
    name: models.NonEmpty | None = None


@router.get("/transactional")
async def list_templates(
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    search: str | None = Query(None, max_length=200),
    status: Literal["all", "active", "disabled"] = "all",
    order: Literal["asc", "desc"] = "desc",
    sort: str | None = Query(None, max_length=20),
) -> dict[str, Any]:
    """Newest first (`sort` is accepted; only date order exists). Every template is active."""
    if status == "disabled":
        return {"success": True, "transactional": []}
    items = await svc.db.read(
        lambda tx: transactional.list_templates(tx, who.workspace_id, search=search, order=order)
    )
    return {"success": True, "transactional": [template_json(t) for t in items]}


@router.post("/transactional")
async def create_template(
    body: CreateTemplateRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Save a template. Its Liquid is parsed now: an error is a 400 naming the field, line and column.
    A slug already used is a 409."""
    warnings = body.warnings()
    if body.prompt or body.style or body.tone:
        warnings.append("prompt, style and tone are ignored: cartback does not generate emails")
    values = body.values()
    now = svc.clock.now()
    template = await svc.db.write(lambda tx: transactional.create_template(tx, who.workspace_id, values, now))
    return {"success": True, "transactional": template_json(template), "warnings": warnings}


@router.get("/transactional/{id_or_slug}")
async def get_template(
    id_or_slug: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    template = await svc.db.read(lambda tx: transactional.get_template(tx, who.workspace_id, id_or_slug))
    return {"success": True, "transactional": template_json(template)}


@router.patch("/transactional/{id_or_slug}")
async def update_template(
    id_or_slug: str,
    body: UpdateTemplateRequest,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """Change the fields sent; a Liquid error is a 400 naming the line. The slug cannot change."""
    warnings = body.warnings()
    values = body.values()
    now = svc.clock.now()
    template = await svc.db.write(
        lambda tx: transactional.update_template(tx, who.workspace_id, id_or_slug, values, now)
    )
    return {"success": True, "transactional": template_json(template), "warnings": warnings}


@router.delete("/transactional/{id_or_slug}")
async def delete_template(
    id_or_slug: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Messages already sent from it stay."""
    template = await svc.db.write(lambda tx: transactional.delete_template(tx, who.workspace_id, id_or_slug))
    return {
        "success": True,
        "message": f"transactional email {template.slug!r} deleted",
        "deleted": {
            "id": template.id,
            "name": template.name,
            "slug": template.slug,
            "emailId": None,
            "emailDeleted": True,
        },
    }
