"""What rate limiting costs, measured in-process (no HTTP load, a few seconds of one core):

    .venv/bin/python bench/ratelimits.py [--requests 200000] [--leases 2000] [--no-postgres]

1. CPU per request of the rate-limit middleware (api/ratelimits.py) in front of an ASGI app that does
   nothing, against the same app without it: the limiter's own cost on the hot path (key from the header,
   cached authentication, a lease spent from memory, four response headers).
2. One PostgreSQL lease (store/ratelimits.py): wall time and client CPU per call, next to a `SELECT 1` over
   the same pool, on a scratch database `cartback_bench_ratelimits` created from `test` and dropped after.

Compare with bench/ingest.py's CPU ms per request of cartback's ingest to put the numbers in proportion;
`bench/ingest.py --rate-limit both` measures the whole effect under load.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from servers import drop_database, fresh_database

from cartback.api import deps
from cartback.api import ratelimits as middleware
from cartback.core import ratelimits
from cartback.core.clock import system_clock
from cartback.store import ratelimits as store
from cartback.store import workspaces
from cartback.store.db import Database

PG_BENCH_DB = "cartback_bench_ratelimits"


async def _noop(scope: dict, receive: object, send: object) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]


async def middleware_cost(requests: int, tmp: Path) -> dict[str, float]:
    db = Database(f"sqlite:///{tmp / 'ratelimits.db'}")
    db.migrate()

    def make_key(tx: workspaces.Tx) -> str:
        ws = workspaces.create_workspace(tx, "bench", system_clock.now())
        return workspaces.create_api_key(tx, ws.id, system_clock.now())[1]

    key = db.write_sync(make_key)
    policy = ratelimits.Policy(burst=1_000_000, steady=60_000_000)  # never throttles
    limiter = ratelimits.Limiter(policy, ratelimits.MemoryCounter(), system_clock)
    limited = middleware.RateLimits(_noop, deps.KeyCache(db, system_clock), limiter)
    scope = {
        "type": "http",
        "path": "/api/v1/checkouts",
        "headers": [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())],
    }

    async def send(message: object) -> None:
        pass

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    out = {}
    for label, app in (("bare app", _noop), ("with rate limits", limited)):
        for _ in range(2000):
            await app(scope, receive, send)
        started = time.process_time()
        for _ in range(requests):
            await app(scope, receive, send)
        out[label] = (time.process_time() - started) / requests * 1e6
    db.close()
    return out


def lease_cost(leases: int) -> dict[str, tuple[float, float]]:
    url = fresh_database("postgres", Path("unused"), PG_BENCH_DB)
    db = Database(url)
    try:
        db.migrate()

        def lease() -> None:
            store.lease(db, "bench", 21, int(time.time()), 0, 0, 1 << 40, 1 << 40)

        def select_one() -> None:
            with db.write_engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1").one()

        out = {}
        for label, call in (("lease", lease), ("SELECT 1", select_one)):
            for _ in range(100):
                call()
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(leases):
                call()
            out[label] = (
                (time.perf_counter() - wall) / leases * 1e3,
                (time.process_time() - cpu) / leases * 1e3,
            )
        return out
    finally:
        db.close()
        drop_database("postgres", PG_BENCH_DB)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--leases", type=int, default=2000)
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cartback-bench-") as tmp:
        costs = asyncio.run(middleware_cost(args.requests, Path(tmp)))
    for label, us in costs.items():
        print(f"{label:<18} {us:6.2f} µs CPU per request")
    print(f"{'limiter':<18} {costs['with rate limits'] - costs['bare app']:6.2f} µs CPU per request")
    if not args.no_postgres:
        for label, (wall, cpu) in lease_cost(args.leases).items():
            print(f"{label:<18} {wall:6.3f} ms wall, {cpu:6.3f} ms client CPU per call (PostgreSQL)")


if __name__ == "__main__":
    main()
