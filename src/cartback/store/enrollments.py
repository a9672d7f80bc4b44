"""Enrollments (a subscriber's run through a sequence) and their history of transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback import ids, statuses
from cartback.store import driver, leases
from cartback.store.db import Tx
from cartback.store.tables import enrollment_history, enrollments

LIVE = statuses.values(statuses.LIVE)


@dataclass(frozen=True)
class Enrollment:
    id: str
    workspace_id: str
    sequence_id: str
    subscriber_id: str
    trigger_event_id: str | None
    trigger_received_at: datetime
    context: dict[str, Any]
    dedupe_key: str | None
    status: str
    current_node_id: str | None
    next_run_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    stop_reason: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    enrollment_id: str
    sequence_id: str
    node_id: str | None
    action: str
    detail: str | None
    at: datetime


_COLUMNS = list(Enrollment.__dataclass_fields__)
_MUTABLE = [n for n in _COLUMNS if n not in ("id", "workspace_id", "created_at")]

# The statements every step runs, built once: building a statement costs more than running it.
_INSERT_HISTORY = enrollment_history.insert()
_GET_LEASED = sa.select(enrollments).where(
    enrollments.c.id == sa.bindparam("id"), leases.held_by(leases.ENROLLMENTS, sa.bindparam("owner"))
)
_UPDATE = (
    enrollments.update()
    .where(
        enrollments.c.workspace_id == sa.bindparam("b_workspace_id"), enrollments.c.id == sa.bindparam("b_id")
    )
    .values({n: sa.bindparam(n) for n in _MUTABLE})
)
_UPDATE_LEASED = _UPDATE.where(leases.held_by(leases.ENROLLMENTS, sa.bindparam("b_owner")))
_GET_LEASED_MANY = sa.select(enrollments).where(
    enrollments.c.id.in_(sa.bindparam("ids", expanding=True)),
    leases.held_by(leases.ENROLLMENTS, sa.bindparam("owner")),
)
# What dispatching a batch of events needs to know of its subscribers' runs: the live ones (an event may stop
# or wake them) and those holding a dedupe key (an event may not enroll again under it). Finished runs keep a
# key only for one_time sequences, so these are few per subscriber.
_LIVE_OR_KEYED = sa.select(enrollments).where(
    enrollments.c.workspace_id == sa.bindparam("workspace_id"),
    enrollments.c.subscriber_id.in_(sa.bindparam("ids", expanding=True)),
    sa.or_(enrollments.c.status.in_(LIVE), enrollments.c.dedupe_key.is_not(None)),
)


def _from_row(row: Row[Any]) -> Enrollment:
    return Enrollment(**{name: getattr(row, name) for name in _COLUMNS})


def insert(tx: Tx, enrollment: Enrollment) -> None:
    insert_many(tx, [enrollment])


_INSERT_MANY = driver.Insert(enrollments, _COLUMNS)


def insert_many(tx: Tx, rows: list[Enrollment]) -> None:
    """New enrollments, with one executemany (on the driver on SQLite: the dispatcher enrolls a batch's
    checkouts at once)."""
    _INSERT_MANY.run(tx, [[getattr(e, n) for n in _COLUMNS] for e in rows])


def exists_with_key(tx: Tx, sequence_id: str, dedupe_key: str) -> bool:
    row = tx.execute(
        sa.select(enrollments.c.id).where(
            enrollments.c.sequence_id == sequence_id, enrollments.c.dedupe_key == dedupe_key
        )
    ).first()
    return row is not None


def get(tx: Tx, workspace_id: str, enrollment_id: str) -> Enrollment | None:
    row = tx.execute(
        sa.select(enrollments).where(
            enrollments.c.workspace_id == workspace_id, enrollments.c.id == enrollment_id
        )
    ).first()
    return None if row is None else _from_row(row)


def get_leased(tx: Tx, enrollment_id: str, owner: str) -> Enrollment | None:
    """The enrollment if `owner` still holds its lease. The scheduler runs work across workspaces; the
    workspace comes from the row it claimed."""
    row = tx.execute(_GET_LEASED, {"id": enrollment_id, "owner": owner}).first()
    return None if row is None else _from_row(row)


def get_leased_many(tx: Tx, enrollment_ids: list[str], owner: str) -> dict[str, Enrollment]:
    """The enrollments among these that `owner` still holds the lease of, by id (one query)."""
    if not enrollment_ids:
        return {}
    rows = tx.execute(_GET_LEASED_MANY, {"ids": enrollment_ids, "owner": owner}).all()
    return {row.id: _from_row(row) for row in rows}


def live_for_subscriber(tx: Tx, workspace_id: str, subscriber_id: str) -> list[Enrollment]:
    rows = tx.execute(
        sa.select(enrollments).where(
            enrollments.c.workspace_id == workspace_id,
            enrollments.c.subscriber_id == subscriber_id,
            enrollments.c.status.in_(LIVE),
        )
    ).all()
    return [_from_row(r) for r in rows]


def live_or_keyed(tx: Tx, workspace_id: str, subscriber_ids: list[str]) -> list[Enrollment]:
    """These subscribers' live enrollments and those holding a dedupe key (one query)."""
    if not subscriber_ids:
        return []
    rows = tx.execute(_LIVE_OR_KEYED, {"workspace_id": workspace_id, "ids": sorted(subscriber_ids)}).all()
    return [_from_row(r) for r in rows]


def for_subscriber(
    tx: Tx, workspace_id: str, subscriber_id: str, sequence_id: str | None = None
) -> list[Enrollment]:
    query = sa.select(enrollments).where(
        enrollments.c.workspace_id == workspace_id, enrollments.c.subscriber_id == subscriber_id
    )
    if sequence_id:
        query = query.where(enrollments.c.sequence_id == sequence_id)
    return [_from_row(r) for r in tx.execute(query.order_by(enrollments.c.created_at)).all()]


def _params(enrollment: Enrollment) -> dict[str, Any]:
    params = {n: getattr(enrollment, n) for n in _MUTABLE}
    params.update(b_workspace_id=enrollment.workspace_id, b_id=enrollment.id)
    return params


def update(tx: Tx, enrollment: Enrollment) -> bool:
    """Write the enrollment's state back (outside the worker: no lease to check)."""
    return tx.execute(_UPDATE, _params(enrollment)).rowcount > 0


def update_held(tx: Tx, enrollment: Enrollment, owner: str) -> None:
    """Write the enrollment's state back while `owner` holds its lease, else `errors.LeaseLost`: a worker
    that lost its lease must not overwrite the work of the one that took over, nor commit what its step
    wrote."""
    leases.write_held(tx, _UPDATE_LEASED, {**_params(enrollment), "b_owner": owner}, enrollment.id)


def record(
    tx: Tx,
    enrollment: Enrollment,
    action: str,
    at: datetime,
    *,
    node_id: str | None = None,
    detail: str | None = None,
    into: list[dict[str, Any]] | None = None,
) -> None:
    """Append a transition to the enrollment's history; with `into`, keep the row there for record_many
    (a batch of steps writes its history in one statement: nothing in a step reads it back)."""
    row = history_row(enrollment, action, at, node_id=node_id, detail=detail)
    if into is not None:
        into.append(row)
    else:
        tx.execute(_INSERT_HISTORY, row)


def history_row(
    enrollment: Enrollment,
    action: str,
    at: datetime,
    *,
    node_id: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """A history row for record_many."""
    return {
        "id": ids.new_id("hist"),
        "workspace_id": enrollment.workspace_id,
        "enrollment_id": enrollment.id,
        "sequence_id": enrollment.sequence_id,
        "node_id": node_id,
        "action": action,
        "detail": detail,
        "at": at,
    }


_HISTORY_COLUMNS = [c.name for c in enrollment_history.columns]
_RECORD_MANY = driver.Insert(enrollment_history, _HISTORY_COLUMNS)


def record_many(tx: Tx, rows: list[dict[str, Any]]) -> None:
    """History rows made by `history_row`, with one executemany."""
    _RECORD_MANY.run(tx, [[row[name] for name in _HISTORY_COLUMNS] for row in rows])


def history(tx: Tx, workspace_id: str, enrollment_id: str) -> list[HistoryEntry]:
    rows = tx.execute(
        sa.select(enrollment_history)
        .where(
            enrollment_history.c.workspace_id == workspace_id,
            enrollment_history.c.enrollment_id == enrollment_id,
        )
        .order_by(enrollment_history.c.at, enrollment_history.c.id)
    ).all()
    return [
        HistoryEntry(r.id, r.enrollment_id, r.sequence_id, r.node_id, r.action, r.detail, r.at) for r in rows
    ]


def listing(
    tx: Tx,
    workspace_id: str,
    sequence_id: str,
    *,
    status: str | None = None,
    subscriber_id: str | None = None,
    node_id: str | None = None,
    sort: str = "enrolled_at_desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Enrollment], int]:
    where = [enrollments.c.workspace_id == workspace_id, enrollments.c.sequence_id == sequence_id]
    if status:
        where.append(enrollments.c.status.in_(status.split(",")))
    if subscriber_id:
        where.append(enrollments.c.subscriber_id == subscriber_id)
    if node_id:
        where.append(enrollments.c.current_node_id == node_id)
    order = {
        "enrolled_at_asc": enrollments.c.created_at.asc(),
        "wait_until_asc": enrollments.c.next_run_at.asc(),
        "wait_until_desc": enrollments.c.next_run_at.desc(),
    }.get(sort, enrollments.c.created_at.desc())
    total = tx.execute(sa.select(sa.func.count()).select_from(enrollments).where(*where)).scalar_one()
    rows = tx.execute(
        sa.select(enrollments).where(*where).order_by(order, enrollments.c.id).limit(limit).offset(offset)
    ).all()
    return [_from_row(r) for r in rows], int(total)


def _live_in(workspace_id: str, sequence_id: str, subscriber_ids: list[str] | None) -> list[Any]:
    where = [
        enrollments.c.workspace_id == workspace_id,
        enrollments.c.sequence_id == sequence_id,
        enrollments.c.status.in_(LIVE),
    ]
    if subscriber_ids is not None:
        where.append(enrollments.c.subscriber_id.in_(sorted(set(subscriber_ids))))
    return where


def live_page(
    tx: Tx,
    workspace_id: str,
    sequence_id: str,
    *,
    subscriber_ids: list[str] | None = None,
    after_id: str | None = None,
    limit: int,
) -> list[Enrollment]:
    """Live enrollments of a sequence (of these subscribers, if given) in id order, after `after_id`:
    pages that hold still while earlier pages are cancelled."""
    where = _live_in(workspace_id, sequence_id, subscriber_ids)
    if after_id is not None:
        where.append(enrollments.c.id > after_id)
    rows = tx.execute(sa.select(enrollments).where(*where).order_by(enrollments.c.id).limit(limit)).all()
    return [_from_row(r) for r in rows]


def count_live(
    tx: Tx, workspace_id: str, sequence_id: str, *, subscriber_ids: list[str] | None = None
) -> int:
    where = _live_in(workspace_id, sequence_id, subscriber_ids)
    return int(tx.execute(sa.select(sa.func.count()).select_from(enrollments).where(*where)).scalar_one())


def counts_by_status(tx: Tx, workspace_id: str, sequence_id: str) -> dict[str, int]:
    rows = tx.execute(
        sa.select(enrollments.c.status, sa.func.count())
        .where(enrollments.c.workspace_id == workspace_id, enrollments.c.sequence_id == sequence_id)
        .group_by(enrollments.c.status)
    ).all()
    return {status: int(n) for status, n in rows}


def counts_by_node(tx: Tx, workspace_id: str, sequence_id: str) -> list[tuple[str | None, str, int]]:
    rows = tx.execute(
        sa.select(enrollments.c.current_node_id, enrollments.c.status, sa.func.count())
        .where(
            enrollments.c.workspace_id == workspace_id,
            enrollments.c.sequence_id == sequence_id,
            enrollments.c.status.in_(LIVE),
        )
        .group_by(enrollments.c.current_node_id, enrollments.c.status)
    ).all()
    return [(node, status, int(n)) for node, status, n in rows]


def stop_reasons(tx: Tx, workspace_id: str, sequence_id: str) -> dict[str, int]:
    rows = tx.execute(
        sa.select(enrollments.c.stop_reason, sa.func.count())
        .where(
            enrollments.c.workspace_id == workspace_id,
            enrollments.c.sequence_id == sequence_id,
            enrollments.c.status.in_(("stopped", "cancelled")),
        )
        .group_by(enrollments.c.stop_reason)
    ).all()
    return {str(reason or "unknown"): int(n) for reason, n in rows}


def history_counts(tx: Tx, workspace_id: str, sequence_id: str) -> dict[tuple[str | None, str], int]:
    rows = tx.execute(
        sa.select(enrollment_history.c.node_id, enrollment_history.c.action, sa.func.count())
        .where(
            enrollment_history.c.workspace_id == workspace_id, enrollment_history.c.sequence_id == sequence_id
        )
        .group_by(enrollment_history.c.node_id, enrollment_history.c.action)
    ).all()
    return {(node, action): int(n) for node, action, n in rows}


def count_by_status(tx: Tx) -> dict[str, int]:
    """Enrollments per status across every workspace: an operator's figure for /metrics, which exposes
    counts only, never a workspace's rows."""
    rows = tx.execute(sa.select(enrollments.c.status, sa.func.count()).group_by(enrollments.c.status)).all()
    return {str(status): int(n) for status, n in rows}
