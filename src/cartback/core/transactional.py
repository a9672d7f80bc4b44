"""Transactional email: saved templates, and sends that render a template (or inline content) for each
recipient, store one message per recipient and queue it for delivery.

Rules kept here:
* A transactional send reaches unsubscribed addresses but never bounced or complained ones; a marketing
  send respects every suppression. A suppressed recipient still gets a message row, with status
  `suppressed` and nothing queued, so the caller can see what happened to it.
* An Idempotency-Key names one logical send. The same key with the same request gives back the original
  messages; with another request it is a Conflict. The key sits on the first recipient's delivery row
  (unique per workspace, by constraint); recipient i > 0 carries `key + "\\n" + i`, which no header value
  can spell, so a concurrent duplicate loses the race at the constraint and then finds the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from liquid.exceptions import LiquidError

from cartback import errors, ids
from cartback.core import context, mail, suppressions
from cartback.core import subscribers as subscriber_core
from cartback.delivery import render, render_budget
from cartback.statuses import MessageStatus
from cartback.store import subscribers as subscriber_store
from cartback.store import transactional as store
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx
from cartback.store.transactional import Template as Template  # re-exported for api/

MAX_RECIPIENTS = 50
# Names every send's template context has without the caller passing them.
BUILTIN_VARIABLES = frozenset(
    {"subscriber", "email", "unsubscribe_url", "unsubscribeUrl", "workspace", "firstName", "lastName"}
)


# What sends need from the configuration: how to compose and queue mail.
Options = mail.Options


# -- templates --------------------------------------------------------------------------------------


def slugify(value: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return slug[:200]


def check_content(subject: str | None, preview_text: str | None, html: str | None, text: str | None) -> None:
    """Refuse content whose Liquid does not parse (naming the field, line and column) or exceeds the
    resource limits on a sample context (render.check)."""
    try:
        render.check("subject", subject)
        render.check("previewText", preview_text)
        render.check("html", html, html=True)
        render.check("text", text)
    except render.TemplateError as exc:
        raise errors.InvalidInput(str(exc)) from exc


# Static analysis only (nothing is rendered with it), in the same limited environment as every template.
_ANALYSIS = render.LimitedEnvironment()


def variables_used(*sources: str | None) -> list[str]:
    """The top-level variables the templates read, in first-use order (static analysis; a template that
    does not parse reads nothing)."""
    seen: dict[str, None] = {}
    for source in sources:
        if not source:
            continue
        try:
            names = _ANALYSIS.from_string(source).global_variables()
        except LiquidError:
            continue
        for name in names:
            seen.setdefault(str(name), None)
    return list(seen)


def template_variables(template: Template) -> list[str]:
    used = variables_used(template.subject, template.preview_text, template.html, template.text)
    return [n for n in used if n not in BUILTIN_VARIABLES]


def list_templates(
    tx: Tx, workspace_id: str, *, search: str | None = None, order: str = "desc"
) -> list[Template]:
    """By creation date (`order` "asc" or "desc"); `search` matches part of the name or slug."""
    return store.listing(tx, workspace_id, search=search, order=order)


def get_template(tx: Tx, workspace_id: str, id_or_slug: str) -> Template:
    template = store.find(tx, workspace_id, id_or_slug)
    if template is None:
        raise errors.NotFound(f"no transactional email {id_or_slug!r}")
    return template


def create_template(tx: Tx, workspace_id: str, values: dict[str, Any], now: datetime) -> Template:
    """`values`: name (required), slug (else derived from the name), subject, preview_text, html, text,
    from_email."""
    name = values["name"]
    slug = slugify(values.get("slug") or name)
    if not slug:
        raise errors.InvalidInput("slug must contain at least one letter or digit")
    check_content(values.get("subject"), values.get("preview_text"), values.get("html"), values.get("text"))
    if store.find(tx, workspace_id, slug) is not None:
        raise errors.Conflict(f"a transactional email with slug {slug!r} already exists")
    template = Template(
        id=ids.new_id("txt"),
        workspace_id=workspace_id,
        slug=slug,
        name=name,
        subject=values.get("subject") or "",
        preview_text=values.get("preview_text"),
        html=values.get("html"),
        text=values.get("text"),
        from_email=values.get("from_email"),
        created_at=now,
        updated_at=now,
    )
    store.insert(tx, template)
    return template


def update_template(
    tx: Tx, workspace_id: str, id_or_slug: str, changes: dict[str, Any], now: datetime
) -> Template:
    """Apply the fields given; null clears an optional field. The slug stays: sends name it."""
    template = get_template(tx, workspace_id, id_or_slug)
    allowed = ("name", "subject", "preview_text", "html", "text", "from_email")
    new = {k: v for k, v in changes.items() if k in allowed}
    if "name" in new and not new["name"]:
        raise errors.InvalidInput("name cannot be empty")
    if "subject" in new:
        new["subject"] = new["subject"] or ""
    updated = template.with_changes(**new)
    check_content(updated.subject, updated.preview_text, updated.html, updated.text)
    if updated != template:
        updated = updated.with_changes(updated_at=now)
        store.save(tx, updated)
    return updated


def delete_template(tx: Tx, workspace_id: str, id_or_slug: str) -> Template:
    template = get_template(tx, workspace_id, id_or_slug)
    store.delete(tx, workspace_id, template.id)
    return template


# -- sending ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    to: list[str]
    email_type: str = "transactional"
    slug: str | None = None
    subject: str | None = None
    html: str | None = None
    preview_text: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    sender: str | None = None
    subscriber_external_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    reply_to: str | None = None
    # Extra message headers, checked by the caller.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipient:
    email: str
    message_id: str | None
    # queued | suppressed (not sent: the reason says why) | preview
    status: str
    reason: str | None = None
    subscriber_id: str | None = None
    rendered: render.Rendered | None = None


@dataclass(frozen=True)
class Diagnostics:
    missing: list[str]
    unused: list[str]


@dataclass(frozen=True)
class SendResult:
    recipients: list[Recipient]
    replay: bool = False
    template: Template | None = None
    diagnostics: Diagnostics | None = None


def recipient_key(key: str, index: int) -> str:
    return key if index == 0 else f"{key}\n{index}"


def unique_recipients(to: list[str]) -> list[str]:
    """Dedupe case-insensitively, first spelling wins, order kept."""
    seen: dict[str, str] = {}
    for email in to:
        seen.setdefault(email.strip().lower(), email.strip())
    return list(seen.values())


def _replay(tx: Tx, workspace_id: str, req: SendRequest) -> SendResult | None:
    if req.idempotency_key is None or not req.to:
        return None  # no recipient: the send itself refuses it
    keys = [recipient_key(req.idempotency_key, i) for i in range(len(req.to))]
    found = store.find_keyed(tx, workspace_id, keys)
    first = found.get(keys[0])
    if first is None:
        return None
    if first.request_hash != req.request_hash:
        raise errors.Conflict(
            "this Idempotency-Key was already used with a different request; use a new key for a new send"
        )
    recipients = []
    for email, key in zip(req.to, keys, strict=True):
        sent = found.get(key)
        if sent is not None:
            recipients.append(Recipient(email, sent.message_id, sent.status))
    return SendResult(recipients, replay=True)


def _content(tx: Tx, workspace_id: str, req: SendRequest) -> tuple[dict[str, Any], Template | None]:
    if req.slug:
        template = store.find(tx, workspace_id, req.slug)
        if template is None:
            raise errors.NotFound(f"no transactional email with slug {req.slug!r}")
        content = {
            "subject": req.subject or template.subject,
            # Sequenzy uses `preview` with direct content only.
            "previewText": template.preview_text,
            "html": template.html,
            "text": template.text,
        }
        if not content["subject"]:
            raise errors.InvalidInput(f"transactional email {template.slug!r} has no subject")
        return content, template
    if not req.subject or not req.html:
        raise errors.InvalidInput(
            "send a template `slug` (or `templateId`), or `subject` with `body` (or `html`)"
        )
    check_content(req.subject, req.preview_text, req.html, None)
    return {"subject": req.subject, "previewText": req.preview_text, "html": req.html, "text": None}, None


def diagnose(content: dict[str, Any], variables: dict[str, Any]) -> Diagnostics | None:
    used = variables_used(
        content.get("subject"), content.get("previewText"), content.get("html"), content.get("text")
    )
    missing = [n for n in used if n not in variables and n not in BUILTIN_VARIABLES]
    unused = [n for n in variables if n not in used]
    return Diagnostics(missing, unused) if missing or unused else None


def send(
    tx: Tx,
    workspace_id: str,
    req: SendRequest,
    options: Options,
    now: datetime,
    *,
    preview: bool = False,
    drafts: mail.Drafts | None = None,
) -> SendResult:
    """Render and queue one message per recipient (or, with `preview`, only render). Raises NotFound for
    an unknown slug, InvalidInput for content that does not parse, Conflict for a reused key. `drafts`:
    see `compose_ahead`."""
    if not req.to:
        raise errors.InvalidInput("`to` needs at least one address")
    if len(req.to) > MAX_RECIPIENTS:
        raise errors.InvalidInput(f"`to` takes at most {MAX_RECIPIENTS} addresses")
    if req.email_type == "marketing" and len(req.to) != 1:
        raise errors.InvalidInput("a marketing send takes exactly one `to` address")
    if not preview:
        replayed = _replay(tx, workspace_id, req)
        if replayed is not None:
            return replayed
    content, template = _content(tx, workspace_id, req)
    workspace = workspace_store.get_workspace(tx, workspace_id)
    # The send's own from, else its template's; mail.sender falls back to the workspace's, then the default.
    explicit = req.sender or (template.from_email if template else None)
    recipients = []
    for index, email in enumerate(req.to):
        sub = _find_or_link(tx, workspace_id, req, email, now, create=not preview, drafts=drafts)
        blocked = suppressions.blocking_reason(tx, workspace_id, email, req.email_type)
        try:
            ctx = _context(sub, email, req.variables)
            draft = mail.compose(
                options, workspace, content, ctx, to_email=email, explicit_from=explicit, drafts=drafts
            )
        except (LiquidError, render.TemplateError) as exc:
            raise errors.InvalidInput(f"the template did not render: {exc}") from exc
        if preview:
            recipients.append(
                Recipient(email, None, "preview", blocked, sub.id if sub else None, draft.rendered)
            )
            continue
        message = draft.message(
            workspace_id=workspace_id,
            kind=req.email_type,
            now=now,
            subscriber_id=sub.id if sub else None,
            status=MessageStatus.SUPPRESSED if blocked else MessageStatus.QUEUED,
            error=f"suppressed: {blocked}" if blocked else None,
            reply_to=req.reply_to,
            headers=req.headers or None,
        )
        key = recipient_key(req.idempotency_key, index) if req.idempotency_key else None
        # A suppressed message gets no attempt, but keeps the send's idempotency key: a replay finds it.
        mail.queue(
            tx,
            options,
            message,
            now,
            idempotency_key=key,
            request_hash=req.request_hash,
            hold=bool(blocked),
        )
        recipients.append(Recipient(email, message.id, message.status, blocked, message.subscriber_id))
    return SendResult(recipients, template=template, diagnostics=diagnose(content, req.variables))


def compose_ahead(
    tx: Tx, workspace_id: str, req: SendRequest, options: Options, now: datetime
) -> mail.Drafts:
    """The send's emails composed in a read transaction, for `send(..., drafts=)` in the write that
    follows: its render then holds no writer. Whatever this pass refuses is left for the send to
    answer (a replay, say, answers without rendering), except a spent render budget: the emails not
    composed yet would otherwise be rendered in the write, charged to nobody, holding the writer that
    every workspace's commits wait for."""
    drafts = mail.Drafts()
    try:
        if _replay(tx, workspace_id, req) is not None:
            return drafts
        send(tx, workspace_id, req, options, now, preview=True, drafts=drafts)
    except render_budget.Spent:
        raise
    except errors.CartbackError:
        pass
    return drafts


def _find_or_link(
    tx: Tx,
    workspace_id: str,
    req: SendRequest,
    email: str,
    now: datetime,
    *,
    create: bool,
    drafts: mail.Drafts | None = None,
) -> subscriber_store.Subscriber | None:
    if req.subscriber_external_id and len(req.to) == 1:
        by_id = subscriber_store.find_by_external_id(tx, workspace_id, req.subscriber_external_id)
        if by_id is not None:
            return by_id
    sub = subscriber_store.find_by_email(tx, workspace_id, email)
    if sub is not None or req.email_type != "marketing":
        return sub
    # Marketing sends create or link a minimal subscriber, so an unsubscribe has someone to stop. The
    # email names them (`subscriber.id`...): the composing pass ahead of the write (compose_ahead) renders
    # it for the subscriber the write will create, with the id the write then gives them, so that a send
    # to a new address renders outside the write too.
    key = f"subscriber:{workspace_id}:{email.lower()}"
    identity = subscriber_core.Identity(email=email, external_id=req.subscriber_external_id)
    if create:
        planned = drafts.planned_ids.get(key) if drafts is not None else None
        sub, _ = subscriber_core.find_or_create(tx, workspace_id, identity, now, new_id=planned)
    elif drafts is not None:
        planned = drafts.planned_ids.setdefault(key, ids.new_id("sub"))
        sub = subscriber_store.new(
            workspace_id, now, id=planned, email=email, external_id=req.subscriber_external_id
        )
    return sub


def _context(
    sub: subscriber_store.Subscriber | None, email: str, variables: dict[str, Any]
) -> dict[str, Any]:
    """Builtins first, the caller's variables over them; stored names fill firstName/lastName when the
    caller did not pass them, as Sequenzy does."""
    ctx: dict[str, Any] = {"email": email, "subscriber": {"email": email}}
    if sub is not None:
        data = context.subscriber_data(sub)
        ctx["subscriber"] = data
        ctx["firstName"] = data.get("firstName")
        ctx["lastName"] = data.get("lastName")
    ctx.update(variables)
    return ctx
