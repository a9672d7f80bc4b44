"""Subscribers and suppressions keyed by the ASCII form of an internationalised domain

Addresses are now stored and looked up with the domain in its IDNA A-label form (`jane@bücher.example`
is `jane@xn--bcher-kva.example`), so both spellings find the same subscriber and the same suppression.
Rows written before were keyed by the lowercased address as given; those whose key has non-ASCII
characters get the new key here. ASCII keys are unchanged (the new key of an ASCII address is its
lowercase, as before). A row whose new key another row of its workspace already has keeps its old key:
two subscribers are never merged by a migration.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from typing import Any

import email_validator
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _key(address: str) -> str:
    """The new lookup key (as addresses.py computes it, frozen here for this migration)."""
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if text.isascii() or not at:
        return text.lower()
    try:
        parsed = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        return text.lower()
    return f"{local}@{parsed.ascii_domain}".lower()


def _non_ascii(bind: Any) -> str:
    # A key with a character outside ASCII is longer in bytes than in characters.
    if bind.dialect.name == "postgresql":
        return "length(email_key) <> octet_length(email_key)"
    return "length(email_key) <> length(CAST(email_key AS BLOB))"


def _rekey(table: str, unique: tuple[str, ...]) -> None:
    bind = op.get_bind()
    columns = ", ".join(("id", "email", *unique))
    rows = bind.execute(
        sa.text(
            f"SELECT {columns}, email_key FROM {table} WHERE email_key IS NOT NULL AND {_non_ascii(bind)}"
        )
    ).all()
    for row in rows:
        new = _key(row.email or row.email_key)
        if new == row.email_key:
            continue
        same = " AND ".join(f"{c} = :{c}" for c in unique)
        params = {c: getattr(row, c) for c in unique}
        taken = bind.execute(
            sa.text(f"SELECT 1 FROM {table} WHERE {same} AND email_key = :key"), {**params, "key": new}
        ).first()
        if taken is None:
            bind.execute(
                sa.text(f"UPDATE {table} SET email_key = :key WHERE id = :id"), {"key": new, "id": row.id}
            )


def upgrade() -> None:
    _rekey("subscribers", ("workspace_id",))
    _rekey("suppressions", ("workspace_id", "reason"))


def downgrade() -> None:
    # The old keys were the lowercased address as given; an A-label key still finds the row by the
    # A-label spelling, so nothing is undone.
    pass
