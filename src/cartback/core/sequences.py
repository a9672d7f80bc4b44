"""Sequence definitions: what the API accepts (Sequenzy's shape) compiled into the graph the engine runs.

A definition is stored as one JSON document. Its `nodes` form a graph: each node has an `id`, a `type` and
the ids of the nodes that follow it (`next`; a condition has one target per branch plus `elseNext`; a
wait-for-event has `next` for the event and `timeoutNext` for the timeout). Sequenzy's linear `steps`
become a chain: a step with a delay becomes a delay node followed by the step's own node.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cartback import addresses, errors, headers, ids
from cartback.core import events, filters, schedule
from cartback.store import events as event_store
from cartback.store import sequences as sequence_store
from cartback.store.db import Tx
from cartback.store.sequences import Sequence

TRIGGERS = ("event_received", "contact_added", "tag_added", "list_added", "manual")
# Accepted and stored, but nothing produces them yet; saying so beats silently never firing.
UNSUPPORTED_TRIGGERS = ("segment_entered", "segment_exited", "inbound_webhook", "inactivity", "frequency")
ENROLLMENT_MODES = ("unlimited", "one_time", "matching_field")
STOP_TYPES = (
    "none",
    "has_tag",
    "does_not_have_tag",
    "added_to_list",
    "removed_from_list",
    "field_changed",
    "event_received",
)
MATCH_MODES = ("entry_audience", "event_property", "event_property_filter", "field_value")
FIELD_OPERATORS = ("equals", "not_equals", "greater_than", "less_than", "contains", "not_contains")
CONDITION_TYPES = (
    "has_tag",
    "does_not_have_tag",
    "in_list",
    "event_received",
    "field_equals",
    "field_contains",
    "field_greater_than",
    "field_less_than",
    "has_phone",
)
NODE_TYPES = (
    "delay",
    "email",
    "update_subscriber",
    "add_tag",
    "remove_tag",
    "add_to_list",
    "remove_from_list",
    "wait_for_event",
    "condition",
)
# Sequenzy's node type names, both ways.
_NODE_ALIASES = {
    "logic_delay": "delay",
    "action_email": "email",
    "action_update_attributes": "update_subscriber",
    "action_add_tag": "add_tag",
    "action_remove_tag": "remove_tag",
    "action_add_to_list": "add_to_list",
    "action_remove_from_list": "remove_from_list",
    "logic_wait_for_event": "wait_for_event",
    "logic_condition": "condition",
}
WIRE_NODE_TYPES = {v: k for k, v in _NODE_ALIASES.items()}
MAX_STEPS = 100


class DefinitionError(ValueError):
    """A definition that cannot run; the message says where."""


@dataclass(frozen=True)
class Definition:
    """A validated definition; `data` is the stored JSON document."""

    data: dict[str, Any]

    @property
    def trigger(self) -> str:
        return str(self.data["trigger"])

    @property
    def trigger_event(self) -> str | None:
        """The event name the dispatcher starts this sequence on."""
        if self.trigger == "event_received":
            return str(self.data["eventName"])
        if self.trigger == "list_added" or (self.trigger == "contact_added" and self.list_refs):
            # Sequenzy's contact_added scoped to lists means "added to one of these lists".
            return events.LIST_ADDED
        return {"contact_added": events.SUBSCRIBER_CREATED, "tag_added": events.TAG_ADDED}.get(self.trigger)

    @property
    def list_refs(self) -> list[str]:
        return [str(x) for x in [self.data.get("listId"), *(self.data.get("listIds") or [])] if x]

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        return {node["id"]: node for node in self.data["nodes"]}

    @property
    def entry(self) -> str | None:
        entry = self.data.get("entryNodeId")
        return str(entry) if entry else None

    @property
    def email_count(self) -> int:
        return sum(1 for n in self.data["nodes"] if n["type"] == "email")

    @property
    def property_filters(self) -> list[filters.PropertyFilter]:
        return [filters.PropertyFilter.from_wire(f) for f in self.data.get("propertyFilters") or []]

    @property
    def sending_window(self) -> schedule.SendingWindow | None:
        window = self.data.get("sendingWindow")
        return schedule.SendingWindow.from_wire(window) if window else None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DefinitionError(message)


def _sender_fields(config: dict[str, Any], where: str) -> None:
    """fromEmail/replyTo as one mailbox each (stored in normal form), fromName/replyToName and the subject
    as one line a mail header can carry: a 400 at save time, not a message that cannot be built."""
    for key in ("fromEmail", "replyTo"):
        if config.get(key) is not None:
            _require(isinstance(config[key], str), f"{where}{key} must be a string")
            try:
                config[key] = addresses.normalise(config[key])
            except addresses.InvalidAddress as exc:
                raise DefinitionError(f"{where}{key}: {exc}") from None
    for key, check in (("fromName", headers.check_name), ("replyToName", headers.check_name)):
        if config.get(key) is not None:
            _require(isinstance(config[key], str), f"{where}{key} must be a string")
            try:
                check(config[key])
            except headers.InvalidHeader as exc:
                raise DefinitionError(f"{where}{key}: {exc}") from None
    if isinstance(config.get("subject"), str):
        try:
            headers.check_text(config["subject"])
        except headers.InvalidHeader as exc:
            raise DefinitionError(f"{where}subject: {exc}") from None


def _text(value: Any, message: str) -> str:
    """`value` as a non-blank string, else DefinitionError(message)."""
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(message)
    return value


def _number(value: Any, where: str) -> float:
    _require(
        isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
        f"{where} must be a non-negative number",
    )
    return float(value)


def parse(body: dict[str, Any], *, previous: Definition | None = None) -> Definition:
    """Validate a Sequenzy create/update body (camelCase keys) into a Definition. On update, keys absent
    from `body` keep their previous value; `steps` replaces the graph."""
    check_keys(body)
    data: dict[str, Any] = (
        copy.deepcopy(previous.data)
        if previous
        else {
            "trigger": "contact_added",
            "enrollmentMode": "unlimited",
            "activeSubscribersOnly": False,
            "propertyFilters": [],
            "stopCondition": None,
            "sendingWindow": None,
            "frequencyCapEnabled": False,
            "nodes": [],
            "entryNodeId": None,
            "nextNodeNumber": 1,
        }
    )
    for key in (
        "trigger",
        "eventName",
        "propertyFilters",
        "tagName",
        "tagNames",
        "listId",
        "listIds",
        "enrollmentMode",
        "enrollmentFieldPath",
        "activeSubscribersOnly",
        "userCancellable",
        "stopCondition",
        "stopOnOrder",
        "sendingWindow",
        "useSubscriberTimezone",
        "frequencyCapEnabled",
        "fromEmail",
        "fromName",
        "replyTo",
        "replyToName",
        "labels",
    ):
        if key in body and body[key] is not None:
            data[key] = copy.deepcopy(body[key])

    _sender_fields(data, "")
    trigger = data["trigger"]
    _require(trigger in TRIGGERS + UNSUPPORTED_TRIGGERS, f"trigger: unknown trigger {trigger!r}")
    _require(trigger not in UNSUPPORTED_TRIGGERS, f"trigger: {trigger!r} is not supported by cartback yet")
    if trigger == "event_received":
        name = _text(data.get("eventName"), "eventName is required for an event_received trigger")
        data["eventName"] = events.canonical_name(name.strip())
    try:
        data["propertyFilters"] = [
            filters.PropertyFilter.from_wire(f).to_wire() for f in data.get("propertyFilters") or []
        ]
    except (ValueError, TypeError, AttributeError) as exc:
        raise DefinitionError(f"propertyFilters: {exc}") from exc

    mode = data["enrollmentMode"]
    _require(mode in ENROLLMENT_MODES, f"enrollmentMode: must be one of {', '.join(ENROLLMENT_MODES)}")
    if mode == "matching_field":
        path = _text(data.get("enrollmentFieldPath"), "enrollmentFieldPath is required for matching_field")
        _require("[]" not in path, "enrollmentFieldPath must be a scalar path (no [])")

    data["stopCondition"] = _parse_stop(data.get("stopCondition"))
    stop = data["stopCondition"] or {}
    if "stopOnOrder" not in body or body.get("stopOnOrder") is None:
        # Stores expect any order of the customer to end the abandoned-checkout emails, unless the
        # definition says itself which orders stop it (e.g. only the order of the same checkout).
        data["stopOnOrder"] = data.get("eventName") == events.CHECKOUT_STARTED and not (
            stop.get("type") == "event_received" and stop.get("value") == events.ORDER_PLACED
        )
    if data.get("sendingWindow") is not None:
        try:
            window = schedule.SendingWindow.from_wire(data["sendingWindow"])
        except (ValueError, TypeError, KeyError) as exc:
            raise DefinitionError(f"sendingWindow: {exc}") from exc
        data["sendingWindow"] = window.to_wire() if window else None

    steps = body.get("steps") if body.get("steps") is not None else body.get("emails")
    if steps is not None:
        _require(isinstance(steps, list), "steps must be a list")
        _require(len(steps) <= MAX_STEPS, f"steps: at most {MAX_STEPS}")
        if (
            previous is not None
            and steps
            and all(isinstance(s, dict) and (s.get("emailId") or s.get("nodeId")) for s in steps)
        ):
            _edit_emails(data, steps)
        else:
            # A create, or an update that sends whole steps without ids: the steps are replaced.
            data["nodes"], data["nextNodeNumber"] = [], 1
            data["entryNodeId"] = _compile_chain(data, steps, "steps")
    if previous is not None:
        _apply_graph_edits(data, body)
    _require(len(data["nodes"]) <= 4 * MAX_STEPS, f"a sequence has at most {4 * MAX_STEPS} nodes")
    return Definition(data)


_EMAIL_FIELDS = (
    "subject",
    "previewText",
    "html",
    "text",
    "fromEmail",
    "fromName",
    "replyTo",
    "replyToName",
    "isTransactional",
)


# -- the keys a definition may carry ---------------------------------------------------------------
# Every object of a definition is checked against the keys cartback reads, so a misspelt one (`hour` for
# `hours`) is a 400 naming its path instead of a setting silently dropped. A value of None accepts any
# value; a dict is a nested object; a one-item list is a list of such objects.

_FILTER: dict[str, Any] = {"path": None, "operator": None, "value": None}
_DURATION: dict[str, Any] = {"days": None, "hours": None, "minutes": None}
_CONDITION_KEYS = (
    "conditionType",
    "tagName",
    "listId",
    "eventName",
    "fieldName",
    "fieldValue",
    "activityScope",
)
_STEP_CONFIG: dict[str, Any] = {
    **{f"delay{unit}": None for unit in ("Days", "Hours", "Minutes")},
    **{f"timeout{unit}": None for unit in ("Days", "Hours", "Minutes")},
    **{key: None for key in _CONDITION_KEYS},
    "timeoutAction": None,
    "propertyFilters": [_FILTER],
    "listName": None,
    "firstName": None,
    "lastName": None,
    "status": None,
    "label": None,
    "customAttributeUpdates": [{"name": None, "value": None, "valueType": None}],
}
_STEP: dict[str, Any] = {
    "type": None,
    "nodeType": None,
    "template": None,
    "config": _STEP_CONFIG,
    "delay": {
        **_DURATION,
        "mode": None,
        **{f"until{part}": None for part in ("Days", "StartTime", "EndTime", "Timezone", "TimezoneSource")},
    },
    "delayMs": None,
    "waitUntilWeekday": {
        "days": None,
        "day": None,
        "startTime": None,
        "endTime": None,
        "timezone": None,
        "timezoneSource": None,
        "minimumWait": _DURATION,
    },
    **{key: None for key in _EMAIL_FIELDS},
    "body": None,
    "label": None,
    # An update's `steps` edit existing emails by id.
    "emailId": None,
    "nodeId": None,
    "htmlContent": None,
    **{key: None for key in _CONDITION_KEYS},
}
_DEFINITION: dict[str, Any] = {
    "name": None,
    "description": None,
    "trigger": None,
    "eventName": None,
    "propertyFilters": [_FILTER],
    "tagName": None,
    "tagNames": None,
    "listId": None,
    "listIds": None,
    "enrollmentMode": None,
    "enrollmentFieldPath": None,
    "activeSubscribersOnly": None,
    "userCancellable": None,
    "stopCondition": {
        "type": None,
        "value": None,
        "matchConfig": {
            "mode": None,
            "rules": [{"entryFieldPath": None, "eventFieldPath": None}],
            "propertyFilters": [_FILTER],
            "operator": None,
            "value": None,
            "audience": None,
        },
    },
    "stopOnOrder": None,
    "sendingWindow": {"enabled": None, "days": None, "startTime": None, "endTime": None, "timezone": None},
    "useSubscriberTimezone": None,
    "frequencyCapEnabled": None,
    "fromEmail": None,
    "fromName": None,
    "replyTo": None,
    "replyToName": None,
    "labels": None,
    "steps": [_STEP],
    "emails": [_STEP],
    # Updates only (PUT): flags Sequenzy asks for before a live change, and the graph edits.
    "enrollmentPaused": None,
    "confirmLiveChange": None,
    "confirmStructuralChange": None,
    "nodeUpdates": [{"nodeId": None, "changes": None}],
    "insertSteps": {"afterNodeId": None, "steps": [_STEP]},
    "branch": {
        "afterNodeId": None,
        "branches": [
            {**{key: None for key in _CONDITION_KEYS}, "label": None, "steps": [_STEP], "targetNodeId": None}
        ],
        "elseSteps": [_STEP],
        "elseTargetNodeId": None,
        "splitMode": None,
        "label": None,
        "allowEmptyPaths": None,
    },
    "graphEdit": {"action": None, "nodeId": None, "expectedRevision": None},
}


def check_keys(value: Any, schema: dict[str, Any] = _DEFINITION, where: str = "") -> None:
    """Refuse a key the definition's schema does not have, naming its path and the likeliest key meant.
    Values of the wrong type are left to the parser, which says what it expected."""
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f'did you mean "{close[0]}"?' if close else "known keys: " + ", ".join(sorted(schema))
            raise DefinitionError(f"{path}: unknown key; {hint}")
        inner = schema[key]
        if isinstance(inner, dict):
            check_keys(item, inner, path)
        elif isinstance(inner, list) and isinstance(item, list):
            for i, element in enumerate(item):
                check_keys(element, inner[0], f"{path}[{i}]")


def _node(data: dict[str, Any], node_id: Any, where: str) -> dict[str, Any]:
    for node in data["nodes"]:
        if node["id"] == node_id:
            return dict(node)
    raise DefinitionError(f"{where}: no step {node_id!r} in this sequence")


def _replace_node(data: dict[str, Any], node: dict[str, Any]) -> None:
    data["nodes"] = [node if n["id"] == node["id"] else n for n in data["nodes"]]


def _edit_emails(data: dict[str, Any], edits: list[dict[str, Any]]) -> None:
    """Sequenzy's update `steps`/`emails`: change the content of existing email steps by id."""
    for i, edit in enumerate(edits):
        node = _node(data, edit.get("nodeId") or edit.get("emailId"), f"steps[{i}]")
        _require(node["type"] == "email", f"steps[{i}]: step {node['id']} is not an email")
        config = dict(node["config"])
        if edit.get("htmlContent") is not None and edit.get("html") is None:
            edit = {**edit, "html": edit["htmlContent"]}
        config.update({k: edit[k] for k in _EMAIL_FIELDS if edit.get(k) is not None})
        _require(bool(str(config.get("subject") or "").strip()), f"steps[{i}].subject cannot be empty")
        _replace_node(data, {**node, "config": config})


def _apply_graph_edits(data: dict[str, Any], body: dict[str, Any]) -> None:
    """The update operations that change the graph in place: nodeUpdates, insertSteps, branch and
    graphEdit delete_node."""
    for i, update in enumerate(body.get("nodeUpdates") or []):
        _require(
            isinstance(update, dict) and isinstance(update.get("changes"), dict),
            f"nodeUpdates[{i}] needs nodeId and changes",
        )
        node = _node(data, update.get("nodeId"), f"nodeUpdates[{i}]")
        changes = update["changes"]
        config = {
            **node["config"],
            **(changes.get("config") or {}),
            **{k: v for k, v in changes.items() if k != "config"},
        }
        _replace_node(data, {**node, "config": config})
    insert = body.get("insertSteps")
    if insert is not None:
        _require(
            isinstance(insert, dict) and isinstance(insert.get("steps"), list) and bool(insert["steps"]),
            "insertSteps.steps must be a non-empty list",
        )
        _insert_after(data, insert.get("afterNodeId"), insert["steps"], "insertSteps.steps")
    branch = body.get("branch")
    if branch is not None:
        _add_branch(data, branch)
    edit = body.get("graphEdit")
    if edit is not None:
        _require(isinstance(edit, dict), "graphEdit must be an object")
        _require(edit.get("action") == "delete_node", "graphEdit: only delete_node is supported by cartback")
        node = _node(data, edit.get("nodeId"), "graphEdit")
        for other in data["nodes"]:
            for key in ("next", "elseNext", "timeoutNext"):
                if other.get(key) == node["id"]:
                    other[key] = node.get("next")
        if data.get("entryNodeId") == node["id"]:
            data["entryNodeId"] = node.get("next")
        data["nodes"] = [n for n in data["nodes"] if n["id"] != node["id"]]


def _chain_end(data: dict[str, Any], first: str | None) -> dict[str, Any] | None:
    nodes = {n["id"]: n for n in data["nodes"]}
    node, seen = nodes.get(first or ""), set()
    while node is not None and node.get("next") and node["id"] not in seen:
        seen.add(node["id"])
        node = nodes.get(node["next"])
    return node


def _insert_after(data: dict[str, Any], after: Any, steps: list[Any], where: str) -> None:
    first = _compile_chain(data, steps, where)
    last = _chain_end(data, first)
    assert last is not None
    if after is None:  # at the end of the main path
        tail = _chain_end(data, data.get("entryNodeId"))
        if tail is None or tail["id"] == last["id"]:
            data["entryNodeId"] = first
        else:
            tail["next"] = first
        return
    anchor = _node(data, after, where)
    last["next"] = anchor.get("next")
    _replace_node(data, {**anchor, "next": first})


def _add_branch(data: dict[str, Any], branch: Any) -> None:
    """Sequenzy's `branch`: after `afterNodeId`, the first branch whose condition holds runs its steps;
    otherwise `elseSteps` run, or, without them, the flow continues as it did before."""
    _require(
        isinstance(branch, dict) and isinstance(branch.get("branches"), list) and bool(branch["branches"]),
        "branch.branches must be a non-empty list",
    )
    _require(
        branch.get("splitMode", "condition") == "condition", "branch: only splitMode condition is supported"
    )
    anchor = _node(data, branch.get("afterNodeId"), "branch.afterNodeId")
    continuation = anchor.get("next")
    else_first = continuation
    if branch.get("elseSteps"):
        else_first = _compile_chain(data, branch["elseSteps"], "branch.elseSteps")
    elif branch.get("elseTargetNodeId"):
        else_first = _node(data, branch["elseTargetNodeId"], "branch.elseTargetNodeId")["id"]
    # Built back to front: each condition's else is the next condition; the last one's else is `else`.
    entry = else_first
    for i in reversed(range(len(branch["branches"]))):
        spec = branch["branches"][i]
        where = f"branch.branches[{i}]"
        _require(isinstance(spec, dict), f"{where} must be an object")
        config = _condition_config(spec, where)
        if spec.get("steps"):
            target = _compile_chain(data, spec["steps"], f"{where}.steps")
        elif spec.get("targetNodeId"):
            target = _node(data, spec["targetNodeId"], f"{where}.targetNodeId")["id"]
        else:
            _require(bool(branch.get("allowEmptyPaths")), f"{where} needs steps or targetNodeId")
            target = None
        condition = _new_node(data, "condition", {**config, "label": spec.get("label")})
        condition["next"] = target
        condition["elseNext"] = entry
        entry = condition["id"]
    _replace_node(data, {**anchor, "next": entry})


def _parse_stop(stop: Any) -> dict[str, Any] | None:
    if stop is None:
        return None
    _require(isinstance(stop, dict), "stopCondition must be an object")
    kind = stop.get("type", "none")
    _require(kind in STOP_TYPES, f"stopCondition.type: unknown {kind!r}")
    if kind == "none":
        return None
    value = stop.get("value")
    if kind != "field_changed" or value is not None:
        _require(isinstance(value, str) and bool(value), f"stopCondition.value is required for {kind}")
    out: dict[str, Any] = {"type": kind, "value": value}
    if kind == "event_received":
        out["value"] = events.canonical_name(value)
    match = stop.get("matchConfig")
    if match is not None:
        _require(isinstance(match, dict), "stopCondition.matchConfig must be an object")
        mode = match.get("mode")
        _require(
            mode in MATCH_MODES, f"stopCondition.matchConfig.mode: must be one of {', '.join(MATCH_MODES)}"
        )
        if mode == "event_property":
            rules = match.get("rules")
            _require(isinstance(rules, list) and bool(rules), "matchConfig.rules must be a non-empty list")
            for i, rule in enumerate(rules):
                _require(
                    isinstance(rule, dict)
                    and bool(rule.get("entryFieldPath"))
                    and bool(rule.get("eventFieldPath")),
                    f"matchConfig.rules[{i}] needs entryFieldPath and eventFieldPath",
                )
            match = {
                "mode": mode,
                "rules": [
                    {"entryFieldPath": r["entryFieldPath"], "eventFieldPath": r["eventFieldPath"]}
                    for r in rules
                ],
            }
        elif mode == "event_property_filter":
            try:
                pf = [
                    filters.PropertyFilter.from_wire(f).to_wire() for f in match.get("propertyFilters") or []
                ]
            except (ValueError, TypeError, AttributeError) as exc:
                raise DefinitionError(f"matchConfig.propertyFilters: {exc}") from exc
            match = {"mode": mode, "propertyFilters": pf}
        elif mode == "field_value":
            _require(
                match.get("operator") in FIELD_OPERATORS,
                f"matchConfig.operator: must be one of {', '.join(FIELD_OPERATORS)}",
            )
            match = {"mode": mode, "operator": match["operator"], "value": str(match.get("value", ""))}
        else:
            _require(match.get("audience") in ("tag", "list"), "matchConfig.audience must be tag or list")
            match = {"mode": mode, "audience": match["audience"]}
        out["matchConfig"] = match
    return out


def _new_node(data: dict[str, Any], kind: str, config: dict[str, Any]) -> dict[str, Any]:
    node = {"id": f"node_{data['nextNodeNumber']}", "type": kind, "config": config, "next": None}
    data["nextNodeNumber"] += 1
    data["nodes"].append(node)
    return node


def _compile_chain(data: dict[str, Any], steps: list[Any], where: str) -> str | None:
    """Append nodes for `steps` and link them in order; return the first node's id."""
    first: str | None = None
    last: dict[str, Any] | None = None
    for i, step in enumerate(steps):
        _require(isinstance(step, dict), f"{where}[{i}] must be an object")
        for node in _compile_step(data, step, f"{where}[{i}]"):
            if last is None:
                first = node["id"]
            else:
                last["next"] = node["id"]
            last = node
    return first


def _compile_step(data: dict[str, Any], step: dict[str, Any], where: str) -> list[dict[str, Any]]:
    config = dict(step.get("config") or {})
    kind = _NODE_ALIASES.get(step.get("nodeType") or "", step.get("nodeType")) or step.get("type") or "email"
    kind = {
        "discount": "unsupported",
        "create_discount": "unsupported",
        "sms": "unsupported",
        "push": "unsupported",
        "ai": "unsupported",
        # A webhook call would be network I/O inside the step's transaction; not offered until it can be
        # delivered from an outbox like email.
        "webhook": "unsupported",
        "action_webhook": "unsupported",
    }.get(kind, kind)
    _require(
        kind != "unsupported",
        f"{where}: step type {step.get('type') or step.get('nodeType')!r} is not "
        "supported by cartback (email, delay, update_subscriber, tags, lists, wait_for_event and "
        "condition are)",
    )
    _require(kind in NODE_TYPES, f"{where}: unknown step type {kind!r}")
    nodes = []
    delay = _delay_config(step, config, where)
    if delay is not None and kind != "delay":
        nodes.append(_new_node(data, "delay", delay))
    if kind == "delay":
        _require(delay is not None, f"{where}: a delay step needs days, hours or minutes")
        nodes.append(_new_node(data, "delay", delay or {}))
    elif kind == "email":
        if step.get("template") is not None:
            # A shipped template (e.g. abandoned_cart) copied into the definition; the step's own
            # fields override it.
            from cartback.delivery import render

            _require(
                step["template"] in render.TEMPLATES,
                f"{where}.template: unknown template {step['template']!r}",
            )
            step = {
                **render.default_template(step["template"]),
                **{k: v for k, v in step.items() if v is not None},
            }
        subject = step.get("subject")
        _require(isinstance(subject, str) and bool(subject.strip()), f"{where}.subject is required")
        step = dict(step)
        _sender_fields(step, f"{where}.")
        html, text = step.get("html"), step.get("text") or step.get("body")
        _require(bool(html) or bool(text), f"{where}: an email needs html or text")
        nodes.append(
            _new_node(
                data,
                "email",
                {
                    key: step.get(key)
                    for key in (
                        "subject",
                        "previewText",
                        "fromEmail",
                        "fromName",
                        "replyTo",
                        "replyToName",
                        "label",
                        "isTransactional",
                    )
                    if step.get(key) is not None
                }
                | {"html": html, "text": text},
            )
        )
    elif kind == "update_subscriber":
        nodes.append(_new_node(data, kind, dict(step.get("config") or {})))
    elif kind in ("add_tag", "remove_tag"):
        tag = config.get("tagName") or step.get("tagName")
        _require(isinstance(tag, str) and bool(tag), f"{where}.config.tagName is required")
        nodes.append(_new_node(data, kind, {"tagName": tag}))
    elif kind in ("add_to_list", "remove_from_list"):
        list_ref = config.get("listId") or config.get("listName") or step.get("listId")
        _require(isinstance(list_ref, str) and bool(list_ref), f"{where}.config.listId is required")
        nodes.append(_new_node(data, kind, {"listId": list_ref}))
    elif kind == "wait_for_event":
        name = _text(
            config.get("eventName") or step.get("eventName"), f"{where}.config.eventName is required"
        )
        timeout = {
            k: config.get(k) for k in ("timeoutDays", "timeoutHours", "timeoutMinutes") if config.get(k)
        }
        _require(bool(timeout), f"{where}: wait_for_event needs timeoutDays (or timeoutHours/timeoutMinutes)")
        for k, v in timeout.items():
            _number(v, f"{where}.config.{k}")
        action = config.get("timeoutAction", "continue")
        _require(action in ("continue", "exit"), f"{where}.config.timeoutAction must be continue or exit")
        try:
            pf = [filters.PropertyFilter.from_wire(f).to_wire() for f in config.get("propertyFilters") or []]
        except (ValueError, TypeError, AttributeError) as exc:
            raise DefinitionError(f"{where}.config.propertyFilters: {exc}") from exc
        nodes.append(
            _new_node(
                data,
                kind,
                {
                    "eventName": events.canonical_name(name),
                    **timeout,
                    "timeoutAction": action,
                    "propertyFilters": pf,
                },
            )
        )
    elif kind == "condition":
        nodes.append(_new_node(data, kind, _condition_config(config or step, where)))
    return nodes


def _condition_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    kind = str(config.get("conditionType"))
    _require(kind in CONDITION_TYPES, f"{where}.conditionType must be one of {', '.join(CONDITION_TYPES)}")
    out: dict[str, Any] = {"conditionType": kind}
    for key in ("tagName", "listId", "eventName", "fieldName", "fieldValue", "activityScope"):
        if config.get(key) is not None:
            out[key] = config[key]
    if kind in ("has_tag", "does_not_have_tag"):
        _require(bool(out.get("tagName")), f"{where}.tagName is required for {kind}")
    if kind == "in_list":
        _require(bool(out.get("listId")), f"{where}.listId is required for in_list")
    if kind == "event_received":
        _require(bool(out.get("eventName")), f"{where}.eventName is required for event_received")
        out["eventName"] = events.canonical_name(str(out["eventName"]))
    if kind.startswith("field_"):
        _require(bool(out.get("fieldName")), f"{where}.fieldName is required for {kind}")
        _require(out.get("fieldValue") is not None, f"{where}.fieldValue is required for {kind}")
        if kind in ("field_greater_than", "field_less_than"):
            try:
                float(out["fieldValue"])
            except (TypeError, ValueError):
                raise DefinitionError(f"{where}.fieldValue must be a number for {kind}") from None
    return out


def _delay_config(step: dict[str, Any], config: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The wait before a step, from `delay{...}`, `delayMs`, `waitUntilWeekday` or a path step's
    `config.delayDays/Hours/Minutes`; None when the step runs at once."""
    delay = step.get("delay")
    weekday = step.get("waitUntilWeekday")
    if delay is not None:
        _require(isinstance(delay, dict), f"{where}.delay must be an object")
        mode = delay.get("mode", "duration")
        if mode == "until_weekday":
            weekday = {
                "days": delay.get("untilDays"),
                "startTime": delay.get("untilStartTime"),
                "endTime": delay.get("untilEndTime"),
                "timezone": delay.get("untilTimezone"),
                "timezoneSource": delay.get("untilTimezoneSource"),
            }
        elif mode == "duration":
            parts = {
                k: _number(delay[k], f"{where}.delay.{k}")
                for k in ("days", "hours", "minutes")
                if delay.get(k) is not None
            }
            _require(bool(parts), f"{where}.delay: set days, hours or minutes (an empty delay sends at once)")
            return {"mode": "duration", **parts} if any(parts.values()) else None
        else:
            raise DefinitionError(f"{where}.delay.mode {mode!r} is not supported by cartback yet")
    if weekday is not None:
        days = weekday.get("days") or ([weekday["day"]] if weekday.get("day") else None)
        _require(bool(days), f"{where}.waitUntilWeekday.days is required")
        window = {
            "enabled": True,
            "days": days,
            "startTime": weekday.get("startTime") or "00:00",
            "endTime": weekday.get("endTime") or "24:00",
            "timezone": weekday.get("timezone") or "UTC",
        }
        try:
            schedule.SendingWindow.from_wire(window)
        except (ValueError, TypeError, KeyError) as exc:
            raise DefinitionError(f"{where}.waitUntilWeekday: {exc}") from exc
        minimum = weekday.get("minimumWait") or {}
        return {
            "mode": "until_weekday",
            "window": window,
            "timezoneSource": weekday.get("timezoneSource") or "fixed",
            "minimumWait": {
                k: _number(minimum[k], f"{where}.minimumWait.{k}")
                for k in ("days", "hours", "minutes")
                if minimum.get(k) is not None
            },
        }
    if step.get("delayMs") is not None:
        ms = _number(step["delayMs"], f"{where}.delayMs")
        return {"mode": "duration", "minutes": ms / 60000} if ms else None
    parts = {
        k: _number(config[f"delay{k.title()}"], f"{where}.config.delay{k.title()}")
        for k in ("days", "hours", "minutes")
        if config.get(f"delay{k.title()}") is not None
    }
    return {"mode": "duration", **parts} if any(parts.values()) else None


def duration(config: dict[str, Any]) -> timedelta:
    return timedelta(
        days=config.get("days", 0), hours=config.get("hours", 0), minutes=config.get("minutes", 0)
    )


def timeout(config: dict[str, Any]) -> timedelta:
    return timedelta(
        days=config.get("timeoutDays", 0),
        hours=config.get("timeoutHours", 0),
        minutes=config.get("timeoutMinutes", 0),
    )


# -- lifecycle (stored sequences) -----------------------------------------------------------------


def check_templates(definition: Definition) -> None:
    """Refuse, at save time, email content whose templates do not parse (with line and column) or exceed the
    resource limits on a sample context (render.check, docs/templates.md "Limits")."""
    from cartback.delivery import render

    for node in definition.data["nodes"]:
        if node["type"] != "email":
            continue
        where, config = f"steps ({node['id']})", node["config"]
        try:
            render.check(f"{where}.subject", config.get("subject"))
            render.check(f"{where}.previewText", config.get("previewText"))
            render.check(f"{where}.html", config.get("html"), html=True)
            render.check(f"{where}.text", config.get("text"))
        except render.TemplateError as exc:
            raise DefinitionError(str(exc)) from exc


def _validated(body: dict[str, Any], previous: Definition | None = None) -> Definition:
    try:
        definition = parse(body, previous=previous)
        check_templates(definition)
    except DefinitionError as exc:
        raise errors.InvalidInput(str(exc)) from exc
    return definition


def create(
    tx: Tx, workspace_id: str, body: dict[str, Any], now: datetime, *, status: str = "draft"
) -> Sequence:
    """Store a new sequence from a Sequenzy definition; drafts enroll nobody until enabled."""
    name = str(body.get("name") or "").strip()
    if not name:
        raise errors.InvalidInput("name: Field required")
    definition = _validated(body)
    seq = Sequence(
        id=ids.new_id("seq"),
        workspace_id=workspace_id,
        name=name,
        description=body.get("description"),
        status=status,
        trigger=definition.trigger,
        trigger_event=definition.trigger_event,
        definition=definition.data,
        enrollment_paused=False,
        revision=1,
        created_at=now,
        updated_at=now,
    )
    sequence_store.insert(tx, seq)
    return seq


def require(tx: Tx, workspace_id: str, sequence_id: str) -> Sequence:
    seq = sequence_store.get(tx, workspace_id, sequence_id)
    if seq is None:
        raise errors.NotFound(f"no sequence {sequence_id!r}")
    return seq


def update(tx: Tx, workspace_id: str, sequence_id: str, body: dict[str, Any], now: datetime) -> Sequence:
    """Apply a Sequenzy update. Live enrollments continue from their current step if it still exists,
    else they fail saying so."""
    seq = require(tx, workspace_id, sequence_id)
    definition = _validated(body, Definition(seq.definition))
    updated = replace(
        seq,
        name=str(body.get("name") or seq.name).strip(),
        description=body.get("description", seq.description),
        trigger=definition.trigger,
        trigger_event=definition.trigger_event,
        definition=definition.data,
        enrollment_paused=bool(body.get("enrollmentPaused", seq.enrollment_paused)),
        revision=seq.revision + 1,
        updated_at=now,
    )
    sequence_store.save(tx, updated)
    return updated


def set_status(tx: Tx, workspace_id: str, sequence_id: str, status: str, now: datetime) -> Sequence:
    """active (live), paused (runs hold where they are) or archived (runs are cancelled when next due)."""
    seq = require(tx, workspace_id, sequence_id)
    if status == "active" and Definition(seq.definition).entry is None:
        raise errors.InvalidInput("a sequence without steps cannot be enabled")
    updated = replace(seq, status=status, updated_at=now)
    sequence_store.save(tx, updated)
    return updated


def event_names(definition: Definition) -> list[tuple[str, str]]:
    """(where, name) of every event name the definition waits for: its trigger, its stop condition and its
    wait-for-event and condition steps."""
    data = definition.data
    found = []
    if data["trigger"] == "event_received" and data.get("eventName"):
        found.append(("eventName", str(data["eventName"])))
    stop = data.get("stopCondition") or {}
    if stop.get("type") == "event_received" and stop.get("value"):
        found.append(("stopCondition.value", str(stop["value"])))
    for node in data["nodes"]:
        name = node["config"].get("eventName")
        if node["type"] in ("wait_for_event", "condition") and name:
            found.append((f"steps ({node['id']}).eventName", str(name)))
    return found


def save_warnings(tx: Tx, workspace_id: str, seq: Sequence) -> list[str]:
    """What a save should tell its author (the API's `warnings`, the editor's notice): `warnings` plus
    every event name that is neither one cartback knows, an alias of one, nor one the workspace has ever
    received, which is most often a misspelling (`checkout_started`) that would never fire."""
    definition = Definition(seq.definition)
    out = warnings(definition)
    for where, name in event_names(definition):
        if name in events.KNOWN_NAMES or event_store.name_seen(tx, workspace_id, name):
            continue
        close = difflib.get_close_matches(name, sorted(events.KNOWN_NAMES | set(events.ALIASES)), n=1)
        hint = f'; did you mean "{events.canonical_name(close[0])}"?' if close else ""
        out.append(f"{where}: no event named {name!r} has been received in this workspace yet{hint}")
    return out


def warnings(definition: Definition) -> list[str]:
    out = []
    if definition.entry is None:
        out.append("the sequence has no steps: enrollments complete at once")
    if definition.data.get("stopOnOrder") and not definition.data.get("stopCondition"):
        out.append("an ecommerce.order_placed event of the subscriber stops this checkout sequence")
    return out
