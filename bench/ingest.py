"""Ingest benchmark: cartback's POST /api/v1/checkouts against a bare FastAPI app that only validates the
same body (bench/echo_app.py), same load, same time, interleaved round-robin.

    .venv/bin/python bench/ingest.py [--duration 10] [--connections 64] [--rounds 3]
                                     [--db sqlite|postgres|both] [--sync FULL|NORMAL|both] [--replay]
                                     [--rows insert,replay,klaviyo,segment,with-sequence,two-nodes]
                                     [--api-only] [--rate-limit off|on|both]

Every round starts each server fresh (cartback on a new, empty database), warms it up for 2 s, then runs wrk
for --duration seconds. With a new checkoutId per request cartback really inserts; --replay reuses a few
checkoutIds to measure the idempotent path. Afterwards each cartback run is checked: every checkoutId wrk
sent but saw no answer for (cut off when wrk stopped) is retried as a client would, then the `events` rows
must be exactly the checkoutIds that got a 2xx, and a retried request must get an identical response.
With --rate-limit on (or both, to compare in the same run) cartback runs with rate limiting on, at limits
far above what this benchmark reaches (--rate-limit-burst per second, 60x that per minute), so nothing is
throttled and the difference is the limiter's cost; off (the default) runs without it.
--rows picks what cartback is loaded with, each a row of its own in the same run (default: insert, or
replay with --replay): `insert` and `replay` post Sequenzy checkouts as above; `klaviyo` posts a Klaviyo
`POST /api/events` Started Checkout with a new checkout_id each; `segment` posts a Segment `/v1/batch` of
20 Checkout Started calls, and its rate and ratio count events (20 per request). Klaviyo's and Segment's
answers name no checkout, so their check counts instead: the checkouts stored are ones that were sent, at
least as many as the 2xx answers and at most one more per connection and wrk run (cut off when wrk
stopped); every other one sent is then retried, after which exactly the sent ones are stored, 20 per
Segment batch. A Segment batch answers in seconds at 64 connections: give it --duration 10 or more.
`with-sequence` (SQLite only) posts Sequenzy checkouts to `serve` as shipped, its worker in-process even
with --api-only, after one abandoned-checkout sequence is created and enabled through the API (trigger
Checkout Started, matching_field checkoutId, stop on the checkout's order, one email after a minute).
Once the dispatcher has handled every event, each stored Checkout Started must have exactly one enrollment
in it; enrollment latency (enrollments.created_at - events.received_at) over the measured load's checkouts
is printed as p50 / p99.
`two-nodes` starts two `serve --no-worker` on the same database (file) and loads them together
with two wrk, each with half of --connections and --threads; the row's rate is the two rates summed (its
ratio is against one echo), its latencies the slower node's; the stored rows must be exactly the union of
both nodes' 2xx checkoutIds, and a checkout sent to one node and then to the other gets identical answers.
A row its database cannot run (with-sequence on --db postgres) is refused; with --db both it runs on its
own database only.
Results are printed and written to bench/results/ingest-<time>.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from automations import sequence_body
from servers import analyze, cpu_seconds, drop_database, free_port, fresh_database, stop, wait_for_key

from cartback.store.db import sqlalchemy_url
from cartback.store.tables import enrollments, events

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
PAYLOAD = HERE / "payload.json"
LUA = HERE / "checkout.lua"
PG_BENCH_DB = "cartback_bench"
UVICORN_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
REPLAY_KEYS = 100
WARMUP_SECONDS = 2
# How `cartback serve` shows the key it creates on an empty database (two wordings have existed).
# What cartback's writer logs when it stops (see Database.stop).
BATCH_LINE = re.compile(r"writer: (\d+) jobs in (\d+) commits")


@dataclass(frozen=True)
class Surface:
    """What a row posts: the API's path, a body template (@ID@ replaced per request), its
    Authorization header for a key, and how many checkout events one request carries."""

    name: str
    path: str
    payload: Path
    scheme: str  # "bearer" or "basic" (Segment: the key as the user name)
    events: int = 1

    def auth(self, key: str) -> str:
        if self.scheme == "basic":
            return "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        return f"Bearer {key}"

    def stored_id(self, request_id: str) -> list[str]:
        """The checkoutIds one request with this id stores."""
        if self.events == 1:
            return [request_id]
        return [f"{request_id}-{k}" for k in range(self.events)]


SURFACES = {
    "sequenzy": Surface("sequenzy", "/api/v1/checkouts", PAYLOAD, "bearer"),
    "klaviyo": Surface("klaviyo", "/api/events", HERE / "payload-klaviyo.json", "bearer"),
    "segment": Surface("segment", "/v1/batch", HERE / "payload-segment.json", "basic", events=20),
}


@dataclass(frozen=True)
class Row:
    """What one row loads cartback with, and how cartback runs for it."""

    surface: str = "sequenzy"
    mode: str = "insert"  # or "replay"
    dbs: tuple[str, ...] = ("sqlite", "postgres")  # the databases the row runs on
    # One enabled abandoned-checkout sequence, created before the load; `serve` runs its in-process
    # worker whatever --api-only says, since enrolling is what the row measures.
    sequence: bool = False
    # `serve --no-worker` processes on the same database, each loaded by a wrk of its own at the same time.
    nodes: int = 1


ROWS = {
    "insert": Row(),
    "replay": Row(mode="replay"),
    "klaviyo": Row("klaviyo"),
    "segment": Row("segment"),
    "with-sequence": Row(dbs=("sqlite",), sequence=True),
    "two-nodes": Row(nodes=2),
}
# After the load the in-process dispatcher works off what it has not yet dispatched, for as long as that
# shrinks; the check gives up once it has not shrunk for this long.
ENROLL_STALL_SECONDS = 30


@dataclass(frozen=True)
class Variant:
    name: str
    db: str | None = None  # None: the echo app
    sync: str | None = None
    rate_limit: bool = False
    row: str = "insert"


def main() -> None:
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk")
    limited = {"off": [False], "on": [True], "both": [False, True]}[args.rate_limit]
    rows = args.rows.split(",") if args.rows else ["replay" if args.replay else "insert"]
    if unknown := [r for r in rows if r not in ROWS]:
        sys.exit(f"--rows: unknown {unknown}; choose from {', '.join(ROWS)}")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if cannot := [r for r in rows if not set(ROWS[r].dbs) & set(dbs)]:
        sys.exit(
            "; ".join(f"--rows {r} runs only on --db {' or '.join(ROWS[r].dbs)}" for r in cannot)
            + f", not on --db {args.db}: run with --db both, or without {', '.join(cannot)}"
        )

    def label(row: str) -> str:
        return "" if row == "insert" and len(rows) == 1 else f" {row}"

    variants = [Variant("echo")]
    if args.db in ("sqlite", "both"):
        syncs = ["FULL", "NORMAL"] if args.sync == "both" else [args.sync]
        variants += [
            Variant(f"cartback sqlite {s}{' +ratelimit' if rl else ''}{label(row)}", "sqlite", s, rl, row)
            for s in syncs
            for rl in limited
            for row in rows
            if "sqlite" in ROWS[row].dbs
        ]
    if args.db in ("postgres", "both"):
        variants += [
            Variant(
                f"cartback postgres{' +ratelimit' if rl else ''}{label(row)}",
                "postgres",
                None,
                rl,
                row,
            )
            for rl in limited
            for row in rows
            if "postgres" in ROWS[row].dbs
        ]

    runs = []
    with tempfile.TemporaryDirectory(prefix="cartback-bench-") as tmp:
        for rnd in range(1, args.rounds + 1):
            for variant in variants:
                run = run_one(variant, rnd, args, Path(tmp))
                runs.append(run)
                print(f"round {rnd} {variant.name:<24} {fmt_run(run)}", flush=True)
    for run in runs:
        echo = next(r for r in runs if r["round"] == run["round"] and r["server"] == "echo")
        run["ratio"] = run["rps"] / echo["rps"]
    summary = summarize(runs, variants)
    print_tables(runs, summary, args)
    save(runs, summary, args)
    if not all(r["verify"]["ok"] for r in runs if "verify" in r):
        sys.exit("correctness check FAILED (see above)")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds of load per server and round")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    p.add_argument("--sync", choices=["FULL", "NORMAL", "both"], default="FULL", help="SQLite synchronous")
    p.add_argument("--replay", action="store_true", help=f"reuse {REPLAY_KEYS} checkoutIds (idempotent path)")
    p.add_argument(
        "--rows",
        default="",
        help="comma-separated rows of one run: insert, replay, klaviyo, segment, with-sequence (SQLite), "
        "two-nodes (default: insert)",
    )
    p.add_argument(
        "--api-only",
        action="store_true",
        help="serve --no-worker: no in-process scheduler (with-sequence runs it all the same, two-nodes "
        "never does)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="serve --processes: server processes on one port (two-nodes: one each, as always)",
    )
    p.add_argument(
        "--rate-limit",
        choices=["off", "on", "both"],
        default="off",
        help="cartback without rate limiting, with it, or both in the same run",
    )
    p.add_argument(
        "--rate-limit-burst",
        type=int,
        default=20_000,
        help="CARTBACK_RATE_LIMIT_BURST when on (per-minute: 60x); high enough never to throttle",
    )
    return p.parse_args()


# -- one server, one round -------------------------------------------------------------------------


def run_one(variant: Variant, rnd: int, args: argparse.Namespace, tmp: Path) -> dict:
    row = ROWS[variant.row]
    nodes = row.nodes if variant.db else 1
    stem = f"{variant.name.replace(' ', '-')}-{rnd}"
    ports = [free_port() for _ in range(nodes)]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    log_paths = [tmp / f"{stem}-{n + 1}.log" for n in range(nodes)]
    db_url = key = None
    env = dict(os.environ)
    if variant.db is None:
        key = "unused"
    else:
        db_url = fresh_database(variant.db, tmp / f"{stem}.db", PG_BENCH_DB)
        env.update(CARTBACK_DATABASE_URL=db_url, CARTBACK_LOG_LEVEL="info")
        if variant.sync:
            env["CARTBACK_SQLITE_SYNCHRONOUS"] = variant.sync
        burst = args.rate_limit_burst if variant.rate_limit else 0
        env["CARTBACK_RATE_LIMIT_BURST"] = str(burst)
        env["CARTBACK_RATE_LIMIT_STEADY"] = str(burst * 60)
    no_worker = nodes > 1 or (args.api_only and not row.sequence)

    def command(port: int) -> list:
        if variant.db is None:
            return [BIN / "uvicorn", *UVICORN_FLAGS, "--port", str(port), "bench.echo_app:app"]
        serve = [BIN / "cartback", "serve", "--port", str(port), *(["--no-worker"] if no_worker else [])]
        return serve if nodes > 1 else [*serve, "--processes", str(args.processes)]

    procs: list[subprocess.Popen] = []
    try:
        # One after the other: the first migrates the new database and creates the workspace.
        for port, base, log_path in zip(ports, bases, log_paths, strict=True):
            with open(log_path, "w") as log:
                procs.append(
                    subprocess.Popen(command(port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
            key = key or wait_for_key(log_path, procs[-1], env)
            wait_healthy(base, procs[-1])
        sequence_id = create_sequence(bases[0], key) if row.sequence and db_url else None
        mode, surface = row.mode, SURFACES[row.surface]
        suffixes = [""] if nodes == 1 else [f"n{n + 1}" for n in range(nodes)]
        tags = [
            ("replay", "replay") if mode == "replay" else (f"r{rnd}w{x}", f"r{rnd}m{x}") for x in suffixes
        ]
        warm = wrk(bases, key, mode, [t[0] for t in tags], WARMUP_SECONDS, args, tmp, surface)
        if db_url is not None:
            analyze(db_url)
        cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        load = wrk(bases, key, mode, [t[1] for t in tags], args.duration, args, tmp, surface)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        checks = None
        if db_url is not None and surface.name != "sequenzy":
            checks = counted_check(
                bases[0], key, db_url, [warm[0], load[0]], tags[0], surface, args.connections
            )
        elif db_url is not None:
            checks = {"ok_ids": set(), "retried": 0}
            for n, base in enumerate(bases):
                node = answer_cut_off(base, key, [warm[n], load[n]], mode, tags[n])
                checks["ok_ids"] |= node["ok_ids"]
                checks["retried"] += node["retried"]
            # With two nodes the second sending of each goes to the other node.
            retry_id = f"{tags[0][1]}-retry"
            checks["identical_retry"] = identical_retry(bases, key, retry_id, load[-1], checks["ok_ids"])
        enrolled = enrollment_check(db_url, sequence_id, tags[0][1]) if sequence_id and db_url else None
    finally:
        for proc in procs:
            stop(proc)
    events = surface.events
    seconds = [r["duration_us"] / 1e6 for r in load]
    requests = sum(r["requests"] for r in load)
    run = {
        "server": variant.name,
        "round": rnd,
        # Events per second: a Segment batch carries several. Several nodes: their rates summed.
        "rps": sum(events * r["requests"] / t for r, t in zip(load, seconds, strict=True)),
        # Several nodes: the slower node's.
        "p50_ms": max(r["p50_us"] for r in load) / 1000,
        "p99_ms": max(r["p99_us"] for r in load) / 1000,
        "non2xx": sum(t["non2xx"] for r in load for t in r["threads"]),
        "socket_errors": sum(v for r in load for k, v in r["errors"].items() if k != "status"),
        "server_cpu": cpu / max(seconds),  # cores busy, all nodes together
        "cpu_ms_per_req": cpu * 1000 / max(events * requests, 1),
    }
    if nodes > 1:
        run["node_rps"] = [events * r["requests"] / t for r, t in zip(load, seconds, strict=True)]
    batches = [m.groups() for p in log_paths if (m := BATCH_LINE.search(p.read_text()))]
    if batches:
        run["mean_batch"] = sum(int(j) for j, _ in batches) / max(sum(int(c) for _, c in batches), 1)
    if db_url is not None:
        assert checks is not None
        run["verify"] = checks["verify"] if "verify" in checks else verify(db_url, checks)
        if enrolled is not None:
            run["verify"]["enrollment"] = enrolled
            run["verify"]["ok"] = run["verify"]["ok"] and enrolled["ok"]
            run["enroll_p50_ms"] = enrolled["latency_p50_ms"]
            run["enroll_p99_ms"] = enrolled["latency_p99_ms"]
        drop_database(variant.db, PG_BENCH_DB)
    return run


def wrk(
    bases: list[str],
    key: str,
    mode: str,
    tags: list[str],
    seconds: int,
    args: argparse.Namespace,
    tmp: Path,
    surface: Surface = SURFACES["sequenzy"],
) -> list[dict]:
    """One wrk per server, all at the same time, sharing --connections and --threads between them."""
    procs = []
    for base, tag in zip(bases, tags, strict=True):
        cmd = [
            "wrk",
            f"-t{max(args.threads // len(bases), 1)}",
            f"-c{max(args.connections // len(bases), 1)}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            base,
            "--",
            str(surface.payload),
            mode,
            tag,
            str(tmp / f"wrk-{tag}.json"),
            key,
            str(REPLAY_KEYS),
            surface.path,
            surface.auth(key),
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"wrk exited with {proc.returncode}")
    return [json.loads((tmp / f"wrk-{tag}.json").read_text()) for tag in tags]


def create_sequence(base: str, key: str) -> str:
    """The abandoned-checkout sequence bench/automations.py measures (matching_field checkoutId, stop on
    the checkout's order, one email after a minute), created and enabled through the API."""
    status, body = request(base, key, "/api/v1/sequences", sequence_body(1.0))
    if status >= 300:
        raise RuntimeError(f"creating the sequence: {status} {body!r}")
    sequence_id = json.loads(body)["sequence"]["id"]
    status, body = request(base, key, f"/api/v1/sequences/{sequence_id}/enable", {})
    if status >= 300:
        raise RuntimeError(f"enabling the sequence: {status} {body!r}")
    return str(sequence_id)


# -- correctness -----------------------------------------------------------------------------------


def answer_cut_off(base: str, key: str, loads: list[dict], mode: str, tags: tuple[str, str]) -> dict:
    """Every checkoutId that got a 2xx, after retrying those wrk sent but never saw answered (the requests
    in flight when wrk stopped: the server may or may not have committed them)."""
    ok: set[str] = set()
    retried = 0
    for load, tag in zip(loads, tags, strict=True):
        for t in load["threads"]:
            ok.update(t["ok"])
            if mode == "insert":
                sent = {f"{tag}-{t['tid']}-{n}" for n in range(1, t["sent"] + 1)}
                for checkout_id in sent - ok:
                    status, _ = post(base, key, checkout_id)
                    retried += 1
                    if status < 300:
                        ok.add(checkout_id)
    return {"ok_ids": ok, "retried": retried}


def identical_retry(bases: list[str], key: str, new_id: str, load: dict, ok_ids: set[str]) -> bool:
    """A new checkout sent twice, and a checkout from the run sent twice more, get identical answers (the
    first sending to the first server, the second to the last one)."""
    old_id = next((i for t in load["threads"] for i in t["ok"]), new_id)
    same = True
    for checkout_id in dict.fromkeys([new_id, old_id]):
        first, second = post(bases[0], key, checkout_id), post(bases[-1], key, checkout_id)
        same = same and first[0] < 300 and first == second
        if first[0] < 300:
            ok_ids.add(checkout_id)
    return same


def stored_checkouts(db_url: str) -> list[str]:
    """The checkoutIds of every stored checkout_started event."""
    engine = sa.create_engine(sqlalchemy_url(db_url), poolclass=sa.NullPool)
    with engine.connect() as conn:
        keys = conn.exec_driver_sql(
            "SELECT idempotency_key FROM events WHERE name = 'ecommerce.checkout_started'"
        ).scalars()
        return [k.removeprefix("checkout:") for k in keys]


def counted_check(
    base: str, key: str, db_url: str, loads: list[dict], tags: tuple[str, str], surface: Surface, conns: int
) -> dict:
    """The check for answers that name no checkout (see the module's docstring)."""
    sent: dict[str, list[str]] = {}  # request id -> the checkoutIds it carries
    answered = 0
    for load, tag in zip(loads, tags, strict=True):
        for t in load["threads"]:
            answered += t["okn"]
            for n in range(1, t["sent"] + 1):
                rid = f"{tag}-{t['tid']}-{n}"
                sent[rid] = surface.stored_id(rid)
    wanted = {c for ids in sent.values() for c in ids}
    before = stored_checkouts(db_url)
    stored_requests = {rid for rid, ids in sent.items() if ids[0] in set(before)}
    whole = all(set(ids) <= set(before) for rid, ids in sent.items() if rid in stored_requests)
    retried, failed = 0, 0
    for rid in sent.keys() - stored_requests:
        status, _ = post(base, key, rid, surface)
        retried += 1
        failed += status >= 300
    new_id = f"{tags[1]}-retry"
    old_id = next(iter(stored_requests), new_id)
    identical = True
    for rid in dict.fromkeys([new_id, old_id]):
        first, second = post(base, key, rid, surface), post(base, key, rid, surface)
        identical = identical and first[0] < 300 and first == second
    after = stored_checkouts(db_url)
    expected = wanted | set(surface.stored_id(new_id))
    result = {
        "events": len(after),
        "answered_2xx": answered,
        "stored_requests_before_retry": len(stored_requests),
        "stored_not_sent": len(set(before) - wanted),
        "retried_after_cutoff": retried,
        "retries_failed": failed,
        "identical_retry": identical,
    }
    result["ok"] = (
        not set(before) - wanted
        and whole
        # At most one request per connection was in flight when each wrk run stopped.
        and answered <= len(stored_requests) <= answered + conns * len(loads)
        and not failed
        and identical
        and len(after) == len(set(after)) == len(expected)
        and set(after) == expected
    )
    return {"verify": result}


def enrollment_check(db_url: str, sequence_id: str, measured_tag: str) -> dict:
    """Once the dispatcher has handled every event (or stalled for ENROLL_STALL_SECONDS): each stored
    Checkout Started has exactly one enrollment in the sequence, and none enrolled from anything else.
    Latency = enrollments.created_at - events.received_at, over the checkouts of the measured load."""
    engine = sa.create_engine(sqlalchemy_url(db_url), poolclass=sa.NullPool)
    undispatched = sa.select(sa.func.count()).select_from(events).where(events.c.dispatched_at.is_(None))
    waited = time.monotonic()
    deadline, fewest = waited + ENROLL_STALL_SECONDS, None
    with engine.connect() as conn:
        while (left := conn.execute(undispatched).scalar_one()) and time.monotonic() < deadline:
            if fewest is None or left < fewest:
                deadline, fewest = time.monotonic() + ENROLL_STALL_SECONDS, left
            conn.rollback()
            time.sleep(0.2)
        waited = time.monotonic() - waited
        started = conn.execute(
            sa.select(events.c.id, events.c.idempotency_key, events.c.received_at).where(
                events.c.name == "ecommerce.checkout_started"
            )
        ).all()
        enrolled = conn.execute(
            sa.select(enrollments.c.trigger_event_id, enrollments.c.created_at).where(
                enrollments.c.sequence_id == sequence_id
            )
        ).all()
    engine.dispose()
    per_event = Counter(e.trigger_event_id for e in enrolled)
    received = {e.id: e.received_at for e in started}
    measured = {e.id for e in started if e.idempotency_key.startswith(f"checkout:{measured_tag}-")}
    mine = [e for e in enrolled if e.trigger_event_id in measured]
    latency_ms = sorted((e.created_at - received[e.trigger_event_id]).total_seconds() * 1000 for e in mine)
    # How far enrolling trailed the load: the last enrollment against the last checkout received.
    trailed = (
        (max(e.created_at for e in mine) - max(received[i] for i in measured)).total_seconds()
        if mine
        else 0.0
    )

    def pct(p: float) -> float:
        return latency_ms[min(len(latency_ms) - 1, round(p * (len(latency_ms) - 1)))] if latency_ms else 0.0

    result = {
        "checkout_events": len(started),
        "enrollments": len(enrolled),
        "not_enrolled": sum(1 for i in received if i not in per_event),
        "enrolled_more_than_once": sum(1 for i in received if per_event[i] > 1),
        "enrolled_from_other_events": sum(n for i, n in per_event.items() if i not in received),
        "undispatched_events": left,
        "last_enrolled_after_last_received_s": round(trailed, 3),
        "waited_for_dispatch_after_checks_s": round(waited, 2),
        "latency_n": len(latency_ms),
        "latency_p50_ms": pct(0.5),
        "latency_p99_ms": pct(0.99),
        "latency_max_ms": latency_ms[-1] if latency_ms else 0.0,
    }
    result["ok"] = (
        not left
        and bool(started)
        and len(enrolled) == len(started)
        and all(per_event[i] == 1 for i in received)
        and not result["enrolled_from_other_events"]
    )
    return result


def verify(db_url: str, checks: dict) -> dict:
    answered = checks["ok_ids"]
    engine = sa.create_engine(sqlalchemy_url(db_url), poolclass=sa.NullPool)
    with engine.connect() as conn:
        keys = (
            conn.exec_driver_sql(
                "SELECT idempotency_key FROM events WHERE name = 'ecommerce.checkout_started'"
            )
            .scalars()
            .all()
        )
        checkouts = conn.exec_driver_sql("SELECT count(*) FROM checkouts").scalar_one()
    stored = {k.removeprefix("checkout:") for k in keys}
    result = {
        "events": len(keys),
        "checkouts": checkouts,
        "answered_2xx": len(answered),
        "retried_after_cutoff": checks["retried"],
        "identical_retry": checks["identical_retry"],
        "answered_not_stored": len(answered - stored),
        "stored_not_answered": len(stored - answered),
    }
    result["ok"] = (
        len(keys) == len(stored) == len(answered) == checkouts
        and not (answered ^ stored)
        and checks["identical_retry"]
    )
    return result


def post(base: str, key: str, checkout_id: str, surface: Surface = SURFACES["sequenzy"]) -> tuple[int, bytes]:
    body = surface.payload.read_text().replace("@ID@", checkout_id).encode()
    return send(base, surface.path, surface.auth(key), body)


def request(base: str, key: str, path: str, payload: dict) -> tuple[int, bytes]:
    return send(base, path, f"Bearer {key}", json.dumps(payload).encode())


def send(base: str, path: str, auth: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"{base}{path}",
        data=body,
        headers={"Authorization": auth, "Content-Type": "application/json", "revision": "2026-10-15"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- servers and databases -------------------------------------------------------------------------


def wait_healthy(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {base} did not come up")


# -- reporting -------------------------------------------------------------------------------------


def fmt_run(r: dict) -> str:
    text = (
        f"{r['rps']:8,.0f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
        f"non-2xx {r['non2xx']}  cpu {r['server_cpu']:.2f} cores, {r['cpu_ms_per_req']:.2f} ms/req"
    )
    if "mean_batch" in r:
        text += f"  batch {r['mean_batch']:.1f}"
    if "node_rps" in r:
        text += "  nodes " + " + ".join(f"{n:,.0f}" for n in r["node_rps"]) + " req/s"
    if "enroll_p50_ms" in r:
        late = r["verify"]["enrollment"]["last_enrolled_after_last_received_s"]
        text += (
            f"  enrolled p50 {r['enroll_p50_ms']:.0f} ms p99 {r['enroll_p99_ms']:.0f} ms (last {late:.1f} s)"
        )
    if "verify" in r:
        text += "  verify " + ("ok" if r["verify"]["ok"] else f"FAILED {r['verify']}")
    return text


def summarize(runs: list[dict], variants: list[Variant]) -> list[dict]:
    rows = []
    for v in variants:
        mine = [r for r in runs if r["server"] == v.name]
        row = {"server": v.name, "n": len(mine), "non2xx": sum(r["non2xx"] for r in mine)}
        stats = ("rps", "p50_ms", "p99_ms", "ratio", "server_cpu", "cpu_ms_per_req", "mean_batch")
        for k in (*stats, "enroll_p50_ms", "enroll_p99_ms"):
            values = [r[k] for r in mine if k in r]
            if values:
                row[k] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
        row["verified"] = all(r["verify"]["ok"] for r in mine) if v.db else None
        rows.append(row)
    return rows


def print_tables(runs: list[dict], summary: list[dict], args: argparse.Namespace) -> None:
    mode = "rows " + (
        args.rows or ("replay (idempotent path)" if args.replay else "insert (new checkoutId per request)")
    )
    mode += ", serve --no-worker" if args.api_only else ", serve with its in-process scheduler"
    if args.processes > 1:
        mode += f", serve --processes {args.processes}"
    if "with-sequence" in args.rows.split(","):
        mode += " (with-sequence: always in-process, one enabled sequence)"
    if "two-nodes" in args.rows.split(","):
        mode += " (two-nodes: two serve --no-worker, a wrk each with half the connections, rates summed)"
    print(f"\n{mode}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds\n")
    print("| round | server | req/s | p50 ms | p99 ms | non-2xx | ratio | enrolled p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        enrolled = f"{r['enroll_p50_ms']:.0f} / {r['enroll_p99_ms']:.0f}" if "enroll_p50_ms" in r else "-"
        print(
            f"| {r['round']} | {r['server']} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['non2xx']} | {r['ratio']:.2f} | {enrolled} |"
        )

    def mmm(stat: dict, f: str) -> str:
        return f"{stat['min']:{f}} / **{stat['median']:{f}}** / {stat['max']:{f}}"

    print("\nmin / **median** / max over rounds\n")
    print(
        "| server | req/s | p50 ms | p99 ms | non-2xx | ratio to echo | server CPU cores | CPU ms/req "
        "| mean batch | enrolled p99 ms | verified |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summary:
        batch = mmm(s["mean_batch"], ".1f") if "mean_batch" in s else "-"
        enrolled = mmm(s["enroll_p99_ms"], ".0f") if "enroll_p99_ms" in s else "-"
        verified = {None: "-", True: "yes", False: "**NO**"}[s["verified"]]
        print(
            f"| {s['server']} | {mmm(s['rps'], ',.0f')} | {mmm(s['p50_ms'], '.1f')} | "
            f"{mmm(s['p99_ms'], '.1f')} | {s['non2xx']} | {mmm(s['ratio'], '.2f')} | "
            f"{mmm(s['server_cpu'], '.2f')} | {mmm(s['cpu_ms_per_req'], '.2f')} | {batch} | {enrolled} | "
            f"{verified} |"
        )


def save(runs: list[dict], summary: list[dict], args: argparse.Namespace) -> None:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"ingest-{stamp}{'-replay' if args.replay and not args.rows else ''}.json"
    machine = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
    }
    path.write_text(
        json.dumps(
            {"when": stamp, "args": vars(args), "machine": machine, "runs": runs, "summary": summary},
            indent=1,
        )
    )
    print(f"\nwritten to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
