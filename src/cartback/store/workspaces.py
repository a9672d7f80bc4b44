"""Workspaces (tenants) and their API keys. Keys are random and stored only as a SHA-256 hash: they carry
enough entropy that a slow KDF would add latency to every request and no safety."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from cartback import errors, ids
from cartback.store.db import Tx

__all__ = ["Tx"]
from cartback.store.tables import api_keys, app_settings, events, sequences, subscribers, users, workspaces

KEY_PREFIX = "cb_"
ALL_SCOPES = ("events:write", "read", "admin")


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    secret: str
    created_at: datetime
    # The workspace's own sender, used when a step names none; None: CARTBACK_FROM.
    from_address: str | None = None
    # The shop's name and footer address line as customers see them; None: the workspace's name, no address.
    shop_name: str | None = None
    shop_address: str | None = None

    @property
    def display_name(self) -> str:
        return self.shop_name or self.name


@dataclass(frozen=True)
class ApiKey:
    id: str
    workspace_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_workspace(tx: Tx, name: str, now: datetime) -> Workspace:
    if tx.execute(sa.select(workspaces.c.id).where(workspaces.c.name == name)).first():
        raise errors.Conflict(f"a workspace named {name!r} already exists")
    ws = Workspace(ids.new_id("ws"), name, secrets.token_urlsafe(32), now)
    tx.execute(workspaces.insert().values(id=ws.id, name=ws.name, secret=ws.secret, created_at=now))
    return ws


def get_workspace_by_name(tx: Tx, name: str) -> Workspace:
    row = tx.execute(sa.select(workspaces).where(workspaces.c.name == name)).first()
    if row is None:
        raise errors.NotFound(f"no workspace named {name!r}")
    return _workspace(row)


_GET_WORKSPACE = sa.select(workspaces).where(workspaces.c.id == sa.bindparam("id"))


def get_workspace(tx: Tx, workspace_id: str) -> Workspace:
    row = tx.execute(_GET_WORKSPACE, {"id": workspace_id}).first()
    if row is None:
        raise errors.NotFound("no such workspace")
    return _workspace(row)


def _workspace(row: Any) -> Workspace:
    return Workspace(
        row.id, row.name, row.secret, row.created_at, row.from_address, row.shop_name, row.shop_address
    )


def set_shop(tx: Tx, workspace_id: str, name: str | None, address: str | None) -> None:
    tx.execute(
        workspaces.update()
        .where(workspaces.c.id == workspace_id)
        .values(shop_name=name, shop_address=address)
    )


def set_from_address(tx: Tx, workspace_id: str, from_address: str | None) -> None:
    tx.execute(workspaces.update().where(workspaces.c.id == workspace_id).values(from_address=from_address))


def holding_data(tx: Tx) -> list[str]:
    """The names of the workspaces that hold anything beyond what a first start creates: every workspace
    but a `default` one with no events, subscribers, sequences or dashboard users (API keys aside)."""
    found = []
    for row in tx.execute(sa.select(workspaces.c.id, workspaces.c.name).order_by(workspaces.c.name)):
        used = row.name != "default" or any(
            tx.execute(sa.select(table.c.workspace_id).where(table.c.workspace_id == row.id).limit(1)).first()
            for table in (events, subscribers, sequences, users)
        )
        if used:
            found.append(row.name)
    return found


def count_workspaces(tx: Tx) -> int:
    return int(tx.execute(sa.select(sa.func.count()).select_from(workspaces)).scalar_one())


def create_api_key(
    tx: Tx,
    workspace_id: str,
    now: datetime,
    *,
    scopes: tuple[str, ...] = ALL_SCOPES,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Return the key and its secret; the secret is not stored and cannot be shown again."""
    unknown = set(scopes) - set(ALL_SCOPES)
    if unknown:
        raise errors.InvalidInput(
            f"unknown scope(s): {', '.join(sorted(unknown))}; known: {', '.join(ALL_SCOPES)}"
        )
    if not scopes:
        raise errors.InvalidInput("a key needs at least one scope")
    if expires_at is not None and expires_at <= now:
        raise errors.InvalidInput("the expiry time is already past")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(ids.new_id("key"), workspace_id, name, secret[:10], tuple(scopes), now, expires_at, None)
    tx.execute(
        api_keys.insert().values(
            id=key.id,
            workspace_id=workspace_id,
            name=name,
            prefix=key.prefix,
            key_hash=hash_key(secret),
            scopes=list(scopes),
            created_at=now,
            expires_at=expires_at,
        )
    )
    return key, secret


def _api_key(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        row.id,
        row.workspace_id,
        row.name,
        row.prefix,
        tuple(row.scopes),
        row.created_at,
        row.expires_at,
        row.revoked_at,
    )


def find_api_key(tx: Tx, secret: str) -> ApiKey | None:
    row = tx.execute(sa.select(api_keys).where(api_keys.c.key_hash == hash_key(secret))).first()
    return None if row is None else _api_key(row)


def list_api_keys(tx: Tx, workspace_id: str) -> list[ApiKey]:
    rows = tx.execute(
        sa.select(api_keys)
        .where(api_keys.c.workspace_id == workspace_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [_api_key(row) for row in rows]


def revoke_api_key(tx: Tx, workspace_id: str, ident: str, now: datetime) -> ApiKey:
    """Revoke the key with id or prefix `ident` (as `apikey list` shows them). Revoking twice keeps the first
    time. Nodes stop accepting the key within the key cache's lifetime (api/deps.py)."""
    column = api_keys.c.id if ident.startswith("key_") else api_keys.c.prefix
    rows = tx.execute(
        sa.select(api_keys).where(api_keys.c.workspace_id == workspace_id, column == ident)
    ).all()
    if not rows:
        raise errors.NotFound(f"no API key {ident!r} in this workspace")
    if len(rows) > 1:
        raise errors.Conflict(f"several keys start with {ident!r}; give the key id instead")
    key = _api_key(rows[0])
    if key.revoked_at is not None:
        return key
    tx.execute(api_keys.update().where(api_keys.c.id == key.id).values(revoked_at=now))
    return _api_key(tx.execute(sa.select(api_keys).where(api_keys.c.id == key.id)).one())


def get_setting(tx: Tx, key: str) -> str | None:
    return tx.execute(sa.select(app_settings.c.value).where(app_settings.c.key == key)).scalar_one_or_none()


def put_setting_if_absent(tx: Tx, key: str, value: str) -> str:
    """Store `value` unless another process stored one first; return the one that won."""
    existing = get_setting(tx, key)
    if existing is not None:
        return existing
    tx.execute(app_settings.insert().values(key=key, value=value))
    return value
