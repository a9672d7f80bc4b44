"""Connectors (a store platform's webhooks into a workspace) and the ledger of the webhooks they applied.
Secrets are kept as core/connectors.py encrypted them: the store never sees one in the clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from cartback.store.db import Tx
from cartback.store.tables import connector_webhooks, connectors


@dataclass(frozen=True)
class Connector:
    id: str
    workspace_id: str
    platform: str
    name: str
    secret: str
    previous_secret: str | None
    previous_expires_at: datetime | None
    created_at: datetime


def _row(row: sa.Row[tuple[object, ...]]) -> Connector:
    m = row._mapping
    return Connector(
        id=m["id"],
        workspace_id=m["workspace_id"],
        platform=m["platform"],
        name=m["name"],
        secret=m["secret"],
        previous_secret=m["previous_secret"],
        previous_expires_at=m["previous_expires_at"],
        created_at=m["created_at"],
    )


def insert(tx: Tx, connector: Connector) -> None:
    tx.execute(
        connectors.insert().values(
            id=connector.id,
            workspace_id=connector.workspace_id,
            platform=connector.platform,
            name=connector.name,
            secret=connector.secret,
            previous_secret=connector.previous_secret,
            previous_expires_at=connector.previous_expires_at,
            created_at=connector.created_at,
        )
    )


def get(tx: Tx, connector_id: str) -> Connector | None:
    row = tx.execute(sa.select(connectors).where(connectors.c.id == connector_id)).first()
    return _row(row) if row is not None else None


def list_for(tx: Tx, workspace_id: str) -> list[Connector]:
    rows = tx.execute(
        sa.select(connectors)
        .where(connectors.c.workspace_id == workspace_id)
        .order_by(connectors.c.created_at, connectors.c.id)
    ).all()
    return [_row(r) for r in rows]


def set_secrets(
    tx: Tx, connector_id: str, secret: str, previous: str | None, previous_expires_at: datetime | None
) -> None:
    tx.execute(
        connectors.update()
        .where(connectors.c.id == connector_id)
        .values(secret=secret, previous_secret=previous, previous_expires_at=previous_expires_at)
    )


def delete(tx: Tx, workspace_id: str, connector_id: str) -> bool:
    """The connector and its ledger (deleted first: SQLite enforces no cascade unless asked)."""
    found = tx.execute(
        sa.select(connectors.c.id).where(
            connectors.c.id == connector_id, connectors.c.workspace_id == workspace_id
        )
    ).first()
    if found is None:
        return False
    tx.execute(connector_webhooks.delete().where(connector_webhooks.c.connector_id == connector_id))
    tx.execute(connectors.delete().where(connectors.c.id == connector_id))
    return True


def seen(tx: Tx, connector_id: str, webhook_id: str) -> bool:
    row = tx.execute(
        sa.select(connector_webhooks.c.webhook_id).where(
            connector_webhooks.c.connector_id == connector_id,
            connector_webhooks.c.webhook_id == webhook_id,
        )
    ).first()
    return row is not None


def remember(tx: Tx, connector_id: str, webhook_id: str, topic: str, now: datetime) -> None:
    """The primary key makes a concurrent writer applying the same webhook fail with an IntegrityError
    (a race constraint): the writer re-runs the job, which then finds it seen."""
    tx.execute(
        connector_webhooks.insert().values(
            connector_id=connector_id, webhook_id=webhook_id, topic=topic, received_at=now
        )
    )


def count_applied(tx: Tx, connector_id: str) -> int:
    return int(
        tx.execute(
            sa.select(sa.func.count()).where(connector_webhooks.c.connector_id == connector_id)
        ).scalar_one()
    )


def last_received(tx: Tx, workspace_id: str) -> dict[str, datetime]:
    """When each of a workspace's connectors last applied a webhook (connectors that never did are absent)."""
    rows = tx.execute(
        sa.select(connector_webhooks.c.connector_id, sa.func.max(connector_webhooks.c.received_at))
        .join(connectors, connectors.c.id == connector_webhooks.c.connector_id)
        .where(connectors.c.workspace_id == workspace_id)
        .group_by(connector_webhooks.c.connector_id)
    ).all()
    return {r[0]: r[1] for r in rows}
