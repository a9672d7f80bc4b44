"""A workspace's own settings: the sender its mail goes out with, its API keys, and what the settings
page shows of them beside its webhooks and suppressions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cartback.core import connectors, webhooks
from cartback.store import suppressions as suppression_store
from cartback.store import workspaces as store
from cartback.store.db import Tx
from cartback.store.suppressions import Suppression
from cartback.store.workspaces import ALL_SCOPES as ALL_SCOPES
from cartback.store.workspaces import ApiKey as ApiKey
from cartback.store.workspaces import Workspace as Workspace

# The settings page lists this many suppressions (the newest) and says how many match.
SUPPRESSION_PAGE = 100


@dataclass(frozen=True)
class Settings:
    workspace: Workspace
    keys: list[ApiKey]
    webhooks: list[webhooks.EndpointView]
    suppressions: list[Suppression]
    suppression_total: int
    connectors: list[connectors.Listed]


def settings(tx: Tx, workspace_id: str, search: str | None, now: datetime) -> Settings:
    """The workspace with its keys, webhook endpoints, store connectors and the suppressions whose address
    holds `search`."""
    found, total = suppression_store.listing(tx, workspace_id, search=search, limit=SUPPRESSION_PAGE)
    return Settings(
        workspace=store.get_workspace(tx, workspace_id),
        keys=store.list_api_keys(tx, workspace_id),
        webhooks=webhooks.list_all(tx, workspace_id),
        suppressions=found,
        suppression_total=total,
        connectors=connectors.listing(tx, workspace_id, None, now),
    )


def set_sender(tx: Tx, workspace_id: str, sender: str | None, now: datetime) -> None:
    """The From of the workspace's mail when a step or send names none; None for the server's default."""
    store.set_from_address(tx, workspace_id, sender)


@dataclass(frozen=True)
class NewKey:
    name: str
    scopes: tuple[str, ...] = ALL_SCOPES


def create_api_key(tx: Tx, workspace_id: str, key: NewKey, now: datetime) -> tuple[ApiKey, str]:
    """The key and its secret, which is not stored and cannot be shown again."""
    return store.create_api_key(tx, workspace_id, now, scopes=key.scopes, name=key.name)


def revoke_api_key(tx: Tx, workspace_id: str, key_id: str, now: datetime) -> ApiKey:
    return store.revoke_api_key(tx, workspace_id, key_id, now)
