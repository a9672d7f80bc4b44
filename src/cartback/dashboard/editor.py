"""The sequence editor's form, both ways: a stored definition into form fields, and submitted fields into
the Sequenzy request body that `POST /api/v1/sequences` / `PUT /api/v1/sequences/{id}` accept.

The editor never builds a definition itself: it builds that body and hands it to core/sequences.create or
update, the code path the API uses, so what the editor saves is exactly what the API would have saved.

The form edits linear sequences (email steps, each after an optional wait). A sequence built through the
API with other steps (conditions, tags, waits for events, ...) keeps its steps: the form then edits
everything else and leaves `steps` out of the body, which keeps the graph as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cartback.core import events, filters, schedule

TRIGGERS = (
    ("event_received", "An event is received"),
    ("contact_added", "A person is added"),
    ("tag_added", "A tag is added"),
    ("list_added", "A person joins a list"),
    ("manual", "Manually (API only)"),
)
MODES = (
    ("unlimited", "Every time the trigger fires"),
    ("one_time", "Once per person, ever"),
    ("matching_field", "Once per value of a field (e.g. per checkout)"),
)
STOPS = (
    ("none", "Never stop early"),
    ("order_same_checkout", "The order of the same checkout is placed"),
    ("any_order", "The person places any order"),
    ("event_received", "This event is received"),
    ("has_tag", "The person gets this tag"),
    ("does_not_have_tag", "The person loses this tag"),
    ("keep", "Keep the current stop condition"),
)
OPERATORS = tuple(
    sorted(filters.OPERATORS, key=lambda op: ("exists" not in op, op))  # exists first, then alphabetical
)
DAYS = schedule.WEEKDAYS
SHIPPED_STEP_TEMPLATES = ("abandoned_cart",)

# The abandoned-checkout stop rule: the order that names the enrolling checkout ends the emails.
ORDER_OF_SAME_CHECKOUT: dict[str, Any] = {
    "type": "event_received",
    "value": events.ORDER_PLACED,
    "matchConfig": {
        "mode": "event_property",
        "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
    },
}


@dataclass
class Step:
    subject: str = ""
    preview_text: str = ""
    html: str = ""
    text: str = ""
    delay_days: str = ""
    delay_hours: str = ""
    delay_minutes: str = ""


@dataclass
class Filter:
    path: str = ""
    operator: str = "equals"
    value: str = ""


@dataclass
class Form:
    name: str = ""
    description: str = ""
    trigger: str = "event_received"
    event_name: str = events.CHECKOUT_STARTED
    tag_name: str = ""
    list_id: str = ""
    filters: list[Filter] = field(default_factory=list)
    enrollment_mode: str = "matching_field"
    enrollment_field_path: str = "checkoutId"
    stop: str = "order_same_checkout"
    stop_value: str = ""
    # The stored stop condition the form cannot show, kept as is while `stop` is "keep".
    kept_stop: dict[str, Any] | None = None
    # `stopOnOrder` beside another stop condition: any order of the person also ends the run.
    stop_on_order: bool = False
    window_enabled: bool = False
    window_days: list[str] = field(default_factory=lambda: list(DAYS))
    window_start: str = "09:00"
    window_end: str = "20:00"
    window_timezone: str = "UTC"
    steps: list[Step] = field(default_factory=list)
    # False when the stored graph has steps the form cannot show; they are then left untouched.
    steps_editable: bool = True
    step_summary: list[str] = field(default_factory=list)

    def to_body(self) -> dict[str, Any]:
        """The Sequenzy create/update body these fields describe."""
        body: dict[str, Any] = {
            "name": self.name.strip(),
            "description": self.description.strip() or None,
            "trigger": self.trigger,
            "propertyFilters": [_filter_wire(f) for f in self.filters if f.path.strip()],
            "enrollmentMode": self.enrollment_mode,
            "sendingWindow": (
                {
                    "enabled": True,
                    "days": list(self.window_days),
                    "startTime": self.window_start,
                    "endTime": self.window_end,
                    "timezone": self.window_timezone.strip() or "UTC",
                }
                if self.window_enabled
                else {"enabled": False}
            ),
        }
        if self.trigger == "event_received":
            body["eventName"] = self.event_name.strip()
        elif self.trigger == "tag_added":
            body["tagName"] = self.tag_name.strip()
        elif self.trigger == "list_added":
            body["listId"] = self.list_id.strip()
        if self.enrollment_mode == "matching_field":
            body["enrollmentFieldPath"] = self.enrollment_field_path.strip()
        if self.stop == "order_same_checkout":
            body["stopCondition"] = json.loads(json.dumps(ORDER_OF_SAME_CHECKOUT))
        elif self.stop in ("event_received", "has_tag", "does_not_have_tag"):
            body["stopCondition"] = {"type": self.stop, "value": self.stop_value.strip()}
        elif self.stop == "keep" and self.kept_stop is not None:
            body["stopCondition"] = self.kept_stop
        else:
            body["stopCondition"] = {"type": "none"}
        # Always explicit: left out, the API would default it to true for a checkout trigger, and a
        # sequence saved as "Never stop early" would stop on orders all the same.
        body["stopOnOrder"] = self.stop == "any_order" or self.stop_on_order
        if self.steps_editable:
            body["steps"] = [_step_wire(s) for s in self.steps]
        return body


def _number(text: str) -> int | float | str | None:
    """'' -> None, '2' -> 2, '0.5' -> 0.5; anything else is passed on for the parser to refuse by name."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def _step_wire(step: Step) -> dict[str, Any]:
    wire: dict[str, Any] = {"type": "email", "subject": step.subject}
    if step.preview_text.strip():
        wire["previewText"] = step.preview_text
    if step.html.strip():
        wire["html"] = step.html
    if step.text.strip():
        wire["text"] = step.text
    delay = {
        key: value
        for key, value in (
            ("days", _number(step.delay_days)),
            ("hours", _number(step.delay_hours)),
            ("minutes", _number(step.delay_minutes)),
        )
        if value is not None
    }
    if delay:
        wire["delay"] = delay
    return wire


def _filter_wire(item: Filter) -> dict[str, Any]:
    wire: dict[str, Any] = {"path": item.path.strip(), "operator": item.operator}
    if item.operator in ("exists", "not_exists"):
        return wire
    if item.operator == "one_of":
        wire["value"] = [part.strip() for part in item.value.split(",") if part.strip()]
    else:
        wire["value"] = item.value
    return wire


def _filter_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _delay_text(value: Any) -> str:
    if value in (None, 0):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _linear_steps(data: Mapping[str, Any]) -> list[Step] | None:
    """The graph as editor steps (email nodes, each after at most one duration wait), or None when it
    holds anything else."""
    nodes = {node["id"]: node for node in data.get("nodes") or []}
    out: list[Step] = []
    pending: dict[str, Any] | None = None
    node_id, seen = data.get("entryNodeId"), set()
    while node_id:
        if node_id in seen or node_id not in nodes:
            return None
        seen.add(node_id)
        node = nodes[node_id]
        config = node.get("config") or {}
        if node["type"] == "delay":
            if pending is not None or config.get("mode", "duration") != "duration":
                return None
            pending = config
        elif node["type"] == "email":
            wait = pending or {}
            out.append(
                Step(
                    subject=config.get("subject") or "",
                    preview_text=config.get("previewText") or "",
                    html=config.get("html") or "",
                    text=config.get("text") or "",
                    delay_days=_delay_text(wait.get("days")),
                    delay_hours=_delay_text(wait.get("hours")),
                    delay_minutes=_delay_text(wait.get("minutes")),
                )
            )
            pending = None
        else:
            return None
        node_id = node.get("next")
    if pending is not None or len(seen) != len(nodes):
        return None
    return out


def from_definition(name: str, description: str | None, data: Mapping[str, Any]) -> Form:
    """The form showing a stored definition."""
    from cartback.core import steps as step_labels

    form = Form(
        name=name,
        description=description or "",
        trigger=str(data.get("trigger") or "contact_added"),
        event_name=str(data.get("eventName") or ""),
        tag_name=str(data.get("tagName") or ""),
        list_id=str(data.get("listId") or ""),
        filters=[
            Filter(str(f.get("path")), str(f.get("operator")), _filter_text(f.get("value")))
            for f in data.get("propertyFilters") or []
        ],
        enrollment_mode=str(data.get("enrollmentMode") or "unlimited"),
        enrollment_field_path=str(data.get("enrollmentFieldPath") or ""),
    )
    stop = data.get("stopCondition")
    on_order = bool(data.get("stopOnOrder"))
    if not stop:
        form.stop = "any_order" if on_order else "none"
    elif stop == ORDER_OF_SAME_CHECKOUT:
        form.stop = "order_same_checkout"
    elif stop.get("type") in ("event_received", "has_tag", "does_not_have_tag") and not stop.get(
        "matchConfig"
    ):
        form.stop, form.stop_value = str(stop["type"]), str(stop.get("value") or "")
    else:
        form.stop, form.kept_stop = "keep", dict(stop)
    form.stop_on_order = on_order and bool(stop)
    window = data.get("sendingWindow")
    if window:
        form.window_enabled = True
        form.window_days = list(window.get("days") or DAYS)
        form.window_start = str(window.get("startTime") or "00:00")
        form.window_end = str(window.get("endTime") or "24:00")
        form.window_timezone = str(window.get("timezone") or "UTC")
    linear = _linear_steps(data)
    if linear is None:
        form.steps_editable = False
        form.step_summary = [step_labels.describe(node) for node in data.get("nodes") or []]
    else:
        form.steps = linear
    return form


def _one(values: Mapping[str, Any], key: str, default: str = "") -> str:
    value = values.get(key, default)
    return value if isinstance(value, str) else default


def from_submission(values: Mapping[str, Any], lists: Mapping[str, Sequence[str]]) -> Form:
    """The form as submitted. `values` holds single fields, `lists` the repeated ones (one entry per step
    or filter row, in order)."""

    def column(key: str, size: int) -> list[str]:
        found = list(lists.get(key) or [])
        return (found + [""] * size)[:size]

    step_count = len(lists.get("step_subject") or [])
    subjects, previews, htmls, texts, days, hours, minutes = (
        column(key, step_count)
        for key in (
            "step_subject",
            "step_preview_text",
            "step_html",
            "step_text",
            "step_delay_days",
            "step_delay_hours",
            "step_delay_minutes",
        )
    )
    filter_count = len(lists.get("filter_path") or [])
    paths, operators, filter_values = (
        column(key, filter_count) for key in ("filter_path", "filter_operator", "filter_value")
    )
    kept = _one(values, "kept_stop")
    try:
        kept_stop = json.loads(kept) if kept else None
    except ValueError:
        kept_stop = None
    return Form(
        name=_one(values, "name"),
        description=_one(values, "description"),
        trigger=_one(values, "trigger", "event_received"),
        event_name=_one(values, "event_name"),
        tag_name=_one(values, "tag_name"),
        list_id=_one(values, "list_id"),
        filters=[
            Filter(p, o or "equals", v) for p, o, v in zip(paths, operators, filter_values, strict=True)
        ],
        enrollment_mode=_one(values, "enrollment_mode", "unlimited"),
        enrollment_field_path=_one(values, "enrollment_field_path"),
        stop=_one(values, "stop", "none"),
        stop_value=_one(values, "stop_value"),
        kept_stop=kept_stop if isinstance(kept_stop, dict) else None,
        stop_on_order=_one(values, "stop_on_order") == "on",
        window_enabled=_one(values, "window_enabled") == "on",
        window_days=[d for d in lists.get("window_days") or [] if d in DAYS],
        window_start=_one(values, "window_start", "09:00"),
        window_end=_one(values, "window_end", "20:00"),
        window_timezone=_one(values, "window_timezone", "UTC"),
        steps=[
            Step(*row) for row in zip(subjects, previews, htmls, texts, days, hours, minutes, strict=True)
        ],
        steps_editable=_one(values, "steps_editable", "1") == "1",
    )


def shipped_step(name: str, delay_minutes: str = "60") -> Step:
    """A step filled from a shipped template (its subject, preview text and HTML, editable from there)."""
    from cartback.delivery import render

    content = render.default_template(name)
    return Step(
        subject=content.get("subject") or "",
        preview_text=content.get("previewText") or "",
        html=content.get("html") or "",
        text=content.get("text") or "",
        delay_minutes=delay_minutes,
    )
