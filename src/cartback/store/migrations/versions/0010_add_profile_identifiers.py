"""add profile identifiers: anonymous_id, and lookups by phone

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("anonymous_id", sa.String(length=255), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_subscribers_workspace_id_anonymous_id"), ["workspace_id", "anonymous_id"]
        )
    op.create_index(
        op.f("ix_subscribers_workspace_id_phone"), "subscribers", ["workspace_id", "phone"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_subscribers_workspace_id_phone"), table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint(op.f("uq_subscribers_workspace_id_anonymous_id"), type_="unique")
        batch.drop_column("anonymous_id")
