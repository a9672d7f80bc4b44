"""Moving everything a subscriber owns to another subscriber, for merging an anonymous profile into the
person it turned out to be."""

from __future__ import annotations

import sqlalchemy as sa

from cartback.store import events as event_store
from cartback.store.db import Tx
from cartback.store.tables import (
    attributions,
    checkouts,
    enrollments,
    events,
    list_members,
    messages,
    orders,
    subscriber_tags,
)

# Rows that name their subscriber and move whole.
_OWNED = (events, checkouts, orders, enrollments, messages, attributions)


def move_rows(tx: Tx, workspace_id: str, from_id: str, to_id: str) -> None:
    """Re-point `from_id`'s events, checkouts, orders, enrollments, messages and attributions to `to_id`,
    and give `to_id` the tags and list memberships it lacks. `from_id`'s own row is left for the caller
    to delete (its remaining tag and list rows go with it)."""
    for table in _OWNED:
        values: dict[str, object] = {"subscriber_id": to_id}
        if "subscriber_key" in table.c:
            # The hash unique-subscriber aggregates count by must follow the subscriber id.
            values["subscriber_key"] = event_store.subscriber_key(to_id)
        tx.execute(
            table.update()
            .where(table.c.workspace_id == workspace_id, table.c.subscriber_id == from_id)
            .values(**values)
        )
    has_tag = sa.select(subscriber_tags.c.tag_id).where(subscriber_tags.c.subscriber_id == to_id)
    tx.execute(
        subscriber_tags.insert().from_select(
            ["workspace_id", "subscriber_id", "tag_id", "created_at"],
            sa.select(
                subscriber_tags.c.workspace_id,
                sa.literal(to_id),
                subscriber_tags.c.tag_id,
                subscriber_tags.c.created_at,
            ).where(
                subscriber_tags.c.workspace_id == workspace_id,
                subscriber_tags.c.subscriber_id == from_id,
                subscriber_tags.c.tag_id.not_in(has_tag),
            ),
        )
    )
    in_list = sa.select(list_members.c.list_id).where(list_members.c.subscriber_id == to_id)
    tx.execute(
        list_members.insert().from_select(
            ["workspace_id", "list_id", "subscriber_id", "subscribed_at", "unsubscribed_at"],
            sa.select(
                list_members.c.workspace_id,
                list_members.c.list_id,
                sa.literal(to_id),
                list_members.c.subscribed_at,
                list_members.c.unsubscribed_at,
            ).where(
                list_members.c.workspace_id == workspace_id,
                list_members.c.subscriber_id == from_id,
                list_members.c.list_id.not_in(in_list),
            ),
        )
    )
