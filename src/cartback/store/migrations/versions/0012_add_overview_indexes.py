"""index checkouts and enrollments by (workspace_id, created_at) for the dashboard's overview

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_checkouts_workspace_id_created_at"),
        "checkouts",
        ["workspace_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_enrollments_workspace_id_created_at_sequence_id"),
        "enrollments",
        ["workspace_id", "created_at", "sequence_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_enrollments_workspace_id_created_at_sequence_id"), table_name="enrollments")
    op.drop_index(op.f("ix_checkouts_workspace_id_created_at"), table_name="checkouts")
