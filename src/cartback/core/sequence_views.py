"""What the Sequenzy API's sequence routes run, each one use case `fn(tx, workspace_id, input, now)`:
saving a definition with what its author should be told, the listings of sequences and enrollments, one
enrollment with its history, a sequence's stats, simulate, explain and the workspace's frequency cap. A
route parses, calls one of these (a write through the group-commit writer, a read through `read`) and
formats. Email figures come from core/analytics, the read model every other surface reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartback import errors
from cartback.core import analytics, automations, sequences
from cartback.store import enrollments as enrollment_store
from cartback.store import events as event_store
from cartback.store import sequences as store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.enrollments import Enrollment as Enrollment
from cartback.store.enrollments import HistoryEntry as HistoryEntry
from cartback.store.sequences import Sequence as Sequence
from cartback.store.subscribers import Subscriber as Subscriber

# -- saving -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    seq: Sequence
    # What the author should know about the definition saved (core/sequences.save_warnings).
    warnings: list[str]


def create(tx: Tx, workspace_id: str, body: dict[str, Any], now: datetime) -> Saved:
    """A new sequence, as a draft, from a Sequenzy definition."""
    seq = sequences.create(tx, workspace_id, body, now)
    return Saved(seq, sequences.save_warnings(tx, workspace_id, seq))


@dataclass(frozen=True)
class Update:
    sequence_id: str
    body: dict[str, Any]


def update(tx: Tx, workspace_id: str, change: Update, now: datetime) -> Saved:
    seq = sequences.update(tx, workspace_id, change.sequence_id, change.body, now)
    return Saved(seq, sequences.save_warnings(tx, workspace_id, seq))


@dataclass(frozen=True)
class StatusChange:
    sequence_id: str
    # active (enable), paused (disable) or archived (delete)
    status: str


def set_status(tx: Tx, workspace_id: str, change: StatusChange, now: datetime) -> Sequence:
    return sequences.set_status(tx, workspace_id, change.sequence_id, change.status, now)


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    status: str | None
    search: str | None
    limit: int
    offset: int


def listing(tx: Tx, workspace_id: str, query: ListQuery, now: datetime) -> tuple[list[Sequence], int]:
    """A page of sequences and how many match in all."""
    return store.listing(
        tx, workspace_id, status=query.status, search=query.search, limit=query.limit, offset=query.offset
    )


def get(tx: Tx, workspace_id: str, sequence_id: str, now: datetime) -> Sequence:
    return sequences.require(tx, workspace_id, sequence_id)


@dataclass(frozen=True)
class EnrollmentQuery:
    sequence_id: str
    status: str | None
    email: str | None
    subscriber_id: str | None
    node_id: str | None
    sort: str
    limit: int
    offset: int


@dataclass(frozen=True)
class EnrollmentPage:
    seq: Sequence
    enrollments: list[Enrollment]
    total: int
    # The subscribers of the page's enrollments, by id.
    subscribers: dict[str, Subscriber]


def _subscribers(tx: Tx, workspace_id: str, ids: list[str]) -> dict[str, Subscriber]:
    return {s.id: s for s in subscriber_store.find_many(tx, workspace_id, subscriber_ids=ids)}


def enrollments(tx: Tx, workspace_id: str, query: EnrollmentQuery, now: datetime) -> EnrollmentPage:
    """A page of a sequence's runs; an email that names nobody matches no run."""
    seq = sequences.require(tx, workspace_id, query.sequence_id)
    sub_id = query.subscriber_id
    if query.email is not None:
        found = subscriber_store.find_by_email(tx, workspace_id, query.email)
        sub_id = found.id if found else "none"
    items, total = enrollment_store.listing(
        tx,
        workspace_id,
        seq.id,
        status=query.status,
        subscriber_id=sub_id,
        node_id=query.node_id,
        sort=query.sort,
        limit=query.limit,
        offset=query.offset,
    )
    return EnrollmentPage(seq, items, total, _subscribers(tx, workspace_id, [e.subscriber_id for e in items]))


@dataclass(frozen=True)
class EnrollmentRef:
    sequence_id: str
    enrollment_id: str


@dataclass(frozen=True)
class EnrollmentView:
    seq: Sequence
    enrollment: Enrollment
    subscribers: dict[str, Subscriber]
    history: list[HistoryEntry]


def enrollment(tx: Tx, workspace_id: str, ref: EnrollmentRef, now: datetime) -> EnrollmentView:
    """One run of the sequence with the steps it went through; a run of another sequence is not found."""
    seq = sequences.require(tx, workspace_id, ref.sequence_id)
    found = enrollment_store.get(tx, workspace_id, ref.enrollment_id)
    if found is None or found.sequence_id != seq.id:
        raise errors.NotFound(f"no enrollment {ref.enrollment_id!r} in this sequence")
    return EnrollmentView(
        seq,
        found,
        _subscribers(tx, workspace_id, [found.subscriber_id]),
        enrollment_store.history(tx, workspace_id, found.id),
    )


@dataclass(frozen=True)
class StatsQuery:
    sequence_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Stats:
    seq: Sequence
    # Email figures of the period, from the read model behind /metrics and /analytics/recovery.
    report: analytics.Report
    # Runs per status; live runs per current node and status; history actions per (node, action).
    counts: dict[str, int]
    by_node: list[tuple[str | None, str, int]]
    history: dict[tuple[str | None, str], int]
    stop_reasons: dict[str, int]


def stats(tx: Tx, workspace_id: str, query: StatsQuery, now: datetime) -> Stats:
    seq = sequences.require(tx, workspace_id, query.sequence_id)
    return Stats(
        seq,
        analytics.report(tx, workspace_id, query.start, query.end, sequence_id=seq.id),
        enrollment_store.counts_by_status(tx, workspace_id, seq.id),
        enrollment_store.counts_by_node(tx, workspace_id, seq.id),
        enrollment_store.history_counts(tx, workspace_id, seq.id),
        enrollment_store.stop_reasons(tx, workspace_id, seq.id),
    )


@dataclass(frozen=True)
class PersonQuery:
    sequence_id: str
    email: str | None
    subscriber_id: str | None
    # simulate only: the event to run it against instead of the latest trigger event
    event_id: str | None = None


def _subscriber_for(tx: Tx, workspace_id: str, query: PersonQuery) -> Subscriber | None:
    if query.email:
        return subscriber_store.find_by_email(tx, workspace_id, query.email)
    if query.subscriber_id:
        return subscriber_store.find_by_id(tx, workspace_id, query.subscriber_id)
    return None


def simulate(tx: Tx, workspace_id: str, query: PersonQuery, now: datetime) -> tuple[Sequence, dict[str, Any]]:
    """The definition run on paper against the person's latest trigger event (or `event_id`); nothing
    is sent or stored."""
    seq = sequences.require(tx, workspace_id, query.sequence_id)
    sub = _subscriber_for(tx, workspace_id, query)
    if (query.email or query.subscriber_id) and sub is None:
        raise errors.NotFound("no such subscriber")
    event = None
    if sub is not None:
        trigger = sequences.Definition(seq.definition).trigger_event
        recent = event_store.list_for_subscriber(tx, workspace_id, sub.id, limit=500)
        wanted = [e for e in recent if (e.id == query.event_id if query.event_id else e.name == trigger)]
        event = wanted[0] if wanted else None
    return seq, automations.simulate(tx, seq, sub, event, now)


def explain(tx: Tx, workspace_id: str, query: PersonQuery, now: datetime) -> dict[str, Any]:
    """Why the person was or was not enrolled, and why each of their runs skipped or stopped a step."""
    seq = sequences.require(tx, workspace_id, query.sequence_id)
    sub = _subscriber_for(tx, workspace_id, query)
    if sub is None:
        raise errors.NotFound("no such subscriber")
    return automations.explain(tx, seq, sub)


# -- frequency cap --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrequencyCap:
    max_emails: int
    window_hours: int
    # skip or delay
    action: str


def frequency_cap(tx: Tx, workspace_id: str, _: None, now: datetime) -> FrequencyCap | None:
    found = store.frequency_cap(tx, workspace_id)
    return None if found is None else FrequencyCap(*found)


def put_frequency_cap(tx: Tx, workspace_id: str, cap: FrequencyCap, now: datetime) -> FrequencyCap:
    store.put_frequency_cap(tx, workspace_id, cap.max_emails, cap.window_hours, cap.action, now)
    return cap


def delete_frequency_cap(tx: Tx, workspace_id: str, _: None, now: datetime) -> None:
    store.delete_frequency_cap(tx, workspace_id)
