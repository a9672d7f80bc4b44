"""The ledger of applied Segment messages: one row per (workspace, messageId)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import segment_messages


def seen(tx: Tx, workspace_id: str, message_ids: Sequence[str]) -> set[str]:
    """Which of these messageIds were applied before."""
    if not message_ids:
        return set()
    rows = tx.execute(
        sa.select(segment_messages.c.message_id).where(
            segment_messages.c.workspace_id == workspace_id,
            segment_messages.c.message_id.in_(sorted(set(message_ids))),
        )
    ).scalars()
    return set(rows)


def add(tx: Tx, workspace_id: str, applied: Sequence[tuple[str, str]], now: datetime) -> None:
    """Remember (messageId, type) pairs as applied. The primary key makes a concurrent writer applying the
    same message fail with an IntegrityError, so the writer re-runs the job and finds it seen."""
    add_many(tx, [(workspace_id, message_id, kind, now) for message_id, kind in applied])


def add_many(tx: Tx, applied: Sequence[tuple[str, str, str, datetime]]) -> None:
    """`add` for (workspace, messageId, type, received at) rows of several workspaces, one executemany."""
    if not applied:
        return
    tx.execute(
        segment_messages.insert(),
        [
            {"workspace_id": workspace_id, "message_id": message_id, "type": kind, "received_at": now}
            for workspace_id, message_id, kind, now in applied
        ],
    )
