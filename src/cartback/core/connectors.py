"""Connectors: a store platform (Shopify, Stripe Checkout, WooCommerce, BigCommerce) sending its own
signed webhooks straight to a workspace, at /hooks/<platform>/<connector id> (docs/connectors.md).

Verifying a platform's HMAC needs its secret in the clear, so the secret cannot be hashed like an API key:
it is stored encrypted (AES-256-GCM, the connector's id as associated data) under a key derived from the
server's secret key (HKDF-SHA256), and decrypted only to check a signature. A rotation keeps the previous
secret valid for a grace period, so webhooks signed before the platform took the new secret still pass.

Each platform's mapper (api/hooks/) turns a verified webhook into the ingest actions every other surface
produces (`core.ingest`); `receive` applies them once per (connector, webhook id)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cartback import errors, ids
from cartback.core import ingest
from cartback.store import connectors as store
from cartback.store import workspaces
from cartback.store.db import Tx

PLATFORMS = ("shopify", "stripe", "woocommerce", "bigcommerce")
# Where the shop pastes a secret of ours into the platform; Shopify and Stripe make their own, which
# cartback must be given.
CHOSEN_BY_SHOP = ("woocommerce", "bigcommerce")
DEFAULT_GRACE = timedelta(hours=24)
NAME_MAX = 200
SECRET_MAX = 500
_VERSION = "v1"


class Sealer:
    """Encrypts connector secrets under a key derived from the server's secret key."""

    def __init__(self, server_secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"cartback connector secrets v1"
        ).derive(server_secret.encode())
        self._aead = AESGCM(key)

    def seal(self, connector_id: str, secret: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), connector_id.encode())
        return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, connector_id: str, sealed: str) -> str:
        version, _, data = sealed.partition(":")
        raw = base64.urlsafe_b64decode(data.encode()) if version == _VERSION else b""
        try:
            return self._aead.decrypt(raw[:12], raw[12:], connector_id.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            # The server's secret key changed since the connector was made: its secret is lost.
            raise errors.Unauthorized(
                "this connector's secret cannot be read with the server's secret key; rotate it"
            ) from exc


@dataclass(frozen=True)
class Connector:
    """A connector as listed: never its secret."""

    id: str
    workspace_id: str
    platform: str
    name: str
    created_at: datetime
    previous_expires_at: datetime | None


@dataclass(frozen=True)
class Source:
    """What a webhook is checked and applied with: the secrets that may have signed it, newest first."""

    id: str
    workspace_id: str
    platform: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Webhook:
    """A verified webhook as a platform's mapper understood it. `actions` None: a topic cartback does not
    map, answered 200 and stored nowhere."""

    webhook_id: str
    topic: str
    actions: list[ingest.Action] | None


@dataclass(frozen=True)
class Received:
    applied: bool
    replayed: bool


def _public(c: store.Connector) -> Connector:
    return Connector(c.id, c.workspace_id, c.platform, c.name, c.created_at, c.previous_expires_at)


def _check_secret(secret: str) -> str:
    secret = secret.strip()
    if not secret or len(secret) > SECRET_MAX:
        raise errors.InvalidInput(f"the secret must be 1 to {SECRET_MAX} characters")
    return secret


def new_secret() -> str:
    """A secret for platforms where the shop chooses one (WooCommerce, BigCommerce's header)."""
    return secrets.token_urlsafe(32)


def webhook_url(public_url: str, platform: str, connector_id: str) -> str:
    """What the shop pastes into the platform."""
    return f"{public_url.rstrip('/')}/hooks/{platform}/{connector_id}"


def add(
    tx: Tx, sealer: Sealer, workspace_name: str, platform: str, secret: str, name: str, now: datetime
) -> Connector:
    ws = workspaces.get_workspace_by_name(tx, workspace_name)
    return _add(tx, sealer, ws.id, platform, secret, name, now)


def _add(
    tx: Tx, sealer: Sealer, workspace_id: str, platform: str, secret: str, name: str, now: datetime
) -> Connector:
    if platform not in PLATFORMS:
        raise errors.InvalidInput(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
    if len(name) > NAME_MAX:
        raise errors.InvalidInput(f"the name is longer than {NAME_MAX} characters")
    connector_id = ids.new_id("con")
    row = store.Connector(
        id=connector_id,
        workspace_id=workspace_id,
        platform=platform,
        name=name,
        secret=sealer.seal(connector_id, _check_secret(secret)),
        previous_secret=None,
        previous_expires_at=None,
        created_at=now,
    )
    store.insert(tx, row)
    return _public(row)


def list_connectors(tx: Tx, workspace_name: str) -> list[Connector]:
    ws = workspaces.get_workspace_by_name(tx, workspace_name)
    return [_public(c) for c in store.list_for(tx, ws.id)]


def remove(tx: Tx, workspace_name: str, connector_id: str) -> None:
    ws = workspaces.get_workspace_by_name(tx, workspace_name)
    if not store.delete(tx, ws.id, connector_id):
        raise errors.NotFound(f"no connector {connector_id!r} in workspace {workspace_name!r}")


def rotate(
    tx: Tx,
    sealer: Sealer,
    workspace_name: str,
    connector_id: str,
    secret: str,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
) -> Connector:
    """The new secret from now on; the current one stays valid until `now + grace` (none with a zero
    grace). A rotation during a grace period ends the older secret's."""
    ws = workspaces.get_workspace_by_name(tx, workspace_name)
    current = store.get(tx, connector_id)
    if current is None or current.workspace_id != ws.id:
        raise errors.NotFound(f"no connector {connector_id!r} in workspace {workspace_name!r}")
    return _rotate(tx, sealer, current, secret, now, grace)


def _rotate(
    tx: Tx, sealer: Sealer, current: store.Connector, secret: str, now: datetime, grace: timedelta
) -> Connector:
    connector_id = current.id
    keep = grace > timedelta(0)
    store.set_secrets(
        tx,
        connector_id,
        sealer.seal(connector_id, _check_secret(secret)),
        current.secret if keep else None,
        now + grace if keep else None,
    )
    updated = store.get(tx, connector_id)
    assert updated is not None
    return _public(updated)


# The dashboard's use cases (web.read/web.write: fn(tx, workspace_id, input, now)), scoped to the
# signed-in viewer's workspace by id.


@dataclass(frozen=True)
class Listed:
    connector: Connector
    last_received_at: datetime | None


def listing(tx: Tx, workspace_id: str, _: None, now: datetime) -> list[Listed]:
    """A workspace's connectors, each with when it last applied a webhook (None: never)."""
    last = store.last_received(tx, workspace_id)
    return [Listed(_public(c), last.get(c.id)) for c in store.list_for(tx, workspace_id)]


@dataclass(frozen=True)
class NewConnector:
    sealer: Sealer
    platform: str
    name: str
    # Empty: made here, for a platform where the shop pastes ours (CHOSEN_BY_SHOP).
    secret: str


@dataclass(frozen=True)
class Made:
    connector: Connector
    # The secret made for the shop to paste, shown once; None when the shop gave the platform's.
    secret: str | None


def _given_or_made(platform: str, secret: str) -> str | None:
    """The secret as given, or None when one is to be made: refused for a platform that signs with its
    own (nothing cartback makes would match it)."""
    if secret.strip():
        return secret
    if platform in CHOSEN_BY_SHOP:
        return None
    if platform not in PLATFORMS:
        raise errors.InvalidInput(f"platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
    raise errors.InvalidInput(
        f"{platform.capitalize()} makes the signing secret: paste the one it shows for this webhook"
    )


def create(tx: Tx, workspace_id: str, new: NewConnector, now: datetime) -> Made:
    given = _given_or_made(new.platform, new.secret)
    chosen = given if given is not None else new_secret()
    added = _add(tx, new.sealer, workspace_id, new.platform, chosen, new.name.strip(), now)
    return Made(added, None if given is not None else chosen)


@dataclass(frozen=True)
class Rotation:
    sealer: Sealer
    connector_id: str
    # Empty: made here, as for NewConnector.
    secret: str
    grace: timedelta = DEFAULT_GRACE


def _own(tx: Tx, workspace_id: str, connector_id: str) -> store.Connector:
    found = store.get(tx, connector_id)
    if found is None or found.workspace_id != workspace_id:
        raise errors.NotFound(f"No connector {connector_id!r} in this workspace.")
    return found


def change_secret(tx: Tx, workspace_id: str, rotation: Rotation, now: datetime) -> Made:
    """As `rotate`: the previous secret stays valid for the grace period."""
    current = _own(tx, workspace_id, rotation.connector_id)
    given = _given_or_made(current.platform, rotation.secret)
    chosen = given if given is not None else new_secret()
    rotated = _rotate(tx, rotation.sealer, current, chosen, now, rotation.grace)
    return Made(rotated, None if given is not None else chosen)


def delete(tx: Tx, workspace_id: str, connector_id: str, now: datetime) -> None:
    _own(tx, workspace_id, connector_id)
    store.delete(tx, workspace_id, connector_id)


def source(tx: Tx, sealer: Sealer, platform: str, connector_id: str, now: datetime) -> Source:
    """The connector a webhook names, with its valid secrets. An unknown id, or one of another platform,
    is a 404 that says no more."""
    found = store.get(tx, connector_id)
    if found is None or found.platform != platform:
        raise errors.NotFound(f"no {platform} connector {connector_id!r}")
    valid = [sealer.open(found.id, found.secret)]
    if found.previous_secret and found.previous_expires_at and now < found.previous_expires_at:
        valid.append(sealer.open(found.id, found.previous_secret))
    return Source(found.id, found.workspace_id, found.platform, tuple(valid))


def webhook_key(webhook_id: str) -> str:
    """The ledger key: the platform's id, hashed when longer than the column."""
    if len(webhook_id) <= 255:
        return webhook_id
    return "sha256:" + hashlib.sha256(webhook_id.encode()).hexdigest()


def receive(tx: Tx, src: Source, hook: Webhook, now: datetime) -> Received:
    """Apply a verified webhook's actions once: a webhook id applied before changes nothing."""
    if hook.actions is None:
        return Received(applied=False, replayed=False)
    key = webhook_key(hook.webhook_id)
    if store.seen(tx, src.id, key):
        return Received(applied=False, replayed=True)
    ingest.apply(tx, src.workspace_id, [ingest.Message(a, type=hook.topic[:20]) for a in hook.actions], now)
    store.remember(tx, src.id, key, hook.topic[:100], now)
    return Received(applied=True, replayed=False)
