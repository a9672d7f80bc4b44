"""Read-only queries for the dashboard pages that are not figures (those are core/analytics, from
store/analytics). Every query is scoped by workspace, and those over a period are bounded by it, so each
runs on an index (workspace_id, time)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cartback.store import events as event_store
from cartback.store.db import Tx
from cartback.store.tables import (
    enrollments,
    events,
    subscribers,
)


def _count(tx: Tx, query: sa.Select[Any]) -> int:
    return int(tx.execute(query).scalar_one())


def event_log(
    tx: Tx,
    workspace_id: str,
    *,
    name: str | None = None,
    source: str | None = None,
    subscriber_id: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[event_store.Event]:
    """The newest events first: by id, which is creation order (ids are time-sortable), on the
    (workspace_id, id) index, so no sort over the workspace's whole log is needed. With `after`, only
    events stored after that one (the rows a live page does not show yet)."""
    where = [events.c.workspace_id == workspace_id]
    if after:
        where.append(events.c.id > after)
    if name:
        where.append(events.c.name == name)
    if source:
        where.append(events.c.source == source)
    if subscriber_id:
        where.append(events.c.subscriber_id == subscriber_id)
    # One person's events: newest by occurrence on their (workspace, subscriber, occurred_at) index, which
    # beats walking the whole workspace's id index for one person.
    order = (events.c.occurred_at.desc(), events.c.id.desc()) if subscriber_id else (events.c.id.desc(),)
    rows = tx.execute(sa.select(events).where(*where).order_by(*order).limit(limit)).all()
    return [event_store.from_row(r) for r in rows]


def message_events(
    tx: Tx, workspace_id: str, subscriber_id: str | None, message_id: str
) -> list[event_store.Event]:
    """email.* events (sent, opened, clicked, ...) that name this message, oldest first."""
    if subscriber_id is None:
        return []
    rows = tx.execute(
        sa.select(events)
        .where(
            events.c.workspace_id == workspace_id,
            events.c.subscriber_id == subscriber_id,
            events.c.name.like("email.%"),
        )
        .order_by(events.c.occurred_at, events.c.id)
        .limit(2000)
    ).all()
    found = [event_store.from_row(r) for r in rows]
    return [e for e in found if e.properties.get("messageId") == message_id]


def subscriber_id_by_email(tx: Tx, workspace_id: str, email: str) -> str | None:
    return tx.execute(
        sa.select(subscribers.c.id).where(
            subscribers.c.workspace_id == workspace_id, subscribers.c.email_key == email.strip().lower()
        )
    ).scalar_one_or_none()


def enrollment_counts(tx: Tx, workspace_id: str, sequence_ids: list[str]) -> dict[str, dict[str, int]]:
    """sequence id -> enrollment status -> count."""
    if not sequence_ids:
        return {}
    rows = tx.execute(
        sa.select(enrollments.c.sequence_id, enrollments.c.status, sa.func.count())
        .where(
            enrollments.c.workspace_id == workspace_id,
            enrollments.c.sequence_id.in_(sorted(set(sequence_ids))),
        )
        .group_by(enrollments.c.sequence_id, enrollments.c.status)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for sequence_id, status, n in rows:
        out.setdefault(sequence_id, {})[status] = int(n)
    return out


def latest_event(tx: Tx, workspace_id: str, name: str) -> event_store.Event | None:
    """The newest event of this name: what the editor previews an email against."""
    row = tx.execute(
        sa.select(events)
        .where(events.c.workspace_id == workspace_id, events.c.name == name)
        .order_by(events.c.occurred_at.desc())
        .limit(1)
    ).first()
    return None if row is None else event_store.from_row(row)
