"""index events by (workspace_id, id) for the dashboard's event log

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_events_workspace_id_id"), "events", ["workspace_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_workspace_id_id"), table_name="events")
