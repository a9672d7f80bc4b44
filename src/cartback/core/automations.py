"""The automation engine: who enrolls in which sequence, what each step does, and when a run stops.

Two entry points, both called inside a write transaction with an explicit `now`:
- `dispatch(tx, event, now)` for each new event, in order: stop or wake the subscriber's live
  enrollments, then enroll them in every active sequence the event triggers.
- `advance(tx, enrollment_id, owner, now)` for each enrollment the scheduler claimed: re-check the stop
  conditions against everything that happened since enrollment, then run nodes until one must wait.

A step's effects and the enrollment's move past it commit in one transaction, and an email step's
message row is unique per (enrollment, step); so a crash anywhere repeats no step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cartback import ids
from cartback.core import (
    batch_reads,
    context,
    dispatch_reads,
    events,
    filters,
    lists,
    mail,
    schedule,
    sequences,
    subscribers,
    suppressions,
    webhooks,
)
from cartback.delivery import render
from cartback.store import checkouts as checkout_store
from cartback.store import enrollments as enrollment_store
from cartback.store import events as event_store
from cartback.store import lists as list_store
from cartback.store import messages as message_store
from cartback.store import sequences as sequence_store
from cartback.store import subscribers as subscriber_store
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx
from cartback.store.enrollments import Enrollment
from cartback.store.events import Event
from cartback.store.sequences import Sequence
from cartback.store.subscribers import Subscriber

log = logging.getLogger(__name__)


# What the engine needs from the configuration: how to compose and queue mail.
Options = mail.Options
DEFAULT_OPTIONS = mail.DEFAULT_OPTIONS

SUPPRESSED = ("unsubscribed", "bounced", "complained")
# A run that loops through this many instant nodes in one go is a definition bug, not work.
MAX_NODES_PER_RUN = 200
PAUSED_RECHECK = timedelta(minutes=1)
# A run whose step raises when run alone is tried again after 30 s, 1 min, 2 min, 4 min, then failed.
STEP_RETRY_BASE = timedelta(seconds=30)
MAX_STEP_FAILURES = 5


# -- enrolling --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Whether an event enrolls a subscriber, and why (or why not): explain shows `reason`."""

    enroll: bool
    reason: str
    dedupe_key: str | None = None


def decide(
    tx: Tx,
    seq: Sequence,
    definition: sequences.Definition,
    sub: Subscriber,
    event: Event,
    data: dict[str, Any],
    key_taken: Callable[[str, str], bool] | None = None,
) -> Decision:
    """`key_taken(sequence_id, dedupe_key)`: whether a run holds that key (by default, asked of the store)."""
    taken = key_taken or (lambda sequence_id, key: enrollment_store.exists_with_key(tx, sequence_id, key))
    if seq.status != "active":
        return Decision(False, f"sequence is {seq.status}, not active")
    if seq.enrollment_paused:
        return Decision(False, "enrollment is paused")
    if event.name != definition.trigger_event:
        return Decision(False, f"event {event.name!r} is not the trigger {definition.trigger_event!r}")
    if event.historical:
        return Decision(False, "the event is historical (occurred more than an hour before it was received)")
    trigger_refusal = _trigger_config_refusal(definition, data)
    if trigger_refusal:
        return Decision(False, trigger_refusal)
    match = filters.match(data, definition.property_filters)
    if not match.ok:
        return Decision(False, f"trigger filter failed: {match.reason}")
    if sub.status in SUPPRESSED:
        return Decision(False, f"subscriber is {sub.status}")
    if definition.data.get("activeSubscribersOnly") and sub.status != "active":
        return Decision(False, "sequence enrolls active subscribers only")
    mode = definition.data.get("enrollmentMode", "unlimited")
    key: str | None = None
    if mode == "one_time":
        key = f"once:{sub.id}"
        if taken(seq.id, key):
            return Decision(False, "enrollmentMode one_time: the subscriber was enrolled before")
    elif mode == "matching_field":
        path = str(definition.data["enrollmentFieldPath"])
        values = filters.resolve(data, path)
        if not values or values[0] in (None, ""):
            return Decision(False, f"enrollmentMode matching_field: the event has no {path}")
        key = f"field:{sub.id}:{values[0]}"
        if taken(seq.id, key):
            return Decision(
                False, f"enrollmentMode matching_field: a live enrollment for {path}={values[0]!r} exists"
            )
    return Decision(True, "enrolled", key)


def _trigger_config_refusal(definition: sequences.Definition, data: dict[str, Any]) -> str | None:
    d = definition.data
    if definition.trigger == "tag_added":
        wanted = [t for t in [d.get("tagName"), *(d.get("tagNames") or [])] if t]
        if wanted and data.get("tag") not in wanted:
            return f"tag {data.get('tag')!r} is not one of {wanted}"
    wanted = definition.list_refs
    if (
        wanted
        and definition.trigger_event == events.LIST_ADDED
        and not (data.get("listId") in wanted or data.get("listName") in wanted)
    ):
        return f"list {data.get('listName')!r} is not one of {wanted}"
    return None


def enroll(
    seq: Sequence,
    definition: sequences.Definition,
    sub: Subscriber,
    event: Event,
    data: dict[str, Any],
    decision: Decision,
    now: datetime,
) -> tuple[Enrollment, list[dict[str, Any]]]:
    """A new run and its history rows, for the dispatch batch to write (core/dispatch_reads.py)."""
    enrollment = Enrollment(
        id=ids.new_id("enr"),
        workspace_id=seq.workspace_id,
        sequence_id=seq.id,
        subscriber_id=sub.id,
        trigger_event_id=event.id,
        trigger_received_at=event.received_at,
        context={"event": data, "snapshot": _snapshot(definition, sub)},
        dedupe_key=decision.dedupe_key,
        status="active",
        current_node_id=definition.entry,
        next_run_at=now,
        lease_owner=None,
        lease_until=None,
        stop_reason=None,
        created_at=now,
        updated_at=now,
        finished_at=None,
    )
    history = [enrollment_store.history_row(enrollment, "enrolled", now, detail=f"by event {event.name}")]
    parked = _parked(definition, enrollment, now)
    if parked is None:
        return enrollment, history
    history.append(parked[1])
    # Both rows are of the same moment, and history is read in (at, id) order: ids in the rows' order.
    for row, row_id in zip(history, sorted(row["id"] for row in history), strict=True):
        row["id"] = row_id
    return parked[0], history


# Stop conditions on who the subscriber is (state_stop_reason), which a run's first step checks at once.
_STATE_STOPS = frozenset(
    {"has_tag", "does_not_have_tag", "added_to_list", "removed_from_list", "field_changed"}
)


def _parked(
    definition: sequences.Definition, enrollment: Enrollment, now: datetime
) -> tuple[Enrollment, dict[str, Any]] | None:
    """A new run whose first step is a plain delay, already waiting on it (and the history row that says
    so), as its first step would leave it: claiming it due now only to start the wait cost a write, a
    read of its subscriber and a second write per run, and at full load held enrollment seconds behind
    ingest. Only where that first step could decide nothing else: no stop condition on the subscriber's
    state (whether they are suppressed `decide` has just checked; an order or other stop event that
    follows stops the run when it is dispatched), no delay to a sending window."""
    node = definition.nodes.get(definition.entry or "")
    if node is None or node["type"] != "delay":
        return None
    config = node["config"]
    stop = definition.data.get("stopCondition") or {}
    if config.get("mode") == "until_weekday" or stop.get("type") in _STATE_STOPS:
        return None
    try:
        at = schedule.add_delay(
            now, days=config.get("days", 0), hours=config.get("hours", 0), minutes=config.get("minutes", 0)
        )
    except (TypeError, ValueError):
        return None  # a definition the step itself refuses: it fails there, in the run's history
    if at <= now:
        return None
    parked = replace(
        enrollment,
        next_run_at=at,
        context={**enrollment.context, "due": {"node": node["id"], "at": at.isoformat()}},
    )
    row = enrollment_store.history_row(
        parked, "waiting", now, node_id=node["id"], detail=f"delay until {at.isoformat()}"
    )
    return parked, row


def _snapshot(definition: sequences.Definition, sub: Subscriber) -> dict[str, Any]:
    """What field_changed compares against: the watched field's value at enrollment."""
    stop = definition.data.get("stopCondition") or {}
    if stop.get("type") == "field_changed" and stop.get("value"):
        return {"field": stop["value"], "value": _field(sub, str(stop["value"]))}
    return {}


def _field(sub: Subscriber, name: str) -> Any:
    return context.subscriber_data(sub).get(name)


# -- dispatching events ---------------------------------------------------------------------------


def dispatch(
    tx: Tx, event: Event, now: datetime, reads: dispatch_reads.DispatchReads | None = None
) -> list[str]:
    """React to one new event; return the ids of enrollments it created. `reads`: what its dispatch batch
    read and holds (core/dispatch_reads.py), which writes the new runs; without it the event is dispatched
    alone and they are written at once."""
    if reads is None:
        reads = dispatch_reads.DispatchReads(tx, [event])
        alone = dispatch(tx, event, now, reads)
        reads.flush(tx)
        return alone
    if event.subscriber_id is None:
        return []
    live = reads.live(event)
    starts = reads.starts(tx, event)
    if not live and not starts:
        return []  # most events: nothing waits on them and nothing starts from them
    sub = reads.subscriber(event)
    if sub is None:
        return []
    data = context.event_data(event)

    for enrollment in live:
        if enrollment.trigger_event_id == event.id:
            continue
        loaded = reads.sequence(tx, enrollment)
        if loaded is None:
            continue
        _, definition = loaded
        reason = event_stop_reason(definition, enrollment, event.name, data)
        if reason:
            reads.written(tx, enrollment)
            reads.changed(enrollment, finish(tx, enrollment, "stopped", now, reason=reason))
        elif enrollment.status == "waiting":
            reads.written(tx, enrollment)
            woken = _maybe_wake(tx, definition, enrollment, event, data, now)
            if woken is not None:
                reads.changed(enrollment, woken)

    created: list[str] = []
    for seq in starts:
        definition = reads.definition(seq)
        decision = decide(tx, seq, definition, sub, event, data, reads.key_taken)
        if decision.enroll:
            enrollment, history = enroll(seq, definition, sub, event, data, decision, now)
            reads.enrolled(enrollment, history)
            created.append(enrollment.id)
    return created


def _maybe_wake(
    tx: Tx,
    definition: sequences.Definition,
    enrollment: Enrollment,
    event: Event,
    data: dict[str, Any],
    now: datetime,
) -> Enrollment | None:
    """The run woken by this event (written), or None if it does not wait for it."""
    node = definition.nodes.get(enrollment.current_node_id or "")
    if node is None or node["type"] != "wait_for_event" or not _wait_matches(node, enrollment, event, data):
        return None
    woken = replace(
        enrollment,
        status="active",
        current_node_id=node.get("next"),
        next_run_at=now,
        updated_at=now,
        context={**enrollment.context, "wait": None},
    )
    enrollment_store.update(tx, woken)
    enrollment_store.record(tx, woken, "event_received", now, node_id=node["id"], detail=event.name)
    return woken


def _wait_matches(node: dict[str, Any], enrollment: Enrollment, event: Event, data: dict[str, Any]) -> bool:
    config = node["config"]
    wait = enrollment.context.get("wait") or {}
    if event.name != config["eventName"] or wait.get("node") != node["id"]:
        return False
    if event.received_at < datetime.fromisoformat(wait["since"]):
        return False
    pf = [filters.PropertyFilter.from_wire(f) for f in config.get("propertyFilters") or []]
    return filters.match(data, pf).ok


# -- stop conditions ------------------------------------------------------------------------------


def stop_event_names(definition: sequences.Definition) -> list[str]:
    names = []
    stop = definition.data.get("stopCondition") or {}
    if stop.get("type") == "event_received":
        names.append(str(stop["value"]))
    if definition.data.get("stopOnOrder"):
        names.append(events.ORDER_PLACED)
    return list(dict.fromkeys(names))


def event_stop_reason(
    definition: sequences.Definition, enrollment: Enrollment, name: str, data: dict[str, Any]
) -> str | None:
    """Why this event (received after enrollment) stops the enrollment, or None."""
    stop = definition.data.get("stopCondition") or {}
    if stop.get("type") == "event_received" and stop.get("value") == name:
        match = stop.get("matchConfig")
        if _event_matches(match, enrollment, data):
            return f"stop condition: {name} received" + (f" ({match['mode']})" if match else "")
    if definition.data.get("stopOnOrder") and name == events.ORDER_PLACED:
        return "the subscriber placed an order"
    return None


def _event_matches(match: dict[str, Any] | None, enrollment: Enrollment, data: dict[str, Any]) -> bool:
    if not match:
        return True  # without a matchConfig, any such event of the subscriber stops the run
    mode = match["mode"]
    entry = enrollment.context.get("event") or {}
    if mode == "event_property":
        for rule in match["rules"]:
            want = filters.resolve(entry, rule["entryFieldPath"])
            got = filters.resolve(data, rule["eventFieldPath"])
            if not want or not any(_same(w, g) for w in want for g in got):
                return False
        return True
    if mode == "event_property_filter":
        pf = [filters.PropertyFilter.from_wire(f) for f in match["propertyFilters"]]
        return filters.match(data, pf).ok
    return True


def _same(a: Any, b: Any) -> bool:
    return a == b or (a is not None and b is not None and str(a) == str(b))


def state_stop_reason(
    tx: Tx, definition: sequences.Definition, enrollment: Enrollment, sub: Subscriber | None
) -> str | None:
    """Stops that depend on who the subscriber is now rather than on a single event."""
    if sub is None:
        return "subscriber deleted"
    if sub.status in SUPPRESSED:
        return f"subscriber {sub.status}"
    stop = definition.data.get("stopCondition") or {}
    kind, value = stop.get("type"), stop.get("value")
    match = stop.get("matchConfig") or {}
    if match.get("mode") == "entry_audience":
        entry = enrollment.context.get("event") or {}
        value = entry.get("tag") if match.get("audience") == "tag" else entry.get("listId")
    if kind in ("has_tag", "does_not_have_tag") and value:
        has = value in sub.tags
        if kind == "has_tag" and has:
            return f"stop condition: subscriber has tag {value!r}"
        if kind == "does_not_have_tag" and not has:
            return f"stop condition: subscriber no longer has tag {value!r}"
    if kind in ("added_to_list", "removed_from_list") and value:
        member = on_list(tx, sub, str(value))
        if kind == "added_to_list" and member:
            return f"stop condition: subscriber is on list {value!r}"
        if kind == "removed_from_list" and not member:
            return f"stop condition: subscriber is not on list {value!r}"
    if kind == "field_changed":
        snap = enrollment.context.get("snapshot") or {}
        field = snap.get("field") or value
        if field:
            now_value = _field(sub, str(field))
            if now_value != snap.get("value") and _field_value_ok(match, now_value):
                return f"stop condition: {field} changed to {now_value!r}"
    return None


def on_list(tx: Tx, sub: Subscriber, ref: str) -> bool:
    """Whether the subscriber is a current member of the list named or identified by `ref`."""
    item = lists.resolve(tx, sub.workspace_id, ref)
    return item is not None and any(
        m.list.id == item.id and m.unsubscribed_at is None
        for m in list_store.memberships(tx, sub.workspace_id, sub.id)
    )


def _field_value_ok(match: dict[str, Any], value: Any) -> bool:
    if match.get("mode") != "field_value":
        return True
    want, op = str(match["value"]), match["operator"]
    text = "" if value is None else str(value)
    if op in ("greater_than", "less_than"):
        try:
            a, b = float(text), float(want)
        except ValueError:
            return False
        return a > b if op == "greater_than" else a < b
    return {
        "equals": text == want,
        "not_equals": text != want,
        "contains": want.lower() in text.lower(),
        "not_contains": want.lower() not in text.lower(),
    }[op]


def stop_reason(
    tx: Tx,
    definition: sequences.Definition,
    enrollment: Enrollment,
    sub: Subscriber | None,
    stop_events: list[Event] | None = None,
) -> str | None:
    """Re-checked before every step, against the stored log, so an order that arrived while the run was
    waiting wins even if the dispatcher has not looked at it yet. `stop_events`: the events of
    stop_event_names since the run was triggered, when the caller has read them already."""
    reason = state_stop_reason(tx, definition, enrollment, sub)
    if reason or sub is None:
        return reason
    names = stop_event_names(definition)
    if not names:
        return None
    if stop_events is None:
        stop_events = event_store.for_subscriber_since(
            tx, enrollment.workspace_id, sub.id, enrollment.trigger_received_at, names
        )
    for event in stop_events:
        if event.id == enrollment.trigger_event_id:
            continue
        reason = event_stop_reason(definition, enrollment, event.name, context.event_data(event))
        if reason:
            return reason
    return None


def finish(
    tx: Tx,
    enrollment: Enrollment,
    status: str,
    now: datetime,
    *,
    reason: str | None = None,
    owner: str | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Enrollment:
    """End a run. A matching_field key is freed so the same value may enroll again later; a one_time key
    stays, which is what one_time means."""
    key = enrollment.dedupe_key if (enrollment.dedupe_key or "").startswith("once:") else None
    done = replace(
        enrollment,
        status=status,
        stop_reason=reason,
        next_run_at=None,
        lease_owner=None,
        lease_until=None,
        dedupe_key=key,
        updated_at=now,
        finished_at=now,
    )
    if owner is not None:
        # LeaseLost if another worker took the run over: what this step wrote (its message) must not commit.
        enrollment_store.update_held(tx, done, owner)
    elif not enrollment_store.update(tx, done):
        return done
    enrollment_store.record(
        tx, done, status, now, node_id=enrollment.current_node_id, detail=reason, into=history
    )
    # sequence.finished / sequence.failed, for webhooks and for flows that start when another ends.
    webhooks.enrollment_finished(tx, done, status, now)
    return done


# -- running steps ----------------------------------------------------------------------------------


@dataclass
class Run:
    """The state of one `advance` call: the enrollment as it evolves, plus what it needs to act."""

    tx: Tx
    seq: Sequence
    definition: sequences.Definition
    enrollment: Enrollment
    sub: Subscriber
    now: datetime
    workspace_cap: tuple[int, int, str] | None = None
    options: Options = DEFAULT_OPTIONS
    reads: batch_reads.BatchReads | None = None
    # The run's subscriber-scoped rows read with its batch; dropped once a step of the run changes them.
    pre: batch_reads.Prefetched | None = None
    # Emails composed before the write transaction (compose_ahead).
    drafts: mail.Drafts | None = None

    def record(self, action: str, node: dict[str, Any], detail: str | None = None) -> None:
        enrollment_store.record(
            self.tx,
            self.enrollment,
            action,
            self.now,
            node_id=node["id"],
            detail=detail,
            into=self.reads.history if self.reads is not None else None,
        )


def advance_batch(
    tx: Tx,
    enrollment_ids: list[str],
    owner: str,
    now: datetime,
    options: Options = DEFAULT_OPTIONS,
    drafts: mail.Drafts | None = None,
) -> list[str]:
    """`advance` for a claimed batch in one transaction, with the rows the steps read fetched set-wise
    first (core/batch_reads.py). If one enrollment raises, the whole call raises: the caller then runs
    the batch one `advance` at a time, so that one failure holds up no other."""
    reads = batch_reads.BatchReads(tx, enrollment_ids, owner, stop_event_names)
    outcomes = [
        advance(tx, enrollment_id, owner, now, options, reads, drafts) for enrollment_id in enrollment_ids
    ]
    enrollment_store.record_many(tx, reads.history)
    return outcomes


def advance(
    tx: Tx,
    enrollment_id: str,
    owner: str,
    now: datetime,
    options: Options = DEFAULT_OPTIONS,
    reads: batch_reads.BatchReads | None = None,
    drafts: mail.Drafts | None = None,
) -> str:
    """Run a claimed enrollment as far as it can go now; return what happened (for logs and tests).
    `reads`: the rows its batch read up front (advance_batch); `drafts`: its emails composed ahead
    (compose_ahead)."""
    if reads is not None:
        enrollment = reads.enrollment(enrollment_id)
    else:
        enrollment = enrollment_store.get_leased(tx, enrollment_id, owner)
    if enrollment is None:
        return "lease lost"
    if reads is not None:
        loaded = reads.sequence(enrollment.workspace_id, enrollment.sequence_id)
        seq, definition = loaded if loaded else (None, None)
    else:
        seq = sequence_store.get(tx, enrollment.workspace_id, enrollment.sequence_id)
        definition = sequences.Definition(seq.definition) if seq else None
    history = reads.history if reads is not None else None
    if seq is None or definition is None or seq.status == "archived":
        finish(
            tx,
            enrollment,
            "cancelled",
            now,
            reason="sequence deleted or archived",
            owner=owner,
            history=history,
        )
        return "cancelled"
    if seq.status == "paused":
        # Paused sequences keep their runs where they are; look again later.
        _save(
            tx,
            replace(enrollment, next_run_at=now + PAUSED_RECHECK, lease_owner=None, lease_until=None),
            owner,
        )
        return "paused"
    pre = reads.take(enrollment) if reads is not None else None
    if pre is not None:
        sub = pre.subscriber
    else:
        sub = subscriber_store.find_by_id(tx, enrollment.workspace_id, enrollment.subscriber_id)
        if sub is not None:
            sub = subscriber_store.with_tags(tx, sub)
    reason = stop_reason(tx, definition, enrollment, sub, pre.stop_events if pre else None)
    if reason:
        finish(tx, enrollment, "stopped", now, reason=reason, owner=owner, history=history)
        return "stopped"
    assert sub is not None
    cap = None
    if definition.data.get("frequencyCapEnabled"):
        if reads is not None:
            cap = reads.frequency_cap(seq.workspace_id)
        else:
            cap = sequence_store.frequency_cap(tx, seq.workspace_id)
    run = Run(tx, seq, definition, enrollment, sub, now, cap, options, reads, pre, drafts)
    for _ in range(MAX_NODES_PER_RUN):
        node_id = run.enrollment.current_node_id
        if node_id is None:
            finish(tx, run.enrollment, "completed", now, owner=owner, history=history)
            return "completed"
        node = definition.nodes.get(node_id)
        if node is None:
            finish(
                tx,
                run.enrollment,
                "failed",
                now,
                reason=f"step {node_id} no longer exists",
                owner=owner,
                history=history,
            )
            return "failed"
        outcome = _execute(run, node)
        if outcome.failure is not None:
            finish(tx, run.enrollment, "failed", now, reason=outcome.failure, owner=owner, history=history)
            return "failed"
        if outcome.exit_reason is not None:
            finish(
                tx,
                run.enrollment,
                "completed" if outcome.exit_reason == "" else "stopped",
                now,
                reason=outcome.exit_reason or None,
                owner=owner,
                history=history,
            )
            return "exited"
        if outcome.wait_until is not None:
            _save(
                tx,
                replace(
                    run.enrollment,
                    status=outcome.status,
                    next_run_at=outcome.wait_until,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                ),
                owner,
            )
            return "waiting"
        run.enrollment = replace(
            run.enrollment,
            current_node_id=outcome.next_node,
            updated_at=now,
            context={**run.enrollment.context, "wait": None, "due": None},
        )
    finish(
        tx,
        run.enrollment,
        "failed",
        now,
        reason="too many steps without a wait (a loop?)",
        owner=owner,
        history=history,
    )
    return "failed"


def record_failure(tx: Tx, enrollment_id: str, owner: str, now: datetime, error: str) -> str:
    """For a run whose step raised even when run alone (a bug, or a stored row the step cannot use): the
    reason goes into its history and the run is tried again with backoff, in a write of its own, rather
    than at every lease expiry; after MAX_STEP_FAILURES it ends failed with the reason. The run's batch
    went on without it."""
    enrollment = enrollment_store.get_leased(tx, enrollment_id, owner)
    if enrollment is None:
        return "lease lost"
    failures = int(enrollment.context.get("failures") or 0) + 1
    reason = f"step {enrollment.current_node_id} failed: {error}"
    if failures >= MAX_STEP_FAILURES:
        finish(
            tx, enrollment, "failed", now, reason=f"gave up after {failures} attempts: {reason}", owner=owner
        )
        return "failed"
    retry_at = now + STEP_RETRY_BASE * 2 ** (failures - 1)
    _save(
        tx,
        replace(
            enrollment,
            context={**enrollment.context, "failures": failures},
            next_run_at=retry_at,
            lease_owner=None,
            lease_until=None,
            updated_at=now,
        ),
        owner,
    )
    enrollment_store.record(
        tx,
        enrollment,
        "error",
        now,
        node_id=enrollment.current_node_id,
        detail=f"{reason}; retry at {retry_at.isoformat()}",
    )
    return "retrying"


def _save(tx: Tx, enrollment: Enrollment, owner: str) -> None:
    enrollment_store.update_held(tx, enrollment, owner)


@dataclass(frozen=True)
class Outcome:
    next_node: str | None = None
    wait_until: datetime | None = None
    status: str = "active"
    exit_reason: str | None = None  # "" exits as completed; a text exits as stopped with that reason
    failure: str | None = None  # the run cannot go on: it ends failed with this reason


def _wait(
    run: Run,
    node: dict[str, Any],
    until: datetime,
    detail: str,
    status: str = "active",
    state: dict[str, Any] | None = None,
) -> Outcome:
    run.enrollment = replace(run.enrollment, context={**run.enrollment.context, **(state or {})})
    run.record("waiting", node, f"{detail} until {until.isoformat()}")
    return Outcome(wait_until=until, status=status)


def _execute(run: Run, node: dict[str, Any]) -> Outcome:
    kind, config = node["type"], node["config"]
    if kind == "delay":
        return _delay(run, node)
    if kind == "email":
        return _email(run, node)
    if kind not in ("condition", "wait_for_event"):
        run.pre = None  # the steps below change the subscriber: later steps of the run read afresh
    if kind == "update_subscriber":
        _update_subscriber(run, config)
        run.record("updated", node)
    elif kind == "add_tag":
        subscribers.tag(run.tx, run.sub, [config["tagName"]], run.now)
        run.record("tagged", node, config["tagName"])
    elif kind == "remove_tag":
        subscribers.untag(run.tx, run.sub, [config["tagName"]], run.now)
        run.record("untagged", node, config["tagName"])
    elif kind in ("add_to_list", "remove_from_list"):
        item = lists.resolve(run.tx, run.sub.workspace_id, config["listId"])
        if item is None:
            run.record("skipped", node, f"list {config['listId']!r} does not exist")
        elif kind == "add_to_list":
            lists.join(run.tx, run.sub.workspace_id, run.sub.id, item, run.now)
            run.record("listed", node, item.name)
        else:
            lists.remove_subscribers(
                run.tx, run.sub.workspace_id, item.id, emails=[], subscriber_ids=[run.sub.id], now=run.now
            )
            run.record("unlisted", node, item.name)
    elif kind == "wait_for_event":
        return _wait_for_event(run, node)
    elif kind == "condition":
        ok, why = _condition(run, config)
        run.record("condition", node, f"{'true' if ok else 'false'}: {why}")
        if ok:
            return Outcome(next_node=node.get("next"))
        if "elseNext" in node:
            return Outcome(next_node=node.get("elseNext"))
        return Outcome(exit_reason=f"condition false: {why}")
    return Outcome(next_node=node.get("next"))


def _delay(run: Run, node: dict[str, Any]) -> Outcome:
    config = node["config"]
    due = run.enrollment.context.get("due") or {}
    if due.get("node") == node["id"]:
        at = datetime.fromisoformat(due["at"])
        if at <= run.now:
            run.record("waited", node)
            return Outcome(next_node=node.get("next"))
        return Outcome(wait_until=at)
    if config.get("mode") == "until_weekday":
        window = schedule.SendingWindow.from_wire(config["window"])
        assert window is not None
        # The subscriber's own zone when asked for; an invalid one falls back to the window's zone.
        tz = run.sub.timezone if config.get("timezoneSource") == "subscriber" else None
        minimum = sequences.duration(config.get("minimumWait") or {})
        at = window.next_opening(run.now + minimum, tz_override=tz)
    else:
        at = schedule.add_delay(
            run.now,
            days=config.get("days", 0),
            hours=config.get("hours", 0),
            minutes=config.get("minutes", 0),
        )
    if at <= run.now:
        return Outcome(next_node=node.get("next"))
    return _wait(run, node, at, "delay", state={"due": {"node": node["id"], "at": at.isoformat()}})


def _wait_for_event(run: Run, node: dict[str, Any]) -> Outcome:
    config = node["config"]
    wait = run.enrollment.context.get("wait") or {}
    if wait.get("node") != node["id"]:
        deadline = run.now + sequences.timeout(config)
        return _wait(
            run,
            node,
            deadline,
            f"for {config['eventName']}",
            status="waiting",
            state={
                "wait": {"node": node["id"], "since": run.now.isoformat(), "deadline": deadline.isoformat()}
            },
        )
    # Woken by the deadline (or early by a retry): did the event arrive without the dispatcher noticing?
    since = datetime.fromisoformat(wait["since"])
    for event in event_store.for_subscriber_since(
        run.tx, run.sub.workspace_id, run.sub.id, since, [config["eventName"]]
    ):
        if _wait_matches(node, run.enrollment, event, context.event_data(event)):
            run.record("event_received", node, event.name)
            return Outcome(next_node=node.get("next"))
    deadline = datetime.fromisoformat(wait["deadline"])
    if run.now < deadline:
        return Outcome(wait_until=deadline, status="waiting")
    run.record("timed_out", node, config["eventName"])
    if config.get("timeoutAction") == "exit":
        return Outcome(exit_reason=f"no {config['eventName']} before the timeout")
    return Outcome(next_node=node.get("timeoutNext", node.get("next")))


def _condition(run: Run, config: dict[str, Any]) -> tuple[bool, str]:
    kind = config["conditionType"]
    sub = run.sub
    if kind in ("has_tag", "does_not_have_tag"):
        has = config["tagName"] in sub.tags
        return (
            has if kind == "has_tag" else not has
        ), f"tag {config['tagName']!r} {'present' if has else 'absent'}"
    if kind == "in_list":
        member = on_list(run.tx, sub, config["listId"])
        return member, f"{'on' if member else 'not on'} list {config['listId']!r}"
    if kind == "event_received":
        since = run.enrollment.trigger_received_at if config.get("activityScope") == "this_sequence" else None
        found = event_store.for_subscriber_since(
            run.tx,
            sub.workspace_id,
            sub.id,
            since or datetime.min.replace(tzinfo=run.now.tzinfo),
            [config["eventName"]],
        )
        found = [e for e in found if e.id != run.enrollment.trigger_event_id]
        return bool(found), f"{config['eventName']} {'received' if found else 'not received'}"
    if kind == "has_phone":
        return bool(sub.phone), "phone " + ("present" if sub.phone else "absent")
    field = str(config["fieldName"])
    data = {
        "subscriber": context.subscriber_data(sub),
        "event": run.enrollment.context.get("event") or {},
        **context.subscriber_data(sub),
    }
    values = filters.resolve(data, field)
    operator = {
        "field_equals": "equals",
        "field_contains": "contains",
        "field_greater_than": "greater_than",
        "field_less_than": "less_than",
    }[kind]
    check = filters.match(
        (values and {"v": values[0]}) or {},
        [filters.PropertyFilter(path="v", operator=operator, value=config.get("fieldValue"))],
    )
    return check.ok, f"{field} {operator} {config.get('fieldValue')!r}: found {values[:1]}"


def _update_subscriber(run: Run, config: dict[str, Any]) -> None:
    changes: dict[str, Any] = {}
    for key, attr in (("firstName", "first_name"), ("lastName", "last_name")):
        if config.get(key):
            changes[attr] = config[key]
    if config.get("status") in ("active", "unsubscribed", "bounced"):
        changes["status"] = config["status"]
        changes["unsubscribed_at"] = run.now if config["status"] == "unsubscribed" else None
    attributes = dict(run.sub.attributes)
    for update in config.get("customAttributeUpdates") or []:
        value, kind = update.get("value"), update.get("valueType")
        if kind == "number" and value is not None:
            value = float(value)
        elif kind == "boolean" and value is not None:
            value = str(value).lower() in ("true", "1", "yes")
        attributes[update["name"]] = value
    if attributes != run.sub.attributes:
        changes["attributes"] = attributes
    if changes:
        run.sub = run.sub.with_changes(**changes, updated_at=run.now)
        subscriber_store.save(run.tx, run.sub)


# -- email steps ------------------------------------------------------------------------------------


def template_context(run: Run) -> dict[str, Any]:
    event = run.enrollment.context.get("event") or {}
    return {
        "subscriber": context.subscriber_data(run.sub),
        "event": event,
        "workspace": {"id": run.seq.workspace_id},
        "sequence": {"id": run.seq.id, "name": run.seq.name},
    }


def _email(run: Run, node: dict[str, Any]) -> Outcome:
    config = node["config"]
    pre = run.pre
    if (
        node["id"] in pre.steps_done
        if pre is not None
        else message_store.exists_for_step(run.tx, run.enrollment.id, node["id"])
    ):
        # Produced by an earlier attempt whose move past the step did not commit: never twice.
        return Outcome(next_node=node.get("next"))
    transactional = bool(config.get("isTransactional"))
    if not run.sub.email:
        run.record("skipped", node, "the subscriber has no email address")
        return Outcome(next_node=node.get("next"))
    window = run.definition.sending_window
    if window is not None:
        tz = run.sub.timezone if run.definition.data.get("useSubscriberTimezone") else None
        opening = window.next_opening(run.now, tz_override=tz)
        if opening > run.now:
            return _wait(run, node, opening, "outside the sending window")
    if not transactional and run.definition.data.get("frequencyCapEnabled") and run.workspace_cap:
        max_emails, window_hours, action = run.workspace_cap
        since = run.now - timedelta(hours=window_hours)
        count, oldest = message_store.count_marketing_since(run.tx, run.sub.workspace_id, run.sub.id, since)
        if count >= max_emails:
            why = f"frequency cap: {count} marketing email(s) in the last {window_hours} h (max {max_emails})"
            if action == "delay" and oldest is not None:
                return _wait(run, node, oldest + timedelta(hours=window_hours), why)
            run.record("skipped", node, why)
            return Outcome(next_node=node.get("next"))
    kind = "transactional" if transactional else "marketing"
    if pre is not None:
        blocked = suppressions.reason_among(pre.suppressions, kind)
    else:
        blocked = suppressions.blocking_reason(run.tx, run.sub.workspace_id, run.sub.email, kind)
    if blocked:
        run.record("skipped", node, f"suppressed: {blocked}")
        return Outcome(next_node=node.get("next"))
    workspace = (
        run.reads.workspace(run.sub.workspace_id)
        if run.reads is not None
        else workspace_store.get_workspace(run.tx, run.sub.workspace_id)
    )
    ctx = template_context(run)
    checkout_id = (ctx["event"] or {}).get("checkoutId")
    if pre is not None:
        snapshot = pre.checkout
    else:
        snapshot = (
            checkout_store.find(run.tx, run.sub.workspace_id, str(checkout_id)) if checkout_id else None
        )
    ctx["checkout"] = context.checkout_data(snapshot) if snapshot else {}
    try:
        draft = mail.compose(
            run.options,
            workspace,
            config,
            ctx,
            to_email=run.sub.email,
            explicit_from=_explicit_from(run.definition, config),
            drafts=run.drafts,
        )
    except render.TemplateError as exc:
        # A stored template that cannot render for this run (saved before the checks at save, or failing
        # only on this subscriber's data): this run fails with the reason; its batch goes on.
        return Outcome(failure=f"step {node['id']}: the email cannot be rendered: {exc}")
    message = draft.message(
        workspace_id=run.sub.workspace_id,
        kind=kind,
        now=run.now,
        subscriber_id=run.sub.id,
        sequence_id=run.seq.id,
        enrollment_id=run.enrollment.id,
        node_id=node["id"],
    )
    mail.queue(run.tx, run.options, message, run.now)
    run.pre = None  # its steps_done no longer holds; should the run come back here, it reads afresh
    run.record("sent", node, draft.rendered.subject)
    return Outcome(next_node=node.get("next"))


def _explicit_from(definition: sequences.Definition, config: dict[str, Any]) -> str | None:
    return mail.named(
        config.get("fromEmail") or definition.data.get("fromEmail"),
        config.get("fromName") or definition.data.get("fromName"),
    )


# Nodes a claimed run passes through without a decision before it reaches an email: a delay it was
# waiting on is over when the run is claimed; one it has not started waiting on yet is not.
_AHEAD_HOPS = 4


def compose_ahead(
    tx: Tx, enrollment_ids: list[str], owner: str, options: Options = DEFAULT_OPTIONS
) -> mail.Drafts:
    """The emails the claimed runs are about to send, composed in a read transaction for the write
    that runs them (`advance_batch(..., drafts=)`), so that a heavy template renders while the single
    writer commits other workspaces' work. Only the plain path is followed (a due delay, then email
    steps); a run that decides something else, or whose inputs change on the way, renders in its write
    as before. Whether a message is stored stays the write's decision alone: at most once per step."""
    drafts = mail.Drafts()
    for enrollment in enrollment_store.get_leased_many(tx, enrollment_ids, owner).values():
        try:
            _compose_run_ahead(tx, enrollment, options, drafts)
        except Exception:
            # Composing ahead only saves the write some work; the write meets and handles any failure.
            log.debug("composing ahead for enrollment %s failed", enrollment.id, exc_info=True)
    return drafts


def _compose_run_ahead(tx: Tx, enrollment: Enrollment, options: Options, drafts: mail.Drafts) -> None:
    seq = sequence_store.get(tx, enrollment.workspace_id, enrollment.sequence_id)
    if seq is None or seq.status != "active":
        return
    definition = sequences.Definition(seq.definition)
    first = definition.nodes.get(enrollment.current_node_id or "")
    if first is None or first["type"] not in ("delay", "email"):
        return
    if first["type"] == "delay" and not _delay_over(enrollment, first):
        return  # a run starting to wait here sends nothing now: no need to read whom it is for
    sub = subscriber_store.find_by_id(tx, enrollment.workspace_id, enrollment.subscriber_id)
    if sub is None or not sub.email:
        return
    to_email = sub.email
    sub = subscriber_store.with_tags(tx, sub)
    workspace = workspace_store.get_workspace(tx, sub.workspace_id)
    node_id = enrollment.current_node_id
    for _ in range(_AHEAD_HOPS):
        node = definition.nodes.get(node_id) if node_id else None
        if node is None or node["type"] not in ("delay", "email"):
            return
        if node["type"] == "delay" and not _delay_over(enrollment, node):
            return  # the run starts waiting here (a new run at its first delay): nothing to send yet
        if node["type"] == "email":
            if message_store.exists_for_step(tx, enrollment.id, node["id"]):
                return
            run = Run(tx, seq, definition, enrollment, sub, enrollment.updated_at)
            ctx = template_context(run)
            checkout_id = (ctx["event"] or {}).get("checkoutId")
            snapshot = checkout_store.find(tx, sub.workspace_id, str(checkout_id)) if checkout_id else None
            ctx["checkout"] = context.checkout_data(snapshot) if snapshot else {}
            mail.compose(
                options,
                workspace,
                node["config"],
                ctx,
                to_email=to_email,
                explicit_from=_explicit_from(definition, node["config"]),
                drafts=drafts,
            )
        node_id = node.get("next")


def _delay_over(enrollment: Enrollment, node: dict[str, Any]) -> bool:
    """Whether a claimed run goes past this delay node now: it was waiting on it, or the delay has no
    length. (A delay until a weekday window may open at once: assumed over, as it always was.)"""
    if (enrollment.context.get("due") or {}).get("node") == node["id"]:
        return True
    config = node["config"]
    if config.get("mode") == "until_weekday":
        return True
    return not any(config.get(unit) for unit in ("days", "hours", "minutes"))


# -- explain ----------------------------------------------------------------------------------------


def explain(tx: Tx, seq: Sequence, sub: Subscriber, *, limit: int = 20) -> dict[str, Any]:
    """Why this subscriber was or was not enrolled in this sequence, and what happened to each run."""
    definition = sequences.Definition(seq.definition)
    sub = subscriber_store.with_tags(tx, sub)
    runs = enrollment_store.for_subscriber(tx, seq.workspace_id, sub.id, seq.id)
    by_event = {r.trigger_event_id: r for r in runs}
    decisions = []
    trigger = definition.trigger_event
    recent = event_store.list_for_subscriber(tx, seq.workspace_id, sub.id, limit=500) if trigger else []
    for event in [e for e in recent if e.name == trigger][:limit]:
        enrolled = by_event.get(event.id)
        if enrolled is not None:
            decisions.append(
                {
                    "eventId": event.id,
                    "occurredAt": _iso(event.occurred_at),
                    "enrolled": True,
                    "enrollmentId": enrolled.id,
                    "reason": "enrolled",
                }
            )
            continue
        decision = decide(tx, seq, definition, sub, event, context.event_data(event))
        reason = decision.reason
        if decision.enroll:
            reason = (
                "the event arrived before the sequence was active"
                if event.received_at < seq.updated_at
                else "not dispatched yet"
            )
        decisions.append(
            {"eventId": event.id, "occurredAt": _iso(event.occurred_at), "enrolled": False, "reason": reason}
        )
    if trigger and not decisions:
        decisions.append(
            {"eventId": None, "enrolled": False, "reason": f"the subscriber has no {trigger} event"}
        )
    return {
        "sequenceId": seq.id,
        "subscriberId": sub.id,
        "trigger": definition.trigger,
        "triggerEvent": trigger,
        "events": decisions,
        "enrollments": [
            {
                "enrollmentId": r.id,
                "status": r.status,
                "stopReason": r.stop_reason,
                "currentNodeId": r.current_node_id,
                "enrolledAt": _iso(r.created_at),
                "history": [
                    {"at": _iso(h.at), "nodeId": h.node_id, "action": h.action, "detail": h.detail}
                    for h in enrollment_store.history(tx, seq.workspace_id, r.id)
                ],
            }
            for r in runs
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def simulate(
    tx: Tx, seq: Sequence, sub: Subscriber | None, event: Event | None, now: datetime
) -> dict[str, Any]:
    """Run a definition against an event on paper: would it enroll, and which steps would run, with the
    emails rendered. Nothing is written."""
    definition = sequences.Definition(seq.definition)
    decision = Decision(False, "no subscriber given")
    if sub is not None and event is not None:
        decision = decide(
            tx,
            replace(seq, status="active", enrollment_paused=False),
            definition,
            sub,
            event,
            context.event_data(event),
        )
    elif sub is not None:
        decision = Decision(False, f"the subscriber has no {definition.trigger_event} event to simulate with")
    path, node_id, seen = [], definition.entry, set()
    data = context.event_data(event) if event else {}
    ctx = {
        "subscriber": context.subscriber_data(sub) if sub else {},
        "event": data,
        "workspace": {"id": seq.workspace_id},
        "sequence": {"id": seq.id, "name": seq.name},
    }
    at = now
    while node_id and node_id not in seen:
        seen.add(node_id)
        node = definition.nodes[node_id]
        step: dict[str, Any] = {"nodeId": node_id, "type": node["type"]}
        if node["type"] == "delay" and node["config"].get("mode") == "duration":
            at = at + sequences.duration(node["config"])
        step["at"] = _iso(at)
        if node["type"] == "email":
            try:
                rendered = render.render_email(node["config"], ctx)
            except render.TemplateError as exc:  # what the step would do: fail the run with this reason
                step["error"] = f"the email cannot be rendered: {exc}"
            else:
                step.update(subject=rendered.subject, html=rendered.html, text=rendered.text)
        path.append(step)
        node_id = node.get("next")
    return {
        "sendsMail": decision.enroll and definition.email_count > 0,
        "enrollment": {
            "wouldEnroll": decision.enroll,
            "reason": decision.reason,
            "eventId": event.id if event else None,
        },
        "readiness": {
            "status": seq.status,
            "ready": seq.status == "active" and definition.entry is not None,
            "emailCount": definition.email_count,
        },
        "path": path,
    }
