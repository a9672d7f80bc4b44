"""What the dashboard's pages read, each one use case `fn(tx, workspace_id, input, now)`: a page parses
its query, calls one of these and renders the result. Figures come from core/analytics, the read model
the API's reports use too (docs/analytics.md), so a page never counts on its own; lists and logs come
from store/reports and the other stores, scoped to the workspace."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartback import errors, values
from cartback.core import analytics, automations, context, events, orders, shops, steps
from cartback.core import sequences as core_sequences
from cartback.delivery import render
from cartback.store import deliveries
from cartback.store import enrollments as enrollment_store
from cartback.store import events as event_store
from cartback.store import messages as message_store
from cartback.store import reports as store
from cartback.store import sequences as sequence_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.deliveries import OutboxItem as OutboxItem
from cartback.store.enrollments import Enrollment as Enrollment
from cartback.store.events import Event as Event
from cartback.store.messages import Message as Message
from cartback.store.sequences import Sequence as Sequence
from cartback.store.subscribers import Subscriber as Subscriber


@dataclass(frozen=True)
class Period:
    """[start, end), cut into intervals of `interval` (hour, day, week)."""

    start: datetime
    end: datetime
    interval: str


@dataclass(frozen=True)
class Overview:
    report: analytics.Report
    funnel: analytics.Funnel


def overview(tx: Tx, workspace_id: str, period: Period, now: datetime) -> Overview:
    """The overview's figures: the recovery report (the one behind GET /api/v1/analytics/recovery) and
    the funnel email -> click -> order, both from core/analytics."""
    figures = analytics.report(tx, workspace_id, period.start, period.end, interval=period.interval)
    return Overview(report=figures, funnel=analytics.funnel(tx, workspace_id, figures))


@dataclass(frozen=True)
class FiguresQuery:
    """[start, end) of the API's reports; one sequence (which must exist) or the whole workspace; per
    `interval` in `timezone` too when an interval is given."""

    start: datetime
    end: datetime
    sequence_id: str | None = None
    interval: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Figures:
    report: analytics.Report
    # The sequence asked for, as stored.
    seq: Sequence | None


def figures(tx: Tx, workspace_id: str, query: FiguresQuery, now: datetime) -> Figures:
    """The read behind the API's figures (GET /metrics/sequences/{id}, /metrics/breakdown,
    /analytics/recovery): the same core/analytics report the dashboard's overview reads."""
    seq = None
    if query.sequence_id is not None:
        seq = core_sequences.require(tx, workspace_id, query.sequence_id)
    report = analytics.report(
        tx,
        workspace_id,
        query.start,
        query.end,
        interval=query.interval,
        tz=analytics.zone(query.timezone),
        sequence_id=seq.id if seq else None,
    )
    return Figures(report, seq)


@dataclass(frozen=True)
class OutboxQuery:
    status: str | None
    email: str | None
    limit: int
    offset: int
    sequence_id: str | None = None


def outbox(tx: Tx, workspace_id: str, query: OutboxQuery, now: datetime) -> tuple[list[OutboxItem], int]:
    """A page of the workspace's messages, newest first, and how many match."""
    return deliveries.outbox(
        tx,
        workspace_id,
        status=query.status,
        email=query.email,
        sequence_id=query.sequence_id,
        limit=query.limit,
        offset=query.offset,
    )


@dataclass(frozen=True)
class Delivery:
    item: OutboxItem
    attempts: list[dict[str, Any]]


def delivery(tx: Tx, workspace_id: str, message_id: str, now: datetime) -> Delivery | None:
    """One message of the workspace as sent, with every delivery attempt; None for any other id."""
    item = deliveries.outbox_item(tx, workspace_id, message_id)
    return None if item is None else Delivery(item, deliveries.attempts_of(tx, item.message.id))


def last_delivery(tx: Tx, workspace_id: str, _: None, now: datetime) -> dict[str, Any] | None:
    """What the transport last answered for this workspace's mail (Settings' Delivery section)."""
    return deliveries.last_attempt(tx, workspace_id)


def message_item(tx: Tx, workspace_id: str, message_id: str, now: datetime) -> OutboxItem:
    """One message of the workspace with its delivery state; a 404 for any other id."""
    item = deliveries.outbox_item(tx, workspace_id, message_id)
    if item is None:
        raise errors.NotFound(f"No message {message_id!r} in this workspace.")
    return item


@dataclass(frozen=True)
class MessageView:
    item: OutboxItem
    attempts: list[dict[str, Any]]
    # The email.* events (sent, opened, clicked, ...) that name the message, oldest first.
    tracking: list[Event]
    # In the owner's words: the sequence's name and "Step 1: <subject>" (None for transactional mail).
    sequence_name: str | None = None
    step: str | None = None
    # The orders this email won back (core/analytics.recoveries: what the figures count as recovered).
    recoveries: list[analytics.Recovery] = dataclasses.field(default_factory=list)


def message(tx: Tx, workspace_id: str, message_id: str, now: datetime) -> MessageView:
    item = message_item(tx, workspace_id, message_id, now)
    seq = sequence_store.get(tx, workspace_id, item.message.sequence_id) if item.message.sequence_id else None
    return MessageView(
        item=item,
        attempts=deliveries.attempts_of(tx, item.message.id),
        tracking=store.message_events(tx, workspace_id, item.message.subscriber_id, message_id),
        sequence_name=seq.name if seq else None,
        step=step_name(seq.definition, item.message.node_id) if seq else None,
        recoveries=analytics.recoveries(tx, workspace_id, now, message_id=message_id) if seq else [],
    )


def step_name(definition: dict[str, Any], node_id: str | None) -> str | None:
    """ "Step 1: You left something" for an email node, numbered as the API numbers it."""
    for number, found, subject in analytics.step_order(definition):
        if found == node_id:
            return f"Step {number}: {steps.plain(subject)}"
    return None


@dataclass(frozen=True)
class AbandonedQuery:
    limit: int
    offset: int


def abandoned_checkouts(
    tx: Tx, workspace_id: str, query: AbandonedQuery, now: datetime
) -> tuple[list[analytics.AbandonedCheckout], int]:
    """A page of the abandoned checkouts (the overview's "Abandoned", of all time), newest first: cart,
    value, customer, emails sent, and the order an email won back from it, if one did."""
    return analytics.abandoned_checkouts(tx, workspace_id, now, limit=query.limit, offset=query.offset)


@dataclass(frozen=True)
class PeopleQuery:
    # Matched against the address and name; empty for everyone (then not counted: the total is -1).
    text: str
    limit: int
    offset: int


def people(tx: Tx, workspace_id: str, query: PeopleQuery, now: datetime) -> tuple[list[Subscriber], int]:
    where = subscriber_store.Filter(query=query.text or None)
    found = subscriber_store.search(tx, workspace_id, where, limit=query.limit, offset=query.offset)
    return found, subscriber_store.count(tx, workspace_id, where) if query.text else -1


@dataclass(frozen=True)
class Run:
    enrollment: Enrollment
    sequence_name: str
    steps: list[steps.StepState]
    # The order one of this run's emails won back, if any: the run then reads "recovered", not "stopped".
    recovery: analytics.Recovery | None = None


@dataclass(frozen=True)
class Explained:
    explained: dict[str, Any]
    explained_sequence: Sequence


@dataclass(frozen=True)
class PersonQuery:
    subscriber_id: str
    # The sequence the explain panel answers for, if one is chosen.
    sequence_id: str | None = None


@dataclass(frozen=True)
class Person:
    person: Subscriber
    # The same figures as the subscriber's ordersCount / totalSpent attributes (core/orders.py).
    totals: list[orders.OrderTotals]
    timeline: list[Event]
    runs: list[Run]
    messages: list[Message]
    sequences: list[Sequence]
    explained: dict[str, Any] | None = None
    explained_sequence: Sequence | None = None
    # The person's orders an email won back, newest first (the orders the figures count as recovered).
    recoveries: list[analytics.Recovery] = dataclasses.field(default_factory=list)


def person(tx: Tx, workspace_id: str, query: PersonQuery, now: datetime) -> Person:
    """A person's profile: attributes and tags, order totals, events, each run with where it stands on
    every step, their messages, and (for a chosen sequence) why they were or were not enrolled."""
    sub = subscriber_store.find_by_id(tx, workspace_id, query.subscriber_id)
    if sub is None:
        raise errors.NotFound(f"No person {query.subscriber_id!r} in this workspace.")
    sub = subscriber_store.with_tags(tx, sub)
    runs = enrollment_store.for_subscriber(tx, workspace_id, sub.id)
    seqs = sequence_store.by_ids(tx, workspace_id, sorted({r.sequence_id for r in runs}))
    all_sequences, _ = sequence_store.listing(tx, workspace_id, limit=200)
    sent, _ = message_store.listing(tx, workspace_id, subscriber_id=sub.id, limit=50)
    won = analytics.recoveries(tx, workspace_id, now, subscriber_id=sub.id)
    # Oldest first, so a run that won back several orders names its latest.
    by_run = {r.enrollment_id: r for r in reversed(won) if r.enrollment_id}
    found = Person(
        person=sub,
        totals=orders.totals_for(tx, workspace_id, sub.id),
        timeline=event_store.list_for_subscriber(tx, workspace_id, sub.id, limit=100),
        runs=[
            Run(
                r,
                seqs[r.sequence_id].name if r.sequence_id in seqs else r.sequence_id,
                steps.progress(
                    seqs[r.sequence_id].definition if r.sequence_id in seqs else {},
                    r,
                    enrollment_store.history(tx, workspace_id, r.id),
                ),
                by_run.get(r.id),
            )
            for r in reversed(runs)
        ],
        messages=sent,
        sequences=all_sequences,
        recoveries=won,
    )
    if query.sequence_id is None:
        return found
    why = explain(tx, workspace_id, query, now)
    return dataclasses.replace(found, explained=why.explained, explained_sequence=why.explained_sequence)


def explain(tx: Tx, workspace_id: str, query: PersonQuery, now: datetime) -> Explained:
    """Why the person was or was not enrolled in the chosen sequence, and what happened to each run."""
    seq = sequence_store.get(tx, workspace_id, query.sequence_id) if query.sequence_id else None
    sub = subscriber_store.find_by_id(tx, workspace_id, query.subscriber_id)
    if seq is None or sub is None:
        raise errors.NotFound("No such person or sequence in this workspace.")
    return Explained(automations.explain(tx, seq, sub), seq)


def effective_status(seq: Sequence) -> str:
    """The status an owner reads: an active sequence whose enrollments are paused says so."""
    if seq.status == "active":
        return "paused for new enrollments" if seq.enrollment_paused else "live"
    return seq.status


@dataclass(frozen=True)
class SequenceRow:
    seq: Sequence
    status: str
    enrollments: dict[str, int]
    # Each email step's label and its all-time figures (None before it sent anything).
    steps: list[tuple[str, analytics.Tally | None]]
    # All-time recovered orders and revenue per currency: currency -> [orders, net cents].
    recovered: dict[str, list[int]] = dataclasses.field(default_factory=dict)


def sequences(tx: Tx, workspace_id: str, _: None, now: datetime) -> list[SequenceRow]:
    """The sequences with their runs per status, each email step's all-time figures and the revenue they
    recovered, the same as the API's sequence stats and recovery report without a period."""
    found, _count = sequence_store.listing(tx, workspace_id, limit=200)
    mail = analytics.steps_all_time(tx, workspace_id, now)
    won = analytics.report(tx, workspace_id, analytics.EPOCH, now + values.LATEST_AHEAD).sequences
    counts = store.enrollment_counts(tx, workspace_id, [s.id for s in found])
    return [
        SequenceRow(
            s,
            effective_status(s),
            counts.get(s.id, {}),
            [
                (steps.describe(node), mail.get((s.id, node["id"])))
                for node in s.definition.get("nodes") or []
                if node.get("type") == "email"
            ],
            won[s.id].total.revenue if s.id in won else {},
        )
        for s in found
    ]


@dataclass(frozen=True)
class SequenceQuery:
    sequence_id: str
    # With what a save should tell its author (core/sequences.save_warnings), as after a save.
    warnings: bool = False


@dataclass(frozen=True)
class SequencePage:
    seq: Sequence
    # enrollments: status -> count; steps: each step's label, type, all-time email figures and skips.
    figures: dict[str, Any]
    warnings: list[str]


def sequence(tx: Tx, workspace_id: str, query: SequenceQuery, now: datetime) -> SequencePage:
    """One sequence and the all-time figures of each step, from the read model the API's stats give;
    email steps are numbered as the API numbers them (core/analytics.step_order)."""
    seq = sequence_store.get(tx, workspace_id, query.sequence_id)
    if seq is None:
        raise errors.NotFound(f"No sequence {query.sequence_id!r} in this workspace.")
    mail = analytics.steps_all_time(tx, workspace_id, now, sequence_id=seq.id)
    history = enrollment_store.history_counts(tx, workspace_id, seq.id)
    numbers = {node_id: number for number, node_id, _ in analytics.step_order(seq.definition)}
    figures = {
        "enrollments": store.enrollment_counts(tx, workspace_id, [seq.id]).get(seq.id, {}),
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
    return SequencePage(
        seq, figures, core_sequences.save_warnings(tx, workspace_id, seq) if query.warnings else []
    )


@dataclass(frozen=True)
class PreviewQuery:
    # The event the sequence starts on ("" when it starts otherwise) and the sequence's name.
    trigger_event: str
    sequence_name: str


def preview_context(
    tx: Tx, workspace_id: str, query: PreviewQuery, now: datetime
) -> tuple[dict[str, Any], str]:
    """What the editor's preview renders a step against: the newest event of the trigger in this
    workspace and its person, else a sample checkout. The template context and a line saying which."""
    # Sent mail always has an unsubscribe link; the preview shows one too (each message signs its own).
    identity = {
        **shops.template_identity(tx, workspace_id),
        "unsubscribe_url": render.SAMPLE_CONTEXT["unsubscribe_url"],
        "unsubscribeUrl": render.SAMPLE_CONTEXT["unsubscribe_url"],
    }
    trigger = query.trigger_event.strip()
    event = store.latest_event(tx, workspace_id, events.canonical_name(trigger)) if trigger else None
    if event is not None:
        sub = (
            subscriber_store.find_by_id(tx, workspace_id, event.subscriber_id)
            if event.subscriber_id
            else None
        )
        return (
            {
                "subscriber": context.subscriber_data(subscriber_store.with_tags(tx, sub)) if sub else {},
                "event": context.event_data(event),
                "checkout": {},
                **identity,
                "sequence": {"name": query.sequence_name},
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
            "sequence": {"name": query.sequence_name},
        },
        "Rendered against a sample checkout (no matching event in this workspace yet).",
    )


@dataclass(frozen=True)
class EventQuery:
    name: str | None
    source: str | None
    # The address of the person whose events are wanted; empty for everyone's.
    person: str
    limit: int
    # Only events stored after this one (the rows a live page does not show yet).
    after: str | None = None


@dataclass(frozen=True)
class EventLog:
    events: list[Event]
    # subscriber id -> address, for the people the events name
    emails: dict[str, str | None]
    # The query named a person this workspace does not know (and so nothing was read).
    unknown_person: bool


def event_log(tx: Tx, workspace_id: str, query: EventQuery, now: datetime) -> EventLog:
    """The workspace's events, newest first, filtered by name, source or person."""
    subscriber_id = None
    if query.person.strip():
        subscriber_id = store.subscriber_id_by_email(tx, workspace_id, query.person)
        if subscriber_id is None:
            return EventLog([], {}, unknown_person=True)
    found = store.event_log(
        tx,
        workspace_id,
        name=query.name,
        source=query.source,
        subscriber_id=subscriber_id,
        after=query.after,
        limit=query.limit,
    )
    people = subscriber_store.find_many(
        tx, workspace_id, subscriber_ids=[e.subscriber_id for e in found if e.subscriber_id]
    )
    return EventLog(found, {p.id: p.email for p in people}, unknown_person=False)
