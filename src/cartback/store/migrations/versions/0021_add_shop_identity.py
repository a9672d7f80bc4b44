"""add workspaces.shop_name and shop_address: the shop's identity in mail and on the unsubscribe page

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("shop_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("shop_address", sa.String(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("shop_address")
        batch.drop_column("shop_name")
