"""orders.refund_amount_cents: everything refunded so far, never NULL

A full refund used to be stored as a refunded order without an amount (NULL); refunds now accumulate
into this column, so a full refund is its total, and an order without refunds has 0.

A refund event is now keyed by what makes it that refund (`order:<id>:refunded:<hash>`); the one refund
event a Sequenzy push recorded before (`order:<id>:refunded`) takes the key of the refunded amount it
stands for, so the same push sent again is still the same refund.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import hashlib

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
    bind = op.get_bind()
    legacy = bind.execute(
        sa.text(
            "SELECT e.id, o.order_id, o.refund_amount_cents FROM events e JOIN orders o"
            " ON o.workspace_id = e.workspace_id"
            " AND e.idempotency_key = :prefix || o.order_id || :suffix"
            " WHERE e.source = 'sequenzy' AND e.name = 'ecommerce.order_refunded'"
        ),
        {"prefix": "order:", "suffix": ":refunded"},
    ).all()
    for event_id, order_id, refunded in legacy:
        digest = hashlib.sha256(f"sequenzy:total:{refunded}".encode()).hexdigest()[:24]
        bind.execute(
            sa.text("UPDATE events SET idempotency_key = :key WHERE id = :id"),
            {"key": f"order:{order_id}:refunded:{digest}", "id": event_id},
        )


def downgrade() -> None:
    # Refund events keep their keys: several refunds of one order cannot share the old one.
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
