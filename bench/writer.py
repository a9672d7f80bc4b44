"""The group-commit writer alone, no HTTP: concurrent clients each storing a new checkout by a new person
through `Database.write_each(record_checkouts, ...)`, as the Sequenzy route does, for --duration seconds.

    .venv/bin/python bench/writer.py [--db postgres|sqlite] [--clients 64] [--duration 5]
                                     [--writers 1,4] [--request-cpu-us 600] [--rounds 1]

--request-cpu-us spins the event loop that long per job before it is queued, standing in for the HTTP
request handling that shares the GIL with the writer threads in a real server (0: the writer alone).
Each --writers value runs on a fresh database, alternated round by round; every stored checkout is counted
against the answered ones. Prints checkouts/s, process CPU per checkout, commits and the mean batch.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from servers import drop_database, fresh_database

from cartback.core import checkouts, subscribers
from cartback.store import tables, workspaces
from cartback.store.db import Database

PG_NAME = "cartback_bench_writer"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def run(url: str, writers: int, args: argparse.Namespace) -> dict[str, float]:
    db = Database(url, writers=writers)
    db.migrate()
    now = datetime.now(UTC)
    workspace_id = db.write_sync(lambda tx: workspaces.create_workspace(tx, "bench", now)).id
    await db.start()
    counter = itertools.count()
    stop_at = time.monotonic() + args.duration
    latencies: list[float] = []

    async def client() -> int:
        done = 0
        while time.monotonic() < stop_at:
            n = next(counter)
            spin(args.request_cpu_us / 1e6)
            data = checkouts.CheckoutInput(
                checkout_id=f"chk-{n}",
                customer=subscribers.Identity(email=f"shopper{n}@example.com"),
                currency="USD",
                total_cents=4200,
                checkout_url="https://shop.example/cart",
                items=[{"name": "Mug", "quantity": 1, "priceCents": 4200}],
            )
            request = checkouts.CheckoutRequest(workspace_id, data, datetime.now(UTC))
            t0 = time.perf_counter()
            await db.write_each(checkouts.record_checkouts, request)
            latencies.append(time.perf_counter() - t0)
            done += 1
        return done

    cpu0, wall0 = cpu(), time.perf_counter()
    answered = sum(await asyncio.gather(*(client() for _ in range(args.clients))))
    cpu1, wall1 = cpu(), time.perf_counter()
    batches = db.stats.batches
    await db.stop()
    with db.write_engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(tables.checkouts)).scalar_one()
    db.close()
    assert stored == answered, f"{stored} checkouts stored, {answered} answered"
    latencies.sort()
    return {
        "rate": answered / (wall1 - wall0),
        "cpu_ms": 1000 * (cpu1 - cpu0) / answered,
        "batch": answered / max(batches, 1),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--writers", default="1,4", help="comma-separated writer counts to compare")
    p.add_argument("--request-cpu-us", type=int, default=600)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, args.rounds + 1):
            for writers in [int(w) for w in args.writers.split(",")]:
                url = fresh_database(args.db, Path(tmp) / f"w{writers}-{rnd}.db", PG_NAME)
                try:
                    r = asyncio.run(run(url, writers, args))
                finally:
                    drop_database(args.db, PG_NAME)
                print(
                    f"round {rnd} {args.db} writers {writers}: {r['rate']:,.0f} checkouts/s, "
                    f"{r['cpu_ms']:.3f} ms CPU each, mean batch {r['batch']:.1f}, "
                    f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms",
                    flush=True,
                )
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
