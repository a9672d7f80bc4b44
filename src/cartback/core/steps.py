"""Sequence steps as a person reads them, and where one enrollment stands on each of them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cartback.store import enrollments


def _duration(config: dict[str, Any]) -> str:
    parts = []
    for key, unit in (("days", "d"), ("hours", "h"), ("minutes", "min")):
        value = config.get(key)
        if value:
            parts.append(f"{value:g} {unit}")
    return " ".join(parts) or "0 min"


_OUTPUT = re.compile(r"\{\{.*?\}\}", re.S)
_TAG = re.compile(r"\{%.*?%\}", re.S)


def plain(subject: str | None) -> str:
    """A subject template as an owner reads it: each Liquid output shown as "…", tags left out
    ("You left {{ event.items[0].title }}" -> "You left …")."""
    text = _OUTPUT.sub("…", _TAG.sub("", subject or ""))
    return " ".join(text.split()) or "(no subject)"


def describe(node: dict[str, Any]) -> str:
    """'Wait 1 h', 'Email: Did you forget something?', 'Add tag vip', ..."""
    kind, config = node.get("type"), node.get("config") or {}
    if kind == "delay":
        if config.get("mode") == "until_weekday":
            window = config.get("window") or {}
            days = ", ".join(window.get("days") or [])
            hours = f"{window.get('startTime')}-{window.get('endTime')}"
            return f"Wait until {days} {hours} {window.get('timezone')}"
        return f"Wait {_duration(config)}"
    if kind == "email":
        return f"Email: {plain(config.get('subject'))}"
    if kind in ("add_tag", "remove_tag"):
        verb = "Add" if kind == "add_tag" else "Remove"
        return f"{verb} tag {config.get('tagName') or ''}"
    if kind in ("add_to_list", "remove_from_list"):
        return f"{'Add to' if kind == 'add_to_list' else 'Remove from'} list {config.get('listId') or ''}"
    if kind == "wait_for_event":
        return f"Wait for {config.get('eventName') or 'an event'}"
    if kind == "condition":
        return f"If {config.get('type') or 'condition'} {config.get('value') or ''}".strip()
    return str(kind).replace("_", " ").capitalize()


@dataclass(frozen=True)
class StepState:
    node_id: str
    label: str
    # done, current, not reached, ...: the last action recorded on the step, or what is pending.
    state: str
    detail: str | None
    at: Any


def progress(
    definition: dict[str, Any], enrollment: enrollments.Enrollment, history: list[enrollments.HistoryEntry]
) -> list[StepState]:
    """Each step of the definition with this enrollment's last recorded action on it (sent, skipped with
    its reason, ...); the step it waits on is 'waiting' with its due time; steps never reached say so."""
    last: dict[str, enrollments.HistoryEntry] = {}
    for recorded in history:
        if recorded.node_id:
            last[recorded.node_id] = recorded
    out = []
    for node in definition.get("nodes") or []:
        node_id = str(node.get("id"))
        entry: enrollments.HistoryEntry | None = last.get(node_id)
        live = enrollment.status in enrollments.LIVE and enrollment.current_node_id == node_id
        if live and (entry is None or entry.action == "waiting"):
            state = "waiting" if entry else "due"
            detail, at = (entry.detail if entry else None), enrollment.next_run_at
        elif entry is not None:
            state, detail, at = entry.action, entry.detail, entry.at
        else:
            state, detail, at = "not reached", None, None
        out.append(StepState(node_id, describe(node), state, detail, at))
    return out
