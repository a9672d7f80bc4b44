"""Sequence rows: the definition document plus the columns the dispatcher looks sequences up by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback.store.db import Tx
from cartback.store.tables import frequency_caps, sequences


@dataclass(frozen=True)
class Sequence:
    id: str
    workspace_id: str
    name: str
    description: str | None
    status: str
    trigger: str
    trigger_event: str | None
    definition: dict[str, Any]
    enrollment_paused: bool
    revision: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = list(Sequence.__dataclass_fields__)


def _from_row(row: Row[Any]) -> Sequence:
    return Sequence(**{name: getattr(row, name) for name in _COLUMNS})


def insert(tx: Tx, seq: Sequence) -> None:
    tx.execute(sequences.insert().values(**{name: getattr(seq, name) for name in _COLUMNS}))


def save(tx: Tx, seq: Sequence) -> None:
    values = {
        name: getattr(seq, name) for name in _COLUMNS if name not in ("id", "workspace_id", "created_at")
    }
    tx.execute(
        sequences.update()
        .where(sequences.c.workspace_id == seq.workspace_id, sequences.c.id == seq.id)
        .values(**values)
    )


_GET = sa.select(sequences).where(
    sequences.c.workspace_id == sa.bindparam("workspace_id"), sequences.c.id == sa.bindparam("id")
)


def get(tx: Tx, workspace_id: str, sequence_id: str) -> Sequence | None:
    row = tx.execute(_GET, {"workspace_id": workspace_id, "id": sequence_id}).first()
    return None if row is None else _from_row(row)


def delete(tx: Tx, workspace_id: str, sequence_id: str) -> bool:
    result = tx.execute(
        sequences.delete().where(sequences.c.workspace_id == workspace_id, sequences.c.id == sequence_id)
    )
    return result.rowcount > 0


def listing(
    tx: Tx,
    workspace_id: str,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Sequence], int]:
    where = [sequences.c.workspace_id == workspace_id]
    if status:
        where.append(sequences.c.status == status)
    if search:
        where.append(sequences.c.name.ilike(f"%{search}%"))
    total = tx.execute(sa.select(sa.func.count()).select_from(sequences).where(*where)).scalar_one()
    rows = tx.execute(
        sa.select(sequences)
        .where(*where)
        .order_by(sequences.c.created_at.desc(), sequences.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [_from_row(r) for r in rows], int(total)


def triggered_by(tx: Tx, workspace_id: str, event_name: str) -> list[Sequence]:
    """Active sequences accepting enrollments whose trigger is this event."""
    rows = tx.execute(
        sa.select(sequences)
        .where(
            sequences.c.workspace_id == workspace_id,
            sequences.c.status == "active",
            sequences.c.trigger_event == event_name,
            sequences.c.enrollment_paused.is_(False),
        )
        .order_by(sequences.c.id)
    ).all()
    return [_from_row(r) for r in rows]


def by_ids(tx: Tx, workspace_id: str, ids: list[str]) -> dict[str, Sequence]:
    if not ids:
        return {}
    rows = tx.execute(
        sa.select(sequences).where(sequences.c.workspace_id == workspace_id, sequences.c.id.in_(ids))
    ).all()
    return {r.id: _from_row(r) for r in rows}


def frequency_cap(tx: Tx, workspace_id: str) -> tuple[int, int, str] | None:
    """(max emails, window hours, skip|delay), or None when the workspace has no cap."""
    row = tx.execute(sa.select(frequency_caps).where(frequency_caps.c.workspace_id == workspace_id)).first()
    return None if row is None else (int(row.max_emails), int(row.window_hours), str(row.action))


def put_frequency_cap(
    tx: Tx, workspace_id: str, max_emails: int, window_hours: int, action: str, now: datetime
) -> None:
    tx.execute(frequency_caps.delete().where(frequency_caps.c.workspace_id == workspace_id))
    tx.execute(
        frequency_caps.insert().values(
            workspace_id=workspace_id,
            max_emails=max_emails,
            window_hours=window_hours,
            action=action,
            updated_at=now,
        )
    )


def delete_frequency_cap(tx: Tx, workspace_id: str) -> bool:
    return (
        tx.execute(frequency_caps.delete().where(frequency_caps.c.workspace_id == workspace_id)).rowcount > 0
    )
