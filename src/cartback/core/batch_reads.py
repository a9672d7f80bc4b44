"""What a batch of claimed enrollments reads before its steps run, fetched set-wise: one query per kind of
row for the whole batch instead of one per enrollment and row (`advance` alone runs about nine reads).

Rows about a subscriber (their row and tags, the events that may stop their runs, their suppressions, the
checkout they enrolled with, which steps of the run already have a message) serve only the first of that
subscriber's enrollments in the batch. That run may change them (tag, update, send), so a later run of the
same subscriber in the batch reads afresh, exactly as it would alone. Sequences, workspaces and frequency
caps, which no step changes, serve the whole batch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from cartback.core import sequences
from cartback.store import checkouts as checkout_store
from cartback.store import enrollments as enrollment_store
from cartback.store import events as event_store
from cartback.store import messages as message_store
from cartback.store import sequences as sequence_store
from cartback.store import subscribers as subscriber_store
from cartback.store import suppressions as suppression_store
from cartback.store import workspaces as workspace_store
from cartback.store.checkouts import Checkout
from cartback.store.db import Tx
from cartback.store.enrollments import Enrollment
from cartback.store.events import Event
from cartback.store.sequences import Sequence
from cartback.store.subscribers import Subscriber
from cartback.store.suppressions import Suppression
from cartback.store.workspaces import Workspace


@dataclass(frozen=True)
class Prefetched:
    """One enrollment's subscriber-scoped rows, as read at the start of the batch."""

    subscriber: Subscriber | None  # with tags; None: deleted
    stop_events: list[Event]  # events of the stop names since the run was triggered, oldest first
    steps_done: frozenset[str]  # node ids of the run that already have a message
    suppressions: list[Suppression]  # for the subscriber's address
    checkout: Checkout | None  # the checkout the run was triggered with


class BatchReads:
    def __init__(self, tx: Tx, enrollment_ids: list[str], owner: str, stop_names: Any) -> None:
        """`stop_names(definition)` gives the event names that may stop a run of that definition."""
        self.tx = tx
        self.enrollments = enrollment_store.get_leased_many(tx, enrollment_ids, owner)
        self._sequences: dict[tuple[str, str], tuple[Sequence, sequences.Definition] | None] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._caps: dict[str, tuple[int, int, str] | None] = {}
        self._taken: set[str] = set()
        self._rows: dict[str, Prefetched] = {}
        # History rows the batch's steps recorded, written together at its end (advance_batch).
        self.history: list[dict[str, Any]] = []
        self._load(stop_names)

    def _load(self, stop_names: Any) -> None:
        by_workspace: dict[str, list[Enrollment]] = defaultdict(list)
        for enrollment in self.enrollments.values():
            by_workspace[enrollment.workspace_id].append(enrollment)
        done: dict[str, set[str]] = defaultdict(set)
        for enrollment_id, node_id in message_store.steps_done(self.tx, list(self.enrollments)):
            done[enrollment_id].add(node_id)
        for workspace_id, runs in by_workspace.items():
            subs = subscriber_store.find_many_with_tags(
                self.tx, workspace_id, sorted({e.subscriber_id for e in runs})
            )
            stops = self._stop_events(workspace_id, runs, stop_names)
            suppressed = suppression_store.for_emails(
                self.tx, workspace_id, [s.email for s in subs.values() if s.email]
            )
            carts = checkout_store.find_many(
                self.tx, workspace_id, sorted({c for e in runs if (c := _checkout_id(e))})
            )
            for e in runs:
                sub = subs.get(e.subscriber_id)
                cid = _checkout_id(e)
                self._rows[e.id] = Prefetched(
                    subscriber=sub,
                    stop_events=[
                        ev
                        for ev in stops.get(e.sequence_id, {}).get(e.subscriber_id, [])
                        if ev.received_at >= e.trigger_received_at
                    ],
                    steps_done=frozenset(done.get(e.id, ())),
                    suppressions=suppressed.get(subscriber_store.email_key(sub.email), [])
                    if sub is not None and sub.email
                    else [],
                    checkout=carts.get(cid) if cid else None,
                )

    def _stop_events(
        self, workspace_id: str, runs: list[Enrollment], stop_names: Any
    ) -> dict[str, dict[str, list[Event]]]:
        """{sequence id: {subscriber id: events}}: one query per distinct set of stop names."""
        by_names: dict[tuple[str, ...], list[Enrollment]] = defaultdict(list)
        for e in runs:
            loaded = self.sequence(e.workspace_id, e.sequence_id)
            if loaded is not None:
                by_names[tuple(stop_names(loaded[1]))].append(e)
        out: dict[str, dict[str, list[Event]]] = {}
        for names, group in by_names.items():
            if not names:
                continue
            found = event_store.for_subscribers_since(
                self.tx,
                workspace_id,
                sorted({e.subscriber_id for e in group}),
                min(e.trigger_received_at for e in group),
                list(names),
            )
            for e in group:
                out.setdefault(e.sequence_id, found)
        return out

    def enrollment(self, enrollment_id: str) -> Enrollment | None:
        """The enrollment as claimed, or None if the lease was lost before the batch began."""
        return self.enrollments.get(enrollment_id)

    def sequence(self, workspace_id: str, sequence_id: str) -> tuple[Sequence, sequences.Definition] | None:
        key = (workspace_id, sequence_id)
        if key not in self._sequences:
            seq = sequence_store.get(self.tx, workspace_id, sequence_id)
            self._sequences[key] = (seq, sequences.Definition(seq.definition)) if seq else None
        return self._sequences[key]

    def workspace(self, workspace_id: str) -> Workspace:
        if workspace_id not in self._workspaces:
            self._workspaces[workspace_id] = workspace_store.get_workspace(self.tx, workspace_id)
        return self._workspaces[workspace_id]

    def frequency_cap(self, workspace_id: str) -> tuple[int, int, str] | None:
        if workspace_id not in self._caps:
            self._caps[workspace_id] = sequence_store.frequency_cap(self.tx, workspace_id)
        return self._caps[workspace_id]

    def take(self, enrollment: Enrollment) -> Prefetched | None:
        """The enrollment's prefetched rows if it is its subscriber's first run in the batch, else None
        (read afresh: an earlier run of the same subscriber may have changed them)."""
        key = f"{enrollment.workspace_id}:{enrollment.subscriber_id}"
        if key in self._taken:
            return None
        self._taken.add(key)
        return self._rows.get(enrollment.id)


def _checkout_id(enrollment: Enrollment) -> str | None:
    value = (enrollment.context.get("event") or {}).get("checkoutId")
    return str(value) if value else None
