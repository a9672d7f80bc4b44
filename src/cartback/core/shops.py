"""The shop's identity: the name and footer address line its customers see in mail, on the unsubscribe page
and in the editor's preview. One context (`shop`) for all three, so the preview shows what is sent."""

from __future__ import annotations

from typing import Any

from cartback import errors, headers
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx
from cartback.store.workspaces import Workspace


def context(workspace: Workspace) -> dict[str, Any]:
    """`{{ shop.name }}` and `{{ shop.address }}`: the shop name set for the workspace, else its name."""
    return {"name": workspace.display_name, "address": workspace.shop_address or ""}


def template_identity(tx: Tx, workspace_id: str) -> dict[str, Any]:
    """The `workspace` and `shop` of a template context, as core/mail.compose gives them to sent mail."""
    workspace = workspace_store.get_workspace(tx, workspace_id)
    return {"workspace": {"id": workspace.id, "name": workspace.name}, "shop": context(workspace)}


def _line(value: str | None, what: str, limit: int) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > limit:
        raise errors.InvalidInput(f"{what}: at most {limit} characters")
    try:
        headers.check_text(value)
    except headers.InvalidHeader as exc:
        raise errors.InvalidInput(f"{what}: {exc}") from None
    return value


def update(tx: Tx, workspace_id: str, name: str | None, address: str | None) -> Workspace:
    """Set the shop's name and address line (blank: back to the workspace's name, no address)."""
    workspace_store.set_shop(
        tx, workspace_id, _line(name, "shop name", 200), _line(address, "shop address", 400)
    )
    return workspace_store.get_workspace(tx, workspace_id)
