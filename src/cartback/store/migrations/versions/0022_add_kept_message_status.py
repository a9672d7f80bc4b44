"""messages.status may be `kept`: a message the outbox transport stored because no mail server is set

Until now such a message was `sent`, which every figure counted as delivered. Existing rows keep their
status: whether an old `sent` row went through SMTP or was only stored is not recorded on the message
(its delivery row names the transport, but rewriting history is not this revision's business).

The values are written out here, not read from cartback.statuses, so that this revision keeps building the
schema it built when later revisions change the statuses. On SQLite, replacing a CHECK rebuilds the table
(batch mode, foreign key enforcement off as in 0018).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BEFORE = ("queued", "sending", "deferred", "sent", "failed", "suppressed", "unknown")
AFTER = ("queued", "sending", "deferred", "sent", "kept", "failed", "suppressed", "unknown")


def _within(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def _replace(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("ck_messages_status", type_="check")
        batch.create_check_constraint("ck_messages_status", _within(values))


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    # A kept message was never handed to a mail server: before this revision the outbox called that
    # `sent`, so that is what it becomes again.
    op.execute("UPDATE messages SET status = 'sent' WHERE status = 'kept'")
    _replace(BEFORE)
