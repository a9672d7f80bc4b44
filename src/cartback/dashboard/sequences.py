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
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cartback import errors
from cartback.api import deps
from cartback.core import events, reports
from cartback.core import sequences as core_sequences
from cartback.dashboard import editor, messages, web
from cartback.delivery import render, render_budget

router = APIRouter()
NAV = ("/app/sequences", "Sequences")

_LINE = re.compile(r"at line (\d+), column (\d+)")
_STEP = re.compile(r"steps\[(\d+)\]")
_FIELDS = (("subject", "subject", False), ("preview_text", "previewText", False), ("html", "html", True),
           ("text", "text", False))  # fmt: skip


@router.get("/sequences")
async def listing(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    return web.render(
        request, "sequences.html", {"rows": await web.read(request, viewer, reports.sequences, None)}
    )


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
    seq: reports.Sequence | None,
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
            "status": reports.effective_status(seq) if seq else "new",
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
    trigger = form.event_name if form.trigger == "event_received" else ""
    ctx, source = await web.read(
        request, viewer, reports.preview_context, reports.PreviewQuery(trigger, form.name)
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
    except render_budget.Spent as exc:
        return _preview_page("_preview_error.html", message=exc.message)
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


async def _load(
    request: Request, viewer: web.Viewer, sequence_id: str, *, warnings: bool = False
) -> reports.SequencePage:
    return await web.read(request, viewer, reports.sequence, reports.SequenceQuery(sequence_id, warnings))


@router.get("/sequences/{sequence_id}")
async def detail(
    request: Request, sequence_id: str, saved: int = 0, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    page = await _load(request, viewer, web.object_id(sequence_id, "sequence"), warnings=bool(saved))
    form = editor.from_definition(page.seq.name, page.seq.description, page.seq.definition)
    return _editor_page(
        request, form, seq=page.seq, figures=page.figures, saved=bool(saved), save_warnings=page.warnings
    )


@router.post("/sequences/{sequence_id}")
async def save(request: Request, sequence_id: str, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    sequence_id = web.object_id(sequence_id, "sequence")
    _, form, action = await _form_values(request)
    if _edit(form, action):
        page = await _load(request, viewer, sequence_id)
        return _editor_page(request, form, seq=page.seq, figures=page.figures)
    services = deps.services_of(request)
    body, now = form.to_body(), services.clock.now()
    try:
        await services.db.write(
            lambda tx: core_sequences.update(tx, viewer.workspace_id, sequence_id, body, now)
        )
    except (errors.InvalidInput, errors.NotFound) as exc:
        page = await _load(request, viewer, sequence_id)  # a sequence that is not there: this page's 404
        if isinstance(exc, errors.NotFound):
            raise
        return _editor_page(
            request,
            form,
            seq=page.seq,
            figures=page.figures,
            problem=await anyio.to_thread.run_sync(locate, form, exc.message),
        )
    return RedirectResponse(f"{web.PREFIX}/sequences/{sequence_id}?saved=1", status_code=303)


@router.post("/sequences/{sequence_id}/status")
async def set_status(
    request: Request, sequence_id: str, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    """Enable (active) or disable (paused), as POST /api/v1/sequences/{id}/enable|disable do."""
    sequence_id = web.object_id(sequence_id, "sequence")
    wanted = (await request.form()).get("status")
    if wanted not in ("active", "paused"):
        await _load(request, viewer, sequence_id)  # a sequence that is not there is a 404 first
        raise errors.InvalidInput("status must be active or paused")
    services = deps.services_of(request)
    now = services.clock.now()
    try:
        await services.db.write(
            lambda tx: core_sequences.set_status(tx, viewer.workspace_id, sequence_id, str(wanted), now)
        )
    except (errors.InvalidInput, errors.NotFound) as exc:
        page = await _load(request, viewer, sequence_id)  # a sequence that is not there: this page's 404
        if isinstance(exc, errors.NotFound):
            raise
        form = editor.from_definition(page.seq.name, page.seq.description, page.seq.definition)
        return _editor_page(request, form, seq=page.seq, figures=page.figures, problem=Problem(exc.message))
    return RedirectResponse(f"{web.PREFIX}/sequences/{sequence_id}", status_code=303)
