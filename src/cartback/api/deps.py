"""What every API route needs: the services built by create_app, and the workspace its key belongs to."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fastapi import Request

from cartback import errors, logs
from cartback.core import apikeys, mail
from cartback.core.clock import Clock
from cartback.core.units import Transactions
from cartback.delivery import render_budget
from cartback.settings import Settings

# A revoked key keeps working on a node for at most this long; the cache spares a query per request.
KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Principal:
    """The caller: a workspace, and what its key may do."""

    workspace_id: str
    key_id: str
    scopes: tuple[str, ...]


@dataclass
class Services:
    settings: Settings
    db: Transactions
    clock: Clock
    keys: KeyCache
    # How mail is composed and queued: built once in create_app, the worker's too.
    mail: mail.Options


class KeyCache:
    def __init__(self, db: Transactions, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # Unknown secrets are cached too (as None): the rate limiter and the route both authenticate, and a
        # stream of made-up keys should not cost a query each twice. A secret cannot become valid later.
        self._entries: dict[str, tuple[float, apikeys.ApiKey | None]] = {}
        # One lookup per secret at a time: when an entry expires, every request in flight with that key
        # (a client's whole connection pool) would otherwise look it up at once, each on a thread and a
        # database connection of its own, every KEY_CACHE_SECONDS.
        self._lookups: dict[str, asyncio.Future[apikeys.ApiKey | None]] = {}
        self._generation = 0  # forget() bumps it

    async def authenticate(self, secret: str) -> Principal:
        if not secret:
            raise errors.Unauthorized("missing API key")
        hit = self._entries.get(secret)
        if hit is None or hit[0] < time.monotonic():
            lookup = self._lookups.get(secret)
            if lookup is None or lookup.get_loop() is not asyncio.get_running_loop():
                lookup = self._lookups[secret] = asyncio.ensure_future(self._look_up(secret))
                lookup.add_done_callback(lambda done: self._lookup_done(secret, done))
            # Shielded: a request that goes away must not cancel the lookup the others wait for.
            key = await asyncio.shield(lookup)
        else:
            key = hit[1]
        if key is None:
            raise errors.Unauthorized("invalid API key")
        logs.note(workspace_id=key.workspace_id)  # for the access log line
        render_budget.charge_to(key.workspace_id)  # renders this request asks for spend its budget
        apikeys.check_usable(key, self._clock.now())
        return Principal(key.workspace_id, key.id, key.scopes)

    async def _look_up(self, secret: str) -> apikeys.ApiKey | None:
        generation = self._generation
        key = await self._db.read(lambda tx: apikeys.find(tx, secret))
        if generation == self._generation:  # else what it read may predate a revocation: not kept
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[secret] = (time.monotonic() + KEY_CACHE_SECONDS, key)
        return key

    def _lookup_done(self, secret: str, done: asyncio.Future[apikeys.ApiKey | None]) -> None:
        if self._lookups.get(secret) is done:  # not a newer one, started after forget()
            del self._lookups[secret]

    def forget(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._lookups.clear()


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def services(request: Request) -> Services:
    """The dependency form. Async on purpose: FastAPI runs a plain `def` dependency in a worker thread,
    which costs more than this whole function on every request."""
    return services_of(request)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if not header.strip():
        raise errors.Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer":
        # Say what arrived (the scheme only, never the credentials): `Basic`, `Klaviyo-API-Key` or a bare
        # key are easy mistakes that "missing" would hide.
        got = f"{scheme[:40]!r}" if token.strip() else "a single word (a bare key?)"
        raise errors.Unauthorized(
            f"wrong authorization scheme: got {got}; send the API key as 'Authorization: Bearer <key>'"
        )
    if not token.strip():
        raise errors.Unauthorized("missing API key after 'Bearer': send 'Authorization: Bearer <key>'")
    return token.strip()
