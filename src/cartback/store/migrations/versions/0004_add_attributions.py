"""add attributions, events.value and the indexes analytics reads

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cartback.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Events recorded before this migration get `value` from a JSON number under properties.value. (New events
# also fall back to totalCents in major units, which needs the currency's exponent: not done in SQL.)
_BACKFILL = {
    "sqlite": (
        "UPDATE events SET value = json_extract(properties, '$.value') "
        "WHERE json_type(properties, '$.value') IN ('integer', 'real')"
    ),
    "postgresql": (
        "UPDATE events SET value = (properties->>'value')::double precision "
        "WHERE jsonb_typeof(properties->'value') = 'number'"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("value", sa.Double(), nullable=True))
    op.execute(_BACKFILL[op.get_bind().dialect.name])
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_workspace_id_name_occurred_at"))
        batch_op.create_index(
            batch_op.f("ix_events_workspace_id_name_occurred_at_subscriber_id_value"),
            ["workspace_id", "name", "occurred_at", "subscriber_id", "value"],
            unique=False,
        )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_messages_workspace_id_sequence_id_created_at"),
            ["workspace_id", "sequence_id", "created_at"],
            unique=False,
        )

    op.create_table(
        "attributions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("order_event_id", sa.String(length=40), nullable=False),
        sa.Column("subscriber_id", sa.String(length=40), nullable=False),
        sa.Column("sequence_id", sa.String(length=40), nullable=False),
        sa.Column("enrollment_id", sa.String(length=40), nullable=True),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("touched_at", UTCDateTime(), nullable=False),
        sa.Column("ordered_at", UTCDateTime(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("attributed_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_attributions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attributions")),
        sa.UniqueConstraint("workspace_id", "order_id", name=op.f("uq_attributions_workspace_id_order_id")),
    )
    with op.batch_alter_table("attributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attributions_order_event_id"), ["order_event_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_attributions_workspace_id_ordered_at"),
            ["workspace_id", "ordered_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_attributions_workspace_id_sequence_id_ordered_at"),
            ["workspace_id", "sequence_id", "ordered_at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("attributions")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_workspace_id_sequence_id_created_at"))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_workspace_id_name_occurred_at_subscriber_id_value"))
        batch_op.create_index(
            batch_op.f("ix_events_workspace_id_name_occurred_at"),
            ["workspace_id", "name", "occurred_at"],
            unique=False,
        )
        batch_op.drop_column("value")
