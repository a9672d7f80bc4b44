"""What dispatching a batch of events reads and writes, set-wise, so that an event costs no query of its own.

Read once at the start of the batch, one query per kind of row and workspace: the live enrollments of the
batch's subscribers and the dedupe keys their runs hold, the active sequences each (workspace, event name)
starts, and the subscribers concerned. The batch then keeps these current itself as its events enroll,
stop and wake runs: it runs in one transaction, and on PostgreSQL a subscriber's events are dispatched by
one dispatcher at a time (store/timers.py), so nothing else of the dispatcher's changes them meanwhile.

New enrollments and their history rows are held and written with one executemany each when the batch ends,
or as soon as a later event of the batch stops one of them (which updates its row). Nothing else in the
dispatcher's transaction reads them: the hooks (webhooks, attribution) read subscribers, endpoints,
messages and orders.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cartback.core import sequences
from cartback.store import enrollments as enrollment_store
from cartback.store import sequences as sequence_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.enrollments import Enrollment
from cartback.store.events import Event
from cartback.store.sequences import Sequence
from cartback.store.subscribers import Subscriber

# The active sequences each (workspace, event name) starts; may be shared by several batches of one round.
Triggered = dict[tuple[str, str], list[Sequence]]
_Who = tuple[str, str]  # (workspace id, subscriber id)


class DispatchReads:
    def __init__(self, tx: Tx, batch: list[Event], triggered: Triggered | None = None) -> None:
        self.triggered: Triggered = {} if triggered is None else triggered
        self._live: dict[_Who, list[Enrollment]] = defaultdict(list)
        self._keys: set[tuple[str, str]] = set()  # (sequence id, dedupe key) held by a run
        self._subscribers: dict[_Who, Subscriber] = {}
        self._sequences: dict[str, tuple[Sequence, sequences.Definition] | None] = {}
        self._definitions: dict[str, sequences.Definition] = {}
        self._new: list[Enrollment] = []
        self.history: list[dict[str, Any]] = []
        self._unwritten: set[str] = set()  # ids of the runs in _new
        self._load(tx, batch)

    def _load(self, tx: Tx, batch: list[Event]) -> None:
        by_workspace: dict[str, set[str]] = defaultdict(set)
        for event in batch:
            if event.subscriber_id is not None:
                by_workspace[event.workspace_id].add(event.subscriber_id)
        for workspace_id, subscriber_ids in by_workspace.items():
            for run in enrollment_store.live_or_keyed(tx, workspace_id, list(subscriber_ids)):
                if run.status in enrollment_store.LIVE:
                    self._live[(workspace_id, run.subscriber_id)].append(run)
                if run.dedupe_key is not None:
                    self._keys.add((run.sequence_id, run.dedupe_key))
        wanted: dict[str, set[str]] = defaultdict(set)
        for event in batch:
            if event.subscriber_id is not None and self.concerns(tx, event):
                wanted[event.workspace_id].add(event.subscriber_id)
        for workspace_id, subscriber_ids in wanted.items():
            found = subscriber_store.find_many_by_id(tx, workspace_id, sorted(subscriber_ids))
            for sub in found.values():
                self._subscribers[(workspace_id, sub.id)] = sub

    def starts(self, tx: Tx, event: Event) -> list[Sequence]:
        """The active sequences this event starts."""
        if event.historical or event.subscriber_id is None:
            return []
        key = (event.workspace_id, event.name)
        if key not in self.triggered:
            self.triggered[key] = sequence_store.triggered_by(tx, event.workspace_id, event.name)
        return self.triggered[key]

    def concerns(self, tx: Tx, event: Event) -> bool:
        """Whether the engine has anything to do with this event: a run of its subscriber may wait on it or
        stop at it, or it starts a sequence. Most events: neither."""
        if event.subscriber_id is None:
            return False
        return bool(self._live.get((event.workspace_id, event.subscriber_id))) or bool(self.starts(tx, event))

    def live(self, event: Event) -> list[Enrollment]:
        return list(self._live.get((event.workspace_id, event.subscriber_id or ""), ()))

    def subscriber(self, event: Event) -> Subscriber | None:
        return self._subscribers.get((event.workspace_id, event.subscriber_id or ""))

    def sequence(self, tx: Tx, enrollment: Enrollment) -> tuple[Sequence, sequences.Definition] | None:
        if enrollment.sequence_id not in self._sequences:
            seq = sequence_store.get(tx, enrollment.workspace_id, enrollment.sequence_id)
            self._sequences[enrollment.sequence_id] = (seq, self.definition(seq)) if seq else None
        return self._sequences[enrollment.sequence_id]

    def definition(self, seq: Sequence) -> sequences.Definition:
        if seq.id not in self._definitions:
            self._definitions[seq.id] = sequences.Definition(seq.definition)
        return self._definitions[seq.id]

    def key_taken(self, sequence_id: str, key: str) -> bool:
        return (sequence_id, key) in self._keys

    # -- what the batch's events change --

    def written(self, tx: Tx, enrollment: Enrollment) -> None:
        """Called before a run's row is updated: write it first if this batch made it."""
        if enrollment.id in self._unwritten:
            self.flush(tx)

    def enrolled(self, enrollment: Enrollment, history: list[dict[str, Any]]) -> None:
        who = (enrollment.workspace_id, enrollment.subscriber_id)
        self._new.append(enrollment)
        self.history += history
        self._unwritten.add(enrollment.id)
        self._live[who].append(enrollment)
        if enrollment.dedupe_key is not None:
            self._keys.add((enrollment.sequence_id, enrollment.dedupe_key))

    def changed(self, before: Enrollment, after: Enrollment) -> None:
        """A run was stopped or woken (already written)."""
        runs = self._live[(before.workspace_id, before.subscriber_id)]
        runs[:] = [r for r in runs if r.id != before.id]
        if after.status in enrollment_store.LIVE:
            runs.append(after)
        if before.dedupe_key is not None and after.dedupe_key != before.dedupe_key:
            self._keys.discard((before.sequence_id, before.dedupe_key))

    def flush(self, tx: Tx) -> None:
        """Write the enrollments made so far and their history, one executemany each."""
        enrollment_store.insert_many(tx, self._new)
        enrollment_store.record_many(tx, self.history)
        self._new, self.history = [], []
        self._unwritten.clear()
