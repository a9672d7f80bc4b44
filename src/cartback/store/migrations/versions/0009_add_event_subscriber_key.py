"""add events.subscriber_key, which metric aggregates count unique subscribers over, and copies of the
order event's value and subscriber_key in attributions

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 5000


def subscriber_key(subscriber_id: str) -> int:
    """As store/events.py computes it for new events (kept here so this migration never changes)."""
    digest = hashlib.blake2b(subscriber_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subscriber_key", sa.BigInteger(), nullable=True))
    # The key is a hash computed in Python (store/events.py), so existing rows are filled in batches.
    conn = op.get_bind()
    events = sa.table(
        "events", sa.column("id"), sa.column("subscriber_id"), sa.column("subscriber_key", sa.BigInteger)
    )
    update = (
        events.update()
        .where(events.c.id == sa.bindparam("b_id"))
        .values(subscriber_key=sa.bindparam("b_key"))
    )
    after = ""
    while True:
        rows = conn.execute(
            sa.select(events.c.id, events.c.subscriber_id)
            .where(events.c.id > after, events.c.subscriber_id.is_not(None))
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        conn.execute(update, [{"b_id": r.id, "b_key": subscriber_key(r.subscriber_id)} for r in rows])
        after = rows[-1].id
    with op.batch_alter_table("attributions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("subscriber_key", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE attributions SET value = (SELECT events.value FROM events "
        "WHERE events.id = attributions.order_event_id), subscriber_key = (SELECT events.subscriber_key "
        "FROM events WHERE events.id = attributions.order_event_id)"
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_workspace_id_name_occurred_at_subscriber_id_value"))
        batch_op.create_index(
            batch_op.f("ix_events_workspace_id_name_occurred_at_subscriber_key_value"),
            ["workspace_id", "name", "occurred_at", "subscriber_key", "value"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("attributions", schema=None) as batch_op:
        batch_op.drop_column("subscriber_key")
        batch_op.drop_column("value")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_workspace_id_name_occurred_at_subscriber_key_value"))
        batch_op.create_index(
            batch_op.f("ix_events_workspace_id_name_occurred_at_subscriber_id_value"),
            ["workspace_id", "name", "occurred_at", "subscriber_id", "value"],
            unique=False,
        )
        batch_op.drop_column("subscriber_key")
