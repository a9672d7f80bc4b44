"""Suppressed addresses, one row per (workspace, address, reason)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback import ids
from cartback.store.db import Tx
from cartback.store.subscribers import email_key
from cartback.store.tables import suppressions


@dataclass(frozen=True)
class Suppression:
    id: str
    workspace_id: str
    email: str
    reason: str
    source: str
    detail: str | None
    created_at: datetime


def _from_row(row: Row[Any]) -> Suppression:
    return Suppression(
        row.id, row.workspace_id, row.email, row.reason, row.source, row.detail, row.created_at
    )


def add(
    tx: Tx, workspace_id: str, email: str, reason: str, source: str, now: datetime, detail: str | None = None
) -> bool:
    """Record a suppression; False if the address was already suppressed for that reason."""
    exists = tx.execute(
        sa.select(suppressions.c.id).where(
            suppressions.c.workspace_id == workspace_id,
            suppressions.c.email_key == email_key(email),
            suppressions.c.reason == reason,
        )
    ).first()
    if exists:
        return False
    tx.execute(
        suppressions.insert().values(
            id=ids.new_id("sup"),
            workspace_id=workspace_id,
            email=email.strip(),
            email_key=email_key(email),
            reason=reason,
            source=source,
            detail=detail,
            created_at=now,
        )
    )
    return True


def remove(tx: Tx, workspace_id: str, email: str, reasons: tuple[str, ...] | None = None) -> int:
    query = suppressions.delete().where(
        suppressions.c.workspace_id == workspace_id, suppressions.c.email_key == email_key(email)
    )
    if reasons:
        query = query.where(suppressions.c.reason.in_(reasons))
    return tx.execute(query).rowcount


_FOR_EMAIL = (
    sa.select(suppressions)
    .where(
        suppressions.c.workspace_id == sa.bindparam("workspace_id"),
        suppressions.c.email_key == sa.bindparam("email_key"),
    )
    .order_by(suppressions.c.created_at)
)
_FOR_EMAILS = (
    sa.select(suppressions)
    .where(
        suppressions.c.workspace_id == sa.bindparam("workspace_id"),
        suppressions.c.email_key.in_(sa.bindparam("email_keys", expanding=True)),
    )
    .order_by(suppressions.c.created_at)
)


def for_email(tx: Tx, workspace_id: str, email: str) -> list[Suppression]:
    rows = tx.execute(_FOR_EMAIL, {"workspace_id": workspace_id, "email_key": email_key(email)}).all()
    return [_from_row(r) for r in rows]


def for_emails(tx: Tx, workspace_id: str, emails: list[str]) -> dict[str, list[Suppression]]:
    """for_email for several addresses in one query: {email_key(address): suppressions}."""
    keys = sorted({email_key(e) for e in emails})
    out: dict[str, list[Suppression]] = {k: [] for k in keys}
    if keys:
        for row in tx.execute(_FOR_EMAILS, {"workspace_id": workspace_id, "email_keys": keys}).all():
            out[row.email_key].append(_from_row(row))
    return out


_SORTS = {
    "suppressedAt": suppressions.c.created_at,
    "email": suppressions.c.email_key,
    "status": suppressions.c.reason,
}


def listing(
    tx: Tx,
    workspace_id: str,
    *,
    search: str | None = None,
    reason: str | None = None,
    limit: int = 50,
    offset: int = 0,
    order: str = "desc",
    sort: str = "suppressedAt",
) -> tuple[list[Suppression], int]:
    """A page of suppressions, newest first by default. `sort` is a Sequenzy sort key: suppressedAt,
    email or status (the reason)."""
    where = [suppressions.c.workspace_id == workspace_id]
    if search:
        where.append(suppressions.c.email_key.contains(search.lower(), autoescape=True))
    if reason:
        where.append(suppressions.c.reason == reason)
    total = tx.execute(sa.select(sa.func.count()).select_from(suppressions).where(*where)).scalar_one()
    column = _SORTS.get(sort, suppressions.c.created_at)
    key = column.asc() if order == "asc" else column.desc()
    rows = tx.execute(
        sa.select(suppressions).where(*where).order_by(key, suppressions.c.id).limit(limit).offset(offset)
    ).all()
    return [_from_row(r) for r in rows], int(total)
