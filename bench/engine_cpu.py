"""CPU time the engine spends per checkout and per due email step, in one process, on a frozen clock.

    .venv/bin/python bench/engine_cpu.py [--enrollments 2000] [--db sqlite|postgres] [--rounds 3]

bench/automations.py measures latency end to end through HTTP, which on a shared machine moves with
everyone else's load. This measures CPU seconds instead, which moves much less: the same abandoned-checkout
sequence as automations.py, N checkouts recorded directly (not timed), then the app's own worker
(`app.build_worker`: dispatcher with its hooks, steps, outbox sender, webhooks) run round after round
until idle, twice:

  enroll   dispatch the N checkout events, enroll and park each run at its 1-minute delay;
  due      the clock moved 2 minutes on: every email step runs, is rendered, queued and sent to the
           outbox, and the resulting email.sent / sequence.finished events are dispatched.

Reported per phase: process CPU ms per enrollment (all threads), wall time, the thread CPU of the enroll
phase's dispatch batches, and where the CPU of the due phase went (thread CPU inside the step batches, the
sender's writes, MIME building, dispatch), by wrapping those functions. PostgreSQL (`--db postgres`) runs
on a database it creates from `test` and drops; its own CPU is not counted, so compare SQLite with SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from automations import checkout_body, sequence_body
from servers import drop_database, fresh_database

from cartback import app as app_module
from cartback.core import automations, checkouts, sequences, subscribers
from cartback.core.clock import FrozenClock
from cartback.delivery import mime
from cartback.scheduler import mail_sender
from cartback.scheduler import worker as worker_module
from cartback.settings import Settings
from cartback.store import workspaces
from cartback.store.db import Database
from cartback.store.tables import messages

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PG_DB = "cartback_bench_engine_cpu"
SPENT: collections.Counter[str] = collections.Counter()


def timed(owner: Any, name: str, label: str) -> None:
    """Accumulate the calling thread's CPU time inside owner.name under `label` (if the code measured has
    such a function: older trees may not)."""
    fn: Callable[..., Any] | None = getattr(owner, name, None)
    if fn is None:
        return

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[label] += time.thread_time() - start

    setattr(owner, name, wrapper)


def seed(db: Database, n: int) -> None:
    ws = db.write_sync(lambda tx: workspaces.create_workspace(tx, f"bench-{secrets.token_hex(3)}", T0))
    db.write_sync(lambda tx: sequences.create(tx, ws.id, sequence_body(1), T0, status="active"))

    def record(tx: sa.Connection, i: int) -> None:
        body = checkout_body(i, "cpu")
        data = checkouts.CheckoutInput(
            checkout_id=body["checkoutId"],
            customer=subscribers.Identity(email=body["customer"]["email"], first_name="Jane"),
            currency=body["currency"],
            total_cents=body["totalCents"],
            checkout_url=body["checkoutUrl"],
            items=body["items"],
        )
        checkouts.record_checkout(tx, ws.id, data, T0)

    for start in range(0, n, 500):
        db.write_sync(lambda tx, s=start: [record(tx, i) for i in range(s, min(n, s + 500))])


async def drain(db: Database, url: str, clock: FrozenClock) -> tuple[float, float]:
    """Run the worker until it has nothing to do now; (process CPU s, wall s)."""
    worker = app_module.build_worker(Settings(database_url=url), db, clock)
    cpu, wall = time.process_time(), time.monotonic()
    while await worker.run_once():
        pass
    return time.process_time() - cpu, time.monotonic() - wall


def one_round(url: str, n: int) -> dict[str, Any]:
    db = Database(url)
    db.migrate()
    seed(db, n)
    clock = FrozenClock(T0)

    async def main() -> dict[str, Any]:
        await db.start()
        try:
            SPENT.clear()
            enroll_cpu, enroll_wall = await drain(db, url, clock)
            enroll_dispatch = SPENT["dispatch"]
            clock.advance(minutes=2)
            SPENT.clear()
            due_cpu, due_wall = await drain(db, url, clock)
        finally:
            await db.stop()
        return {
            "enroll_ms": 1000 * enroll_cpu / n,
            "enroll_wall_s": enroll_wall,
            "enroll_dispatch_ms": 1000 * enroll_dispatch / n,
            "due_ms": 1000 * due_cpu / n,
            "due_wall_s": due_wall,
            "due_parts_ms": {k: 1000 * v / n for k, v in SPENT.items()},
        }

    result = asyncio.run(main())
    sent = db.read_sync(lambda tx: tx.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one())
    db.close()
    if sent != n:
        raise SystemExit(f"expected {n} messages, found {sent}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--enrollments", type=int, default=2000)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    timed(automations, "advance_batch", "step batches")
    timed(automations, "advance", "advance calls")  # inside the step batches where those exist
    timed(worker_module, "dispatch_batch", "dispatch")
    timed(mail_sender.Sender, "_deliver_atomically", "sender writes")
    timed(mime, "build", "MIME building")
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="cartback-bench-cpu-") as tmp:
        for i in range(args.rounds):
            url = fresh_database(args.db, Path(tmp) / f"r{i}.db", PG_DB)
            try:
                run = one_round(url, args.enrollments)
            finally:
                drop_database(args.db, PG_DB)
            runs.append(run)
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(run["due_parts_ms"].items()))
            print(
                f"round {i + 1}: enroll {run['enroll_ms']:.2f} ms CPU/checkout "
                f"({run['enroll_wall_s']:.1f} s wall; dispatch {run['enroll_dispatch_ms']:.2f}); "
                f"due {run['due_ms']:.2f} ms CPU/step "
                f"({run['due_wall_s']:.1f} s wall; {parts})",
                flush=True,
            )
    dispatching = statistics.median(r["enroll_dispatch_ms"] for r in runs)
    print(
        f"median of {args.rounds}: enroll {statistics.median(r['enroll_ms'] for r in runs):.2f} ms CPU per "
        f"checkout (dispatching it {dispatching:.2f}), "
        f"due {statistics.median(r['due_ms'] for r in runs):.2f} ms CPU per email step "
        f"({args.enrollments} enrollments, {args.db}); load average after: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
