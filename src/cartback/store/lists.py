"""Subscriber lists and their memberships. Every function takes the workspace id first: no query runs
unscoped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback.store.db import Tx
from cartback.store.tables import list_members, lists, subscribers


@dataclass(frozen=True)
class SubscriberList:
    id: str
    workspace_id: str
    name: str
    description: str | None
    is_private: bool
    allow_member_unsubscribe: bool
    created_at: datetime
    updated_at: datetime
    # Filled in by list_all only: current members, and those of them whose status is active.
    subscriber_count: int = 0
    active_subscriber_count: int = 0

    def with_changes(self, **changes: Any) -> SubscriberList:
        return replace(self, **changes)


@dataclass(frozen=True)
class Membership:
    list: SubscriberList
    subscribed_at: datetime
    unsubscribed_at: datetime | None


_COLUMNS = (
    "id",
    "workspace_id",
    "name",
    "description",
    "is_private",
    "allow_member_unsubscribe",
    "created_at",
    "updated_at",
)


def _from_row(row: Row[Any]) -> SubscriberList:
    return SubscriberList(**{name: getattr(row, name) for name in _COLUMNS})


def insert(tx: Tx, item: SubscriberList) -> None:
    tx.execute(lists.insert().values(**{name: getattr(item, name) for name in _COLUMNS}))


def save(tx: Tx, item: SubscriberList) -> None:
    tx.execute(
        lists.update()
        .where(lists.c.workspace_id == item.workspace_id, lists.c.id == item.id)
        .values(
            name=item.name,
            description=item.description,
            is_private=item.is_private,
            allow_member_unsubscribe=item.allow_member_unsubscribe,
            updated_at=item.updated_at,
        )
    )


def find_by_id(tx: Tx, workspace_id: str, list_id: str) -> SubscriberList | None:
    row = tx.execute(
        sa.select(lists).where(lists.c.workspace_id == workspace_id, lists.c.id == list_id)
    ).first()
    return None if row is None else _from_row(row)


def find_by_name(tx: Tx, workspace_id: str, name: str) -> SubscriberList | None:
    row = tx.execute(
        sa.select(lists).where(lists.c.workspace_id == workspace_id, lists.c.name == name)
    ).first()
    return None if row is None else _from_row(row)


def delete(tx: Tx, workspace_id: str, list_id: str) -> int:
    """Delete the list; return how many memberships went with it."""
    removed = tx.execute(
        list_members.delete().where(
            list_members.c.workspace_id == workspace_id, list_members.c.list_id == list_id
        )
    ).rowcount
    tx.execute(lists.delete().where(lists.c.workspace_id == workspace_id, lists.c.id == list_id))
    return int(removed)


def list_all(tx: Tx, workspace_id: str) -> list[SubscriberList]:
    """Every list, oldest first, with member counts. Members who left the list are not counted."""
    members = (
        sa.select(
            list_members.c.list_id,
            sa.func.count().label("total"),
            sa.func.sum(sa.case((subscribers.c.status == "active", 1), else_=0)).label("active"),
        )
        .join(subscribers, subscribers.c.id == list_members.c.subscriber_id)
        .where(list_members.c.workspace_id == workspace_id, list_members.c.unsubscribed_at.is_(None))
        .group_by(list_members.c.list_id)
        .subquery()
    )
    rows = tx.execute(
        sa.select(lists, members.c.total, members.c.active)
        .outerjoin(members, members.c.list_id == lists.c.id)
        .where(lists.c.workspace_id == workspace_id)
        .order_by(lists.c.created_at, lists.c.id)
    ).all()
    return [
        replace(_from_row(r), subscriber_count=int(r.total or 0), active_subscriber_count=int(r.active or 0))
        for r in rows
    ]


# -- memberships -----------------------------------------------------------------------------------


def add_member(tx: Tx, workspace_id: str, list_id: str, subscriber_id: str, now: datetime) -> bool:
    """Put the subscriber on the list; True if they were not a current member before. Someone who left
    the list earlier rejoins with a new subscribedAt."""
    row = tx.execute(
        sa.select(list_members.c.unsubscribed_at).where(
            list_members.c.workspace_id == workspace_id,
            list_members.c.list_id == list_id,
            list_members.c.subscriber_id == subscriber_id,
        )
    ).first()
    if row is None:
        tx.execute(
            list_members.insert().values(
                workspace_id=workspace_id, list_id=list_id, subscriber_id=subscriber_id, subscribed_at=now
            )
        )
        return True
    if row.unsubscribed_at is None:
        return False
    tx.execute(
        list_members.update()
        .where(
            list_members.c.workspace_id == workspace_id,
            list_members.c.list_id == list_id,
            list_members.c.subscriber_id == subscriber_id,
        )
        .values(subscribed_at=now, unsubscribed_at=None)
    )
    return True


def remove_members(tx: Tx, workspace_id: str, list_id: str, subscriber_ids: Sequence[str]) -> list[str]:
    """Take the subscribers off the list; return the ids that were members."""
    if not subscriber_ids:
        return []
    where = (
        list_members.c.workspace_id == workspace_id,
        list_members.c.list_id == list_id,
        list_members.c.subscriber_id.in_(list(subscriber_ids)),
    )
    present = list(tx.execute(sa.select(list_members.c.subscriber_id).where(*where)).scalars())
    if present:
        tx.execute(list_members.delete().where(*where))
    return present


def memberships(tx: Tx, workspace_id: str, subscriber_id: str) -> list[Membership]:
    rows = tx.execute(
        sa.select(lists, list_members.c.subscribed_at, list_members.c.unsubscribed_at.label("left_at"))
        .join(list_members, list_members.c.list_id == lists.c.id)
        .where(list_members.c.workspace_id == workspace_id, list_members.c.subscriber_id == subscriber_id)
        .order_by(list_members.c.subscribed_at, lists.c.id)
    ).all()
    return [Membership(_from_row(r), r.subscribed_at, r.left_at) for r in rows]
