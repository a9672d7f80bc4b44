"""Sequences: the list with status and per-step figures, and the form-based editor.

Saving builds the Sequenzy request body from the form (dashboard/editor.py) and passes it to
core/sequences.create or update, exactly as the API routes do; a definition or template the API would
refuse is refused here with the same message, shown beside the field (with the template's line), and
nothing is saved. The editor's buttons that add or remove rows re-render the form without saving, so it
works without JavaScript; static/editor.js only refreshes the email preview while typing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cartback import errors
from cartback.api import deps
from cartback.core import analytics, context, events, shops, steps
from cartback.core import sequences as core_sequences
from cartback.dashboard import editor, messages, web
from cartback.delivery import render
from cartback.store import enrollments as enrollment_store
from cartback.store import reports, subscribers
from cartback.store import sequences as sequence_store
from cartback.store.db import Tx
from cartback.store.sequences import Sequence

router = APIRouter()
NAV = ("/app/sequences", "Sequences")

_LINE = re.compile(r"at line (\d+), column (\d+)")
_STEP = re.compile(r"steps\[(\d+)\]")
_FIELDS = (("subject", "subject", False), ("preview_text", "previewText", False), ("html", "html", True),
           ("text", "text", False))  # fmt: skip


def effective_status(seq: Sequence) -> str:
    if seq.status == "active":
        return "paused for new enrollments" if seq.enrollment_paused else "live"
    return seq.status


@dataclass(frozen=True)
class Row:
    seq: Sequence
    status: str
    enrollments: dict[str, int]
    steps: list[tuple[str, analytics.Tally | None]]


@router.get("/sequences")
async def listing(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    now = web.now(request)

    def read(tx: Tx) -> list[Row]:
        found, _ = sequence_store.listing(tx, viewer.workspace_id, limit=200)
        ids = [s.id for s in found]
        mail = analytics.steps_all_time(tx, viewer.workspace_id, now)
        counts = reports.enrollment_counts(tx, viewer.workspace_id, ids)
        return [
            Row(
                s,
                effective_status(s),
                counts.get(s.id, {}),
                [
                    (steps.describe(node), mail.get((s.id, node["id"])))
                    for node in s.definition.get("nodes") or []
                    if node.get("type") == "email"
                ],
            )
            for s in found
        ]

    rows = await deps.services_of(request).db.read(read)
    return web.render(request, "sequences.html", {"rows": rows})


@dataclass
class Problem:
    """A refused save: the message, and where it points (a step and field, a template line)."""

    message: str
    step: int | None = None
    field: str | None = None
    line: int | None = None
    column: int | None = None
    excerpt: str | None = None


def locate(form: editor.Form, message: str) -> Problem:
    """Point a refusal at its step and field. Template errors are found again per field with the same
    check the save ran (render.check), which names the line and column."""
    for index, step in enumerate(form.steps):
        for attribute, wire, html in _FIELDS:
            source = getattr(step, attribute)
            try:
                render.check(f"Step {index + 1} {wire}", source, html=html)
            except render.TemplateError as exc:
                problem = Problem(str(exc), index, attribute)
                found = _LINE.search(str(exc))
                if found:
                    problem.line, problem.column = int(found.group(1)), int(found.group(2))
                    lines = source.splitlines()
                    if 0 < problem.line <= len(lines):
                        problem.excerpt = lines[problem.line - 1]
                return problem
    where = _STEP.search(message)
    return Problem(message, int(where.group(1)) if where else None)


async def _form_values(request: Request) -> tuple[FormData, editor.Form, str]:
    data = await request.form()
    lists = {key: [v for v in data.getlist(key) if isinstance(v, str)] for key in data}
    values = {key: value for key, value in data.items() if isinstance(value, str)}
    return data, editor.from_submission(values, lists), str(values.get("action") or "save")


def _edit(form: editor.Form, action: str) -> bool:
    """Apply an add/remove button to the form; True if it was one (and nothing is to be saved)."""
    if action == "add_step":
        form.steps.append(editor.Step(delay_hours="1"))
    elif action.startswith("template_step:") and action.split(":", 1)[1] in editor.SHIPPED_STEP_TEMPLATES:
        form.steps.append(editor.shipped_step(action.split(":", 1)[1]))
    elif action == "add_filter":
        form.filters.append(editor.Filter())
    elif action.startswith("remove_step:"):
        index = _index(action)
        if index is not None and index < len(form.steps):
            del form.steps[index]
    elif action.startswith("remove_filter:"):
        index = _index(action)
        if index is not None and index < len(form.filters):
            del form.filters[index]
    else:
        return False
    return True


def _index(action: str) -> int | None:
    tail = action.split(":", 1)[1]
    return int(tail) if tail.isdigit() else None


def _editor_page(
    request: Request,
    form: editor.Form,
    *,
    seq: Sequence | None,
    problem: Problem | None = None,
    figures: dict[str, Any] | None = None,
    saved: bool = False,
    save_warnings: list[str] | None = None,
) -> Response:
    return web.render(
        request,
        "sequence.html",
        {
            "form": form,
            "seq": seq,
            "status": effective_status(seq) if seq else "new",
            "problem": problem,
            "figures": figures,
            "saved": saved,
            # After a save: what the API's `warnings` would say (core/sequences.save_warnings), e.g. an
            # event name never received in this workspace.
            "save_warnings": save_warnings or [],
            "triggers": editor.TRIGGERS,
            "modes": editor.MODES,
            "stops": editor.STOPS,
            "operators": editor.OPERATORS,
            "days": editor.DAYS,
            "templates": editor.SHIPPED_STEP_TEMPLATES,
            "known_events": (events.CHECKOUT_STARTED, events.ORDER_PLACED),
        },
        status_code=400 if problem else 200,
    )


def _preview_context(tx: Tx, workspace_id: str, form: editor.Form) -> tuple[dict[str, Any], str]:
    """What the preview renders against: the newest event of the trigger in this workspace and its
    person, else a sample checkout. Returns the template context and a line saying which it is."""
    # Sent mail always has an unsubscribe link; the preview shows one too (each message signs its own).
    identity = {
        **shops.template_identity(tx, workspace_id),
        "unsubscribe_url": render.SAMPLE_CONTEXT["unsubscribe_url"],
        "unsubscribeUrl": render.SAMPLE_CONTEXT["unsubscribe_url"],
    }
    trigger = form.event_name.strip() if form.trigger == "event_received" else ""
    event = reports.latest_event(tx, workspace_id, events.canonical_name(trigger)) if trigger else None
    if event is not None:
        sub = subscribers.find_by_id(tx, workspace_id, event.subscriber_id) if event.subscriber_id else None
        data = context.event_data(event)
        return (
            {
                "subscriber": context.subscriber_data(subscribers.with_tags(tx, sub)) if sub else {},
                "event": data,
                "checkout": {},
                **identity,
                "sequence": {"name": form.name},
            },
            f"Rendered against the newest {event.name} event ({event.id}"
            + (f", {sub.email}" if sub and sub.email else "")
            + ").",
        )
    return (
        {
            "subscriber": render.SAMPLE_SUBSCRIBER,
            "event": render.SAMPLE_EVENT,
            "checkout": {},
            **identity,
            "sequence": {"name": form.name},
        },
        "Rendered against a sample checkout (no matching event in this workspace yet).",
    )


@router.post("/sequences/preview")
async def preview(
    request: Request,
    step: int = Query(0, ge=0, le=core_sequences.MAX_STEPS),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    """One email step rendered as it would be sent, shown in the editor's sandboxed preview frame."""
    _, form, _ = await _form_values(request)
    if step >= len(form.steps):
        raise errors.NotFound("No such step in this form.")
    content = editor._step_wire(form.steps[step])
    ctx, source = await deps.services_of(request).db.read(
        lambda tx: _preview_context(tx, viewer.workspace_id, form)
    )

    def checked_render() -> render.Rendered:
        for attribute, wire, html in _FIELDS:
            render.check(f"Step {step + 1} {wire}", getattr(form.steps[step], attribute), html=html)
        return render.render_email(content, ctx)

    try:
        # In a worker thread: rendering is bounded (docs/templates.md, "Limits") but still CPU, and the
        # event loop serves every workspace.
        rendered = await anyio.to_thread.run_sync(checked_render)
    except render.TemplateError as exc:
        return _preview_page("_preview_error.html", message=str(exc))
    except Exception as exc:
        # A template that parses can still fail on this data (a filter given the wrong type, ...): that
        # is the preview's answer, not a server error.
        return _preview_page("_preview_error.html", message=f"This template cannot be rendered: {exc}")
    header = web.templates.env.get_template("_preview.html").render(rendered=rendered, source=source)
    document = (
        rendered.html or "<pre>" + (rendered.text or "").replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
    )
    found = re.search(r"<body[^>]*>", document, re.IGNORECASE)
    body = document[: found.end()] + header + document[found.end() :] if found else header + document
    return HTMLResponse(body, headers=messages.PREVIEW_HEADERS)


def _preview_page(template: str, **values: Any) -> Response:
    body = web.templates.env.get_template(template).render(**values)
    return HTMLResponse(body, headers=messages.PREVIEW_HEADERS)


@router.get("/sequences/new")
async def new(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = editor.Form(name="Abandoned checkout", steps=[editor.shipped_step("abandoned_cart")])
    return _editor_page(request, form, seq=None)


@router.post("/sequences/new")
async def create(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    _, form, action = await _form_values(request)
    if _edit(form, action):
        return _editor_page(request, form, seq=None)
    services = deps.services_of(request)
    body, now = form.to_body(), services.clock.now()
    try:
        seq = await services.db.write(lambda tx: core_sequences.create(tx, viewer.workspace_id, body, now))
    except errors.InvalidInput as exc:
        return _editor_page(
            request, form, seq=None, problem=await anyio.to_thread.run_sync(locate, form, exc.message)
        )
    return RedirectResponse(f"{web.PREFIX}/sequences/{seq.id}?saved=1", status_code=303)


def _figures(tx: Tx, workspace_id: str, seq: Sequence, now: datetime) -> dict[str, Any]:
    """All-time figures of each step, from the read model the API's stats give (core/analytics)."""
    mail = analytics.steps_all_time(tx, workspace_id, now, sequence_id=seq.id)
    history = enrollment_store.history_counts(tx, workspace_id, seq.id)
    numbers = {node_id: number for number, node_id, _ in analytics.step_order(seq.definition)}
    return {
        "enrollments": reports.enrollment_counts(tx, workspace_id, [seq.id]).get(seq.id, {}),
        "steps": [
            {
                "label": (f"Step {numbers[node['id']]}. " if node["id"] in numbers else "")
                + steps.describe(node),
                "mail": mail.get((seq.id, node["id"])),
                "skipped": history.get((node["id"], "skipped"), 0),
                "type": node.get("type"),
            }
            for node in seq.definition.get("nodes") or []
        ],
    }


async def _load(request: Request, viewer: web.Viewer, sequence_id: str) -> tuple[Sequence, dict[str, Any]]:
    sequence_id = web.object_id(sequence_id, "sequence")
    now = web.now(request)

    def read(tx: Tx) -> tuple[Sequence, dict[str, Any]]:
        seq = sequence_store.get(tx, viewer.workspace_id, sequence_id)
        if seq is None:
            raise errors.NotFound(f"No sequence {sequence_id!r} in this workspace.")
        return seq, _figures(tx, viewer.workspace_id, seq, now)

    return await deps.services_of(request).db.read(read)


@router.get("/sequences/{sequence_id}")
async def detail(
    request: Request, sequence_id: str, saved: int = 0, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    seq, figures = await _load(request, viewer, sequence_id)
    form = editor.from_definition(seq.name, seq.description, seq.definition)
    notes = (
        await deps.services_of(request).db.read(
            lambda tx: core_sequences.save_warnings(tx, viewer.workspace_id, seq)
        )
        if saved
        else []
    )
    return _editor_page(request, form, seq=seq, figures=figures, saved=bool(saved), save_warnings=notes)


@router.post("/sequences/{sequence_id}")
async def save(request: Request, sequence_id: str, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    seq, figures = await _load(request, viewer, sequence_id)
    _, form, action = await _form_values(request)
    if _edit(form, action):
        return _editor_page(request, form, seq=seq, figures=figures)
    services = deps.services_of(request)
    body, now = form.to_body(), services.clock.now()
    try:
        await services.db.write(lambda tx: core_sequences.update(tx, viewer.workspace_id, seq.id, body, now))
    except errors.InvalidInput as exc:
        return _editor_page(
            request,
            form,
            seq=seq,
            figures=figures,
            problem=await anyio.to_thread.run_sync(locate, form, exc.message),
        )
    return RedirectResponse(f"{web.PREFIX}/sequences/{seq.id}?saved=1", status_code=303)


@router.post("/sequences/{sequence_id}/status")
async def set_status(
    request: Request, sequence_id: str, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    """Enable (active) or disable (paused), as POST /api/v1/sequences/{id}/enable|disable do."""
    seq, figures = await _load(request, viewer, sequence_id)
    wanted = (await request.form()).get("status")
    if wanted not in ("active", "paused"):
        raise errors.InvalidInput("status must be active or paused")
    services = deps.services_of(request)
    now = services.clock.now()
    try:
        await services.db.write(
            lambda tx: core_sequences.set_status(tx, viewer.workspace_id, seq.id, str(wanted), now)
        )
    except errors.InvalidInput as exc:
        form = editor.from_definition(seq.name, seq.description, seq.definition)
        return _editor_page(request, form, seq=seq, figures=figures, problem=Problem(exc.message))
    return RedirectResponse(f"{web.PREFIX}/sequences/{seq.id}", status_code=303)
