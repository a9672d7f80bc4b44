"""Outbound webhooks: endpoints, their signing secrets, one delivery per (endpoint, event) and each
attempt to deliver it. Due deliveries are claimed with a lease (store/leases.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback.store import leases
from cartback.store.db import Tx
from cartback.store.tables import webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_secrets


@dataclass(frozen=True)
class Endpoint:
    id: str
    workspace_id: str
    name: str
    url: str
    events: list[str]
    status: str
    consecutive_failures: int
    failing_since: datetime | None
    auto_disabled_at: datetime | None
    disabled_reason: str | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def with_changes(self, **changes: Any) -> Endpoint:
        return replace(self, **changes)


@dataclass(frozen=True)
class Secret:
    id: str
    workspace_id: str
    endpoint_id: str
    secret: str
    prefix: str
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: str
    workspace_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    # The JSON object queued for it; a row written by other means may hold any JSON value, which the
    # sender refuses for that delivery alone rather than failing the claim that read it.
    payload: Any
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_response_body: str | None
    next_attempt_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Attempt:
    id: str
    workspace_id: str
    delivery_id: str
    attempt: int
    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int | None
    at: datetime


_ENDPOINT_COLUMNS = [f.name for f in fields(Endpoint)]
_SECRET_COLUMNS = [f.name for f in fields(Secret)]
_DELIVERY_COLUMNS = [f.name for f in fields(Delivery)]
_ATTEMPT_COLUMNS = [f.name for f in fields(Attempt)]


def _endpoint(row: Row[Any]) -> Endpoint:
    values = {n: getattr(row, n) for n in _ENDPOINT_COLUMNS}
    values["events"] = list(values["events"] or [])
    return Endpoint(**values)


def _secret(row: Row[Any]) -> Secret:
    return Secret(**{n: getattr(row, n) for n in _SECRET_COLUMNS})


def _delivery(row: Row[Any]) -> Delivery:
    values = {n: getattr(row, n) for n in _DELIVERY_COLUMNS}
    if values["payload"] is None:
        values["payload"] = {}
    return Delivery(**values)


def _attempt(row: Row[Any]) -> Attempt:
    return Attempt(**{n: getattr(row, n) for n in _ATTEMPT_COLUMNS})


# -- endpoints ---------------------------------------------------------------------------------------


def insert_endpoint(tx: Tx, endpoint: Endpoint) -> None:
    tx.execute(webhook_endpoints.insert().values(**{n: getattr(endpoint, n) for n in _ENDPOINT_COLUMNS}))


def save_endpoint(tx: Tx, endpoint: Endpoint) -> None:
    values = {n: getattr(endpoint, n) for n in _ENDPOINT_COLUMNS if n not in ("id", "workspace_id")}
    tx.execute(
        webhook_endpoints.update()
        .where(
            webhook_endpoints.c.id == endpoint.id, webhook_endpoints.c.workspace_id == endpoint.workspace_id
        )
        .values(**values)
    )


def get_endpoint(tx: Tx, workspace_id: str, endpoint_id: str) -> Endpoint | None:
    row = tx.execute(
        sa.select(webhook_endpoints).where(
            webhook_endpoints.c.workspace_id == workspace_id, webhook_endpoints.c.id == endpoint_id
        )
    ).first()
    return None if row is None else _endpoint(row)


def endpoint_by_id(tx: Tx, endpoint_id: str) -> Endpoint | None:
    """For the sender, which works across workspaces."""
    row = tx.execute(sa.select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).first()
    return None if row is None else _endpoint(row)


def list_endpoints(tx: Tx, workspace_id: str, *, enabled_only: bool = False) -> list[Endpoint]:
    query = sa.select(webhook_endpoints).where(webhook_endpoints.c.workspace_id == workspace_id)
    if enabled_only:
        query = query.where(webhook_endpoints.c.status == "enabled")
    rows = tx.execute(query.order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)).all()
    return [_endpoint(r) for r in rows]


def delete_endpoint(tx: Tx, workspace_id: str, endpoint_id: str) -> int:
    """Delete an endpoint with its secrets, deliveries and attempts (children first: SQLite does not
    enforce the cascading foreign keys unless asked to)."""
    delivery_ids = sa.select(webhook_deliveries.c.id).where(webhook_deliveries.c.endpoint_id == endpoint_id)
    tx.execute(webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(delivery_ids)))
    tx.execute(webhook_deliveries.delete().where(webhook_deliveries.c.endpoint_id == endpoint_id))
    tx.execute(webhook_secrets.delete().where(webhook_secrets.c.endpoint_id == endpoint_id))
    return tx.execute(
        webhook_endpoints.delete().where(
            webhook_endpoints.c.workspace_id == workspace_id, webhook_endpoints.c.id == endpoint_id
        )
    ).rowcount


def count_failure(tx: Tx, endpoint_id: str, now: datetime) -> Endpoint | None:
    """One more consecutive failure, counted in SQL so that attempts recorded together all count."""
    tx.execute(
        webhook_endpoints.update()
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(
            consecutive_failures=webhook_endpoints.c.consecutive_failures + 1,
            failing_since=sa.func.coalesce(webhook_endpoints.c.failing_since, now),
            last_failure_at=now,
        )
    )
    return endpoint_by_id(tx, endpoint_id)


def count_success(tx: Tx, endpoint_id: str, now: datetime) -> None:
    tx.execute(
        webhook_endpoints.update()
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(consecutive_failures=0, failing_since=None, last_success_at=now)
    )


# -- secrets -----------------------------------------------------------------------------------------


def insert_secret(tx: Tx, secret: Secret) -> None:
    tx.execute(webhook_secrets.insert().values(**{n: getattr(secret, n) for n in _SECRET_COLUMNS}))


def secrets_for(tx: Tx, endpoint_ids: Sequence[str]) -> dict[str, list[Secret]]:
    """Each endpoint's secrets, oldest first."""
    found: dict[str, list[Secret]] = {i: [] for i in endpoint_ids}
    if not endpoint_ids:
        return found
    rows = tx.execute(
        sa.select(webhook_secrets)
        .where(webhook_secrets.c.endpoint_id.in_(list(endpoint_ids)))
        .order_by(webhook_secrets.c.created_at, webhook_secrets.c.id)
    ).all()
    for row in rows:
        found.setdefault(row.endpoint_id, []).append(_secret(row))
    return found


def delete_secret(tx: Tx, endpoint_id: str, secret_id: str) -> int:
    return tx.execute(
        webhook_secrets.delete().where(
            webhook_secrets.c.endpoint_id == endpoint_id, webhook_secrets.c.id == secret_id
        )
    ).rowcount


# -- deliveries --------------------------------------------------------------------------------------


def insert_delivery(tx: Tx, delivery: Delivery) -> bool:
    """Queue a delivery unless this endpoint already has one for this event; True if it was new. The
    unique (endpoint_id, event_id) constraint backs this up."""
    exists = tx.execute(
        sa.select(webhook_deliveries.c.id).where(
            webhook_deliveries.c.endpoint_id == delivery.endpoint_id,
            webhook_deliveries.c.event_id == delivery.event_id,
        )
    ).first()
    if exists:
        return False
    tx.execute(webhook_deliveries.insert().values(**{n: getattr(delivery, n) for n in _DELIVERY_COLUMNS}))
    return True


def get_delivery(tx: Tx, endpoint_id: str, delivery_id: str) -> Delivery | None:
    row = tx.execute(
        sa.select(webhook_deliveries).where(
            webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.id == delivery_id
        )
    ).first()
    return None if row is None else _delivery(row)


def delivery_by_id(tx: Tx, delivery_id: str) -> Delivery | None:
    row = tx.execute(sa.select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)).first()
    return None if row is None else _delivery(row)


def list_deliveries(tx: Tx, endpoint_id: str, limit: int) -> list[Delivery]:
    """Newest first."""
    rows = tx.execute(
        sa.select(webhook_deliveries)
        .where(webhook_deliveries.c.endpoint_id == endpoint_id)
        .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
        .limit(limit)
    ).all()
    return [_delivery(r) for r in rows]


def schedule(tx: Tx, delivery_id: str, when: datetime, now: datetime) -> None:
    """Make a delivery pending again with its next attempt at `when` (a replay)."""
    tx.execute(
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id == delivery_id)
        .values(status="pending", next_attempt_at=when, updated_at=now)
    )


def cancel_pending(tx: Tx, endpoint_id: str, now: datetime) -> int:
    """Cancel what is still waiting for a disabled endpoint. An attempt in flight records its outcome but
    is not retried (the record checks the status)."""
    return tx.execute(
        webhook_deliveries.update()
        .where(webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == "pending")
        .values(status="cancelled", next_attempt_at=None, updated_at=now)
    ).rowcount


def claim_due(tx: Tx, owner: str, now: datetime, *, lease: timedelta, limit: int) -> list[Delivery]:
    """Lease up to `limit` due deliveries to `owner`, earliest due first. An expired lease (its worker died,
    perhaps after the POST and before recording it) is fair game again: delivery is at least once."""
    claimed = leases.claim(tx, leases.WEBHOOKS, owner, now, lease=lease, limit=limit)
    if not claimed:
        return []
    rows = tx.execute(
        sa.select(webhook_deliveries)
        .where(webhook_deliveries.c.id.in_(claimed))
        .order_by(webhook_deliveries.c.next_attempt_at)
    ).all()
    return [_delivery(r) for r in rows]


def save_outcome(tx: Tx, delivery: Delivery) -> None:
    values = {
        n: getattr(delivery, n) for n in _DELIVERY_COLUMNS if n not in ("id", "workspace_id", "payload")
    }
    tx.execute(webhook_deliveries.update().where(webhook_deliveries.c.id == delivery.id).values(**values))


# -- attempts ----------------------------------------------------------------------------------------


def insert_attempt(tx: Tx, attempt: Attempt) -> None:
    tx.execute(webhook_attempts.insert().values(**{n: getattr(attempt, n) for n in _ATTEMPT_COLUMNS}))


def list_attempts(tx: Tx, delivery_id: str) -> list[Attempt]:
    rows = tx.execute(
        sa.select(webhook_attempts)
        .where(webhook_attempts.c.delivery_id == delivery_id)
        .order_by(webhook_attempts.c.attempt, webhook_attempts.c.at)
    ).all()
    return [_attempt(r) for r in rows]
