"""CHECK constraints on messages.status and enrollments.status: only the statuses cartback knows

The values are written out here, not read from cartback.statuses, so that this revision keeps building the
schema it built when later revisions change the statuses.

On SQLite, adding a CHECK rebuilds the table (batch mode). store.db.migrate runs migrations with foreign
key enforcement off, as SQLite's table-rebuild procedure requires: otherwise dropping the old table would
cascade to every row that refers to it (message bodies, deliveries, an enrollment's history).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

MESSAGE_STATUSES = ("queued", "sending", "deferred", "sent", "failed", "suppressed", "unknown")
ENROLLMENT_STATUSES = ("active", "waiting", "completed", "stopped", "cancelled", "failed")


def _within(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.create_check_constraint("ck_messages_status", _within(MESSAGE_STATUSES))
    with op.batch_alter_table("enrollments") as batch:
        batch.create_check_constraint("ck_enrollments_status", _within(ENROLLMENT_STATUSES))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_constraint("ck_enrollments_status", type_="check")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("ck_messages_status", type_="check")
