"""Enrollments as the API manages them: cancelling live runs of a sequence, a page at a time.

A cancel request names which live enrollments it means (subscribers, a field of the enrolling event, or
all of them); one call cancels at most a page of them, oldest id first, in one transaction, and says how
many still match, so a caller repeats it while `has_more`. Ids order the pages: a run cancelled by one
call is no longer live, so the next call starts on the next ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cartback import errors
from cartback.core import automations, filters, sequences
from cartback.statuses import EnrollmentStatus
from cartback.store import enrollments as store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.enrollments import Enrollment

# The most enrollments one call cancels (CARTBACK_CANCEL_PAGE_SIZE): one transaction's worth.
PAGE_SIZE = 10_000
# Enrollments read at a time while matching a field of their event, which only Python can do.
_SCAN = 1_000


@dataclass(frozen=True)
class CancelRequest:
    subscriber_ids: list[str] = field(default_factory=list)
    cancel_all: bool = False
    field_path: str | None = None
    field_values: list[str] = field(default_factory=list)
    reason: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class CancelResult:
    sequence_id: str
    # The page as it was before: cancelled now, or with `dry_run` what would be.
    enrollments: list[Enrollment]
    # Matching live enrollments beyond this page: what the next call would take up.
    remaining: int
    emails: dict[str, str | None]
    dry_run: bool

    @property
    def has_more(self) -> bool:
        return self.remaining > 0


def cancel(
    tx: Tx,
    workspace_id: str,
    sequence_id: str,
    request: CancelRequest,
    now: datetime,
    *,
    page_size: int = PAGE_SIZE,
) -> CancelResult:
    """Cancel (or with `dry_run` only list) one page of the live enrollments the request names."""
    by_field = bool(request.field_path and request.field_values)
    if not (request.subscriber_ids or request.cancel_all or by_field):
        raise errors.InvalidInput(
            "say which enrollments: subscriberId(s), fieldPath + fieldValues, or cancelAll"
        )
    seq = sequences.require(tx, workspace_id, sequence_id)
    if request.cancel_all or not by_field:
        # All of them, or the subscribers named: the database selects and counts.
        subscriber_ids = None if request.cancel_all else request.subscriber_ids
        page = store.live_page(tx, workspace_id, seq.id, subscriber_ids=subscriber_ids, limit=page_size)
        remaining = store.count_live(tx, workspace_id, seq.id, subscriber_ids=subscriber_ids) - len(page)
    else:
        page, remaining = _scan(tx, workspace_id, seq.id, _field_match(request), page_size)
    if not request.dry_run:
        reason = request.reason or "cancelled through the API"
        for e in page:
            automations.finish(tx, e, EnrollmentStatus.CANCELLED.value, now, reason=reason)
    subs = subscriber_store.find_many(tx, workspace_id, subscriber_ids=[e.subscriber_id for e in page])
    return CancelResult(
        sequence_id=seq.id,
        enrollments=page,
        remaining=remaining,
        emails={s.id: s.email for s in subs},
        dry_run=request.dry_run,
    )


def _field_match(request: CancelRequest) -> Callable[[Enrollment], bool]:
    """The subscribers named, or a value of the enrolling event's field among those given."""
    named = set(request.subscriber_ids)
    values = set(request.field_values)
    path = request.field_path or ""

    def matches(e: Enrollment) -> bool:
        if e.subscriber_id in named:
            return True
        return any(str(v) in values for v in filters.resolve(e.context.get("event") or {}, path))

    return matches


def _scan(
    tx: Tx,
    workspace_id: str,
    sequence_id: str,
    matches: Callable[[Enrollment], bool],
    page_size: int,
) -> tuple[list[Enrollment], int]:
    """The first page of live enrollments that match, and how many more match after it."""
    page: list[Enrollment] = []
    remaining = 0
    after: str | None = None
    while True:
        chunk = store.live_page(tx, workspace_id, sequence_id, after_id=after, limit=_SCAN)
        for e in chunk:
            if matches(e):
                if len(page) < page_size:
                    page.append(e)
                else:
                    remaining += 1
        if len(chunk) < _SCAN:
            return page, remaining
        after = chunk[-1].id
