"""orders.refund_amount_cents: everything refunded so far, never NULL

A full refund used to be stored as a refunded order without an amount (NULL); refunds now accumulate
into this column, so a full refund is its total, and an order without refunds has 0.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE orders SET refund_amount_cents = total_cents "
        "WHERE refund_amount_cents IS NULL AND status = 'refunded'"
    )
    op.execute("UPDATE orders SET refund_amount_cents = 0 WHERE refund_amount_cents IS NULL")
    op.execute("UPDATE orders SET refund_amount_cents = total_cents WHERE refund_amount_cents > total_cents")
    with op.batch_alter_table("orders") as batch:
        batch.alter_column(
            "refund_amount_cents",
            existing_type=sa.BigInteger(),
            nullable=False,
            server_default="0",
        )


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.alter_column(
            "refund_amount_cents", existing_type=sa.BigInteger(), nullable=True, server_default=None
        )
    # Before, no refund was NULL and a full refund of a refunded order was NULL too.
    op.execute("UPDATE orders SET refund_amount_cents = NULL WHERE refund_amount_cents = 0")
    op.execute(
        "UPDATE orders SET refund_amount_cents = NULL "
        "WHERE status = 'refunded' AND refund_amount_cents = total_cents"
    )
