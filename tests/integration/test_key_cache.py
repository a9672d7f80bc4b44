"""The API key cache (api/deps.py): requests that find a key's entry missing or expired at the same moment
share one lookup, and a lookup that started before `forget()` (a key revoked) is not kept."""

from __future__ import annotations

import asyncio

import pytest

from cartback import errors
from cartback.api.deps import KeyCache
from cartback.core.clock import system_clock
from cartback.store import workspaces


class _CountedReads:
    """The real database, its reads counted; `hold` keeps a read's answer back until it is set."""

    def __init__(self, db) -> None:
        self.db = db
        self.reads = 0
        self.hold: asyncio.Event | None = None
        self.read_done = asyncio.Event()

    async def read(self, fn):
        self.reads += 1
        result = await self.db.read(fn)
        self.read_done.set()
        if self.hold is not None:
            await self.hold.wait()
        return result


def test_requests_that_miss_the_cache_together_share_one_lookup(db, make_workspace) -> None:
    tenant = make_workspace()
    counted = _CountedReads(db)
    cache = KeyCache(counted, system_clock)  # type: ignore[arg-type]

    async def together() -> None:
        principals = await asyncio.gather(*(cache.authenticate(tenant.key) for _ in range(50)))
        assert {p.workspace_id for p in principals} == {tenant.id}

    asyncio.run(together())
    assert counted.reads == 1
    cache.forget()
    asyncio.run(together())  # another event loop, as another app's would be
    assert counted.reads == 2


def test_a_key_revoked_during_a_lookup_is_not_cached_as_valid(db, make_workspace) -> None:
    tenant = make_workspace()
    counted = _CountedReads(db)
    cache = KeyCache(counted, system_clock)  # type: ignore[arg-type]

    async def revoked_meanwhile() -> None:
        counted.hold, counted.read_done = asyncio.Event(), asyncio.Event()
        first = asyncio.ensure_future(cache.authenticate(tenant.key))
        await counted.read_done.wait()  # it has read the key, still valid, and not answered yet
        key_id = db.read_sync(lambda tx: workspaces.find_api_key(tx, tenant.key)).id
        db.write_sync(lambda tx: workspaces.revoke_api_key(tx, tenant.id, key_id, system_clock.now()))
        cache.forget()  # what revoking through the dashboard does
        counted.hold.set()
        assert (await first).workspace_id == tenant.id  # it read before the revocation
        counted.hold = None
        with pytest.raises(errors.Unauthorized, match="revoked"):
            await cache.authenticate(tenant.key)

    asyncio.run(revoked_meanwhile())
