"""Transactional templates (slug unique per workspace) and the idempotency keys of transactional sends,
which live on `message_delivery` (unique per workspace, by constraint)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback.store.db import Tx
from cartback.store.tables import message_delivery, messages, transactional_templates


@dataclass(frozen=True)
class Template:
    id: str
    workspace_id: str
    slug: str
    name: str
    subject: str
    preview_text: str | None
    html: str | None
    text: str | None
    from_email: str | None
    created_at: datetime
    updated_at: datetime

    def with_changes(self, **changes: Any) -> Template:
        return replace(self, **changes)


_COLUMNS = [f.name for f in fields(Template)]


def _from_row(row: Row[Any]) -> Template:
    return Template(**{n: getattr(row, n) for n in _COLUMNS})


def insert(tx: Tx, template: Template) -> None:
    tx.execute(transactional_templates.insert().values(**{n: getattr(template, n) for n in _COLUMNS}))


def save(tx: Tx, template: Template) -> None:
    tx.execute(
        transactional_templates.update()
        .where(
            transactional_templates.c.workspace_id == template.workspace_id,
            transactional_templates.c.id == template.id,
        )
        .values(**{n: getattr(template, n) for n in _COLUMNS if n not in ("id", "workspace_id")})
    )


def delete(tx: Tx, workspace_id: str, template_id: str) -> bool:
    result = tx.execute(
        transactional_templates.delete().where(
            transactional_templates.c.workspace_id == workspace_id,
            transactional_templates.c.id == template_id,
        )
    )
    return bool(result.rowcount)


def find(tx: Tx, workspace_id: str, id_or_slug: str) -> Template | None:
    """By id or by slug; an id never looks like a slug of another template (ids carry the `txt_` prefix
    and slugs are lower-case)."""
    row = tx.execute(
        sa.select(transactional_templates).where(
            transactional_templates.c.workspace_id == workspace_id,
            sa.or_(transactional_templates.c.id == id_or_slug, transactional_templates.c.slug == id_or_slug),
        )
    ).first()
    return None if row is None else _from_row(row)


def listing(tx: Tx, workspace_id: str, *, search: str | None = None, order: str = "desc") -> list[Template]:
    query = sa.select(transactional_templates).where(transactional_templates.c.workspace_id == workspace_id)
    if search:
        needle = search.lower()
        query = query.where(
            sa.or_(
                sa.func.lower(transactional_templates.c.name).contains(needle, autoescape=True),
                transactional_templates.c.slug.contains(needle, autoescape=True),
            )
        )
    created = transactional_templates.c.created_at
    query = query.order_by(created.asc() if order == "asc" else created.desc(), transactional_templates.c.id)
    return [_from_row(r) for r in tx.execute(query).all()]


# -- idempotency of sends ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyedSend:
    message_id: str
    request_hash: str | None
    status: str


def find_keyed(tx: Tx, workspace_id: str, keys: list[str]) -> dict[str, KeyedSend]:
    """The messages that carry these idempotency keys, by key."""
    rows = tx.execute(
        sa.select(
            message_delivery.c.idempotency_key,
            message_delivery.c.message_id,
            message_delivery.c.request_hash,
            messages.c.status,
        )
        .join(messages, messages.c.id == message_delivery.c.message_id)
        .where(message_delivery.c.workspace_id == workspace_id, message_delivery.c.idempotency_key.in_(keys))
    ).all()
    return {r.idempotency_key: KeyedSend(r.message_id, r.request_hash, r.status) for r in rows}
