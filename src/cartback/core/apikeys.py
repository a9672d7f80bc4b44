"""API keys as the edges see them: which key a secret is, and whether it may still be used."""

from __future__ import annotations

from datetime import datetime

from cartback import errors
from cartback.store import workspaces as store
from cartback.store.db import Tx
from cartback.store.workspaces import ApiKey as ApiKey  # re-exported for api/


def find(tx: Tx, secret: str) -> ApiKey | None:
    """The key whose secret this is, revoked and expired ones included, so the caller can say which."""
    return store.find_api_key(tx, secret)


def check_usable(key: ApiKey, now: datetime) -> None:
    if key.revoked_at is not None:
        raise errors.Unauthorized("this API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise errors.Unauthorized("this API key has expired")
