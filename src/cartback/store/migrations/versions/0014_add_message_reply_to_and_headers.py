"""messages.reply_to and messages.headers, for transactional sends that ask for them

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("reply_to", sa.String(length=400), nullable=True))
    op.add_column(
        "messages",
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE messages DROP COLUMN headers")
    op.execute("ALTER TABLE messages DROP COLUMN reply_to")
