"""Automation benchmark: how fast a checkout enrolls, and how late due steps run when many fall due at once.

    .venv/bin/python bench/automations.py [--db sqlite|postgres|both] [--enrollments 10000] [--rate 200]
                                          [--delay-minutes 1] [--setups ...] [--profile]

Setups (`--db both` runs all three; `sqlite` the first; `postgres` the last two):
  sqlite-inproc      `cartback serve` on a fresh SQLite file (worker in-process)
  postgres-inproc    `cartback serve` on a fresh PostgreSQL database
  postgres-2workers  `cartback serve --no-worker` + 2 `cartback worker` processes, same database

Method (one run per setup, every process started fresh on an empty database, CARTBACK_TICK_SECONDS=1.0 --
the default -- set explicitly):
 1. Create and enable one Sequenzy-shaped abandoned-checkout sequence through the API: trigger
    ecommerce.checkout_started, enrollmentMode matching_field on checkoutId, stop on the checkout's own
    ecommerce.order_placed, one email step with `delay: {minutes: --delay-minutes}`.
 2. POST --enrollments checkouts (new checkoutId and customer each) at a steady --rate per second.
    Event -> enrollment latency = enrollments.created_at - events.received_at (both server clocks, read from
    the database afterwards).
 3. Each enrollment's delay starts when the worker first runs it (right after enrollment), so the email steps
    fall due over the same span as the posting: 10,000 checkouts at 200/s are posted in 50 s and their steps
    all come due inside one 60-second window, *after* posting has ended (delay 1 min > 50 s), so the due
    steps are measured on their own, not mixed with ingest. The due time of each step is read from its
    enrollment_history 'waiting' row ("delay until <iso>"); lateness = messages.created_at (when the step
    ran, server clock) - due. messages/s = messages / (last message - first due time).
    --rate higher (e.g. 2000) squeezes the same number of due steps into a few seconds (a burst).
Results are printed and written to bench/results/automations-<time>.json. With --profile, py-spy samples the
process(es) running the worker during the due window and the hottest frames are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import sqlalchemy as sa
from servers import cpu_seconds, drop_database, free_port, fresh_database, stop, wait_for_key

from cartback.store.db import sqlalchemy_url
from cartback.store.tables import enrollment_history, enrollments, events, messages

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
PG_BENCH_DB = "cartback_bench_automations"
TICK_SECONDS = "1.0"  # the default, set explicitly so the numbers say what they were measured with
UNTIL = re.compile(r"until (\S+)$")
GOAL_P99_LATENESS_S = 2.0
CONNECTIONS = 32  # keep-alive connections posting checkouts
IDLE_LEAVES = ("Condition.wait", "Queue.get", "select (selectors.py)", "_run_once", "wait (threading.py)")


@dataclass(frozen=True)
class Setup:
    name: str
    db: str
    workers: int  # 0: the worker runs inside `serve`


SETUPS = {
    "sqlite-inproc": Setup("sqlite-inproc", "sqlite", 0),
    "postgres-inproc": Setup("postgres-inproc", "postgres", 0),
    "postgres-2workers": Setup("postgres-2workers", "postgres", 2),
}


def sequence_body(delay_minutes: float) -> dict:
    return {
        "name": "Abandoned checkout (bench)",
        "trigger": "event_received",
        "eventName": "ecommerce.checkout_started",
        "enrollmentMode": "matching_field",
        "enrollmentFieldPath": "checkoutId",
        "stopCondition": {
            "type": "event_received",
            "value": "ecommerce.order_placed",
            "matchConfig": {
                "mode": "event_property",
                "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
            },
        },
        "steps": [
            {
                "type": "email",
                "delay": {"minutes": delay_minutes},
                "subject": "You left {{ event.items[0].title }} in your cart",
                "html": "<p>Hi {{ subscriber.firstName | default: 'there' }},</p>"
                "<p>{{ event.items[0].title }} is waiting: <a href='{{ event.checkoutUrl }}'>finish</a></p>",
            }
        ],
    }


def checkout_body(n: int, tag: str) -> dict:
    cid = f"{tag}-{n}"
    return {
        "checkoutId": cid,
        "totalCents": 15897,
        "currency": "USD",
        "checkoutUrl": f"https://shop.example.com/checkouts/{cid}/recover",
        "customer": {"email": f"{cid}@example.com", "firstName": "Jane", "lastName": "Doe"},
        "items": [
            {"productId": "prod_8841", "title": "Merino Crew Sweater", "quantity": 1, "priceCents": 8900},
            {"productId": "prod_1203", "title": "Wool Beanie", "quantity": 2, "priceCents": 2499},
        ],
    }


def main() -> None:
    args = parse_args()
    names = (
        args.setups
        or {
            "sqlite": ["sqlite-inproc"],
            "postgres": ["postgres-inproc", "postgres-2workers"],
            "both": list(SETUPS),
        }[args.db]
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="cartback-bench-auto-") as tmp:
        for name in names:
            print(
                f"== {name}: {args.enrollments} checkouts at {args.rate}/s, delay {args.delay_minutes} min",
                flush=True,
            )
            run = run_one(SETUPS[name], args, Path(tmp))
            runs.append(run)
            print(fmt_run(run), flush=True)
            save(runs, args, quiet=True)  # a long run stopped later keeps what it measured
    print_table(runs, args)
    save(runs, args)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--setups", nargs="+", choices=list(SETUPS), help="overrides --db")
    p.add_argument("--enrollments", type=int, default=10000)
    p.add_argument("--rate", type=float, default=200.0, help="checkouts posted per second")
    p.add_argument("--delay-minutes", type=float, default=1.0, help="the email step's delay")
    p.add_argument("--sync", choices=["FULL", "NORMAL"], default="FULL", help="SQLite synchronous")
    p.add_argument("--profile", action="store_true", help="py-spy the worker process(es) in the due window")
    p.add_argument("--batch", type=int, default=0, help="CARTBACK_WORKER_BATCH (0: the default)")
    args = p.parse_args()
    if args.enrollments / args.rate >= args.delay_minutes * 60:
        print("note: posting takes longer than the delay; due steps will overlap ingest", file=sys.stderr)
    return args


# -- one setup -------------------------------------------------------------------------------------


def run_one(setup: Setup, args: argparse.Namespace, tmp: Path) -> dict:
    db_url = fresh_database(setup.db, tmp / f"{setup.name}.db", PG_BENCH_DB)
    commit = git_head()  # the tree may move between setups when others commit
    load_before = os.getloadavg()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        CARTBACK_DATABASE_URL=db_url,
        CARTBACK_TICK_SECONDS=TICK_SECONDS,
        CARTBACK_LOG_LEVEL="info",
        CARTBACK_SQLITE_SYNCHRONOUS=args.sync,
        # One key sends the whole load; this measures the engine, not the rate limiter.
        CARTBACK_RATE_LIMIT_BURST="0",
        CARTBACK_RATE_LIMIT_STEADY="0",
    )
    if args.batch:
        env["CARTBACK_WORKER_BATCH"] = str(args.batch)
    procs: list[tuple[str, subprocess.Popen]] = []
    logs: list[Path] = []

    def spawn(label: str, cmd: list) -> subprocess.Popen:
        log_path = tmp / f"{setup.name}-{label}.log"
        logs.append(log_path)
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((label, proc))
        return proc

    try:
        serve_cmd = [BIN / "cartback", "serve", "--port", str(port)]
        if setup.workers:
            serve_cmd.append("--no-worker")
        server = spawn("serve", serve_cmd)
        key = wait_for_key(logs[0], server, env)
        wait_healthy(base, server)
        for i in range(setup.workers):
            spawn(f"worker{i + 1}", [BIN / "cartback", "worker"])
        time.sleep(1.0 if setup.workers else 0.0)
        worker_pids = [p.pid for label, p in procs if label != "serve"] or [server.pid]

        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        created = client.post("/api/v1/sequences", json=sequence_body(args.delay_minutes))
        created.raise_for_status()
        seq_id = created.json()["sequence"]["id"]
        client.post(f"/api/v1/sequences/{seq_id}/enable").raise_for_status()

        cpu0 = {label: cpu_seconds(p.pid) for label, p in procs}
        post_stats = asyncio.run(post_checkouts(base, key, args.enrollments, args.rate, setup.name))
        cpu_post = {label: cpu_seconds(p.pid) - cpu0[label] for label, p in procs}
        print(
            f"   posted {post_stats['ok']} ok / {post_stats['failed']} failed in "
            f"{post_stats['seconds']:.1f} s ({post_stats['ok'] / post_stats['seconds']:.0f}/s)",
            flush=True,
        )

        engine = sa.create_engine(sqlalchemy_url(db_url), poolclass=sa.NullPool)
        window = wait_for_messages(engine, post_stats["ok"], args, procs, worker_pids, tmp, setup)
        for label, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{label} exited early; see {tmp}")
    finally:
        for _label, proc in reversed(procs):
            stop(proc)
    run = analyse(engine, post_stats, window)
    run["loadavg_before_after"] = [load_before, os.getloadavg()]
    run["git"] = commit
    run.update(
        setup=setup.name,
        db=setup.db,
        worker_processes=setup.workers or 1,
        in_process=not setup.workers,
        cpu_posting_s=cpu_post,
    )
    run["writer_log"] = [line for p in logs for line in p.read_text().splitlines() if "writer:" in line]
    engine.dispose()
    drop_database(setup.db, PG_BENCH_DB)
    return run


async def post_checkouts(base: str, key: str, n: int, rate: float, tag: str) -> dict:
    """POST n checkouts, request i due at start + i/rate, over CONNECTIONS keep-alive connections with
    pre-serialised HTTP/1.1 requests (httpx cost ~10 ms CPU per request on the loaded 2-core box and became
    the bottleneck; this costs a few hundred microseconds)."""
    host, port = base.removeprefix("http://").split(":")
    bodies = [orjson.dumps(checkout_body(i, tag)) for i in range(n)]
    head = (
        f"POST /api/v1/checkouts HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    failed = 0
    send_lag: list[float] = []
    start = time.monotonic()

    async def connection() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, int(port))
        while (i := await queue.get()) is not None:
            send_lag.append(time.monotonic() - (start + i / rate))
            for _attempt in range(3):
                try:
                    writer.write(head + str(len(bodies[i])).encode() + b"\r\n\r\n" + bodies[i])
                    status_line = await reader.readline()
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    await reader.readexactly(length)
                    if status_line.split()[1].startswith(b"2"):
                        break
                except (OSError, IndexError, asyncio.IncompleteReadError):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
            else:
                failed += 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    seconds = time.monotonic() - start
    send_lag.sort()
    return {
        "ok": n - failed,
        "failed": failed,
        "seconds": seconds,
        "offered_rate": rate,
        "client_send_lag_p99_s": send_lag[int(0.99 * (len(send_lag) - 1))],
        "client_cpu_s": time.process_time(),
    }


def wait_for_messages(
    engine: sa.Engine, expected: int, args: argparse.Namespace, procs, worker_pids, tmp: Path, setup: Setup
) -> dict:
    """Wait until every enrollment has its message; sample CPU (and py-spy) over the due window."""

    def count(table: sa.Table, *where) -> int:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()

    def first_due() -> datetime | None:
        with engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(enrollments.c.next_run_at)).where(enrollments.c.status == "active")
            ).scalar_one()
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    deadline = time.monotonic() + args.delay_minutes * 60 + expected / 20 + 300
    # The due window starts at the first due step (or now, if the worker is behind and steps are overdue).
    due = None
    while due is None and time.monotonic() < deadline:
        due = first_due()
        time.sleep(0.2)
    wait = (due - datetime.now(UTC)).total_seconds() if due else 0
    if wait > 0.2:
        time.sleep(wait - 0.2)
    cpu0 = {label: cpu_seconds(p.pid) for label, p in procs}
    sys0, t0 = system_cpu(), time.monotonic()
    spies = []
    if args.profile:
        spy = shutil.which("py-spy") or str(BIN / "py-spy")
        span = 3600
        for pid in worker_pids:
            out = tmp / f"{setup.name}-{pid}.spy"
            spies.append(
                (
                    out,
                    subprocess.Popen(
                        [
                            spy,
                            "record",
                            "--format",
                            "raw",
                            "--rate",
                            "200",
                            "-d",
                            str(span),
                            "-p",
                            str(pid),
                            "-o",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    ),
                )
            )
    while time.monotonic() < deadline and count(messages) < expected:
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    cpu = {label: (cpu_seconds(p.pid) - cpu0[label]) / elapsed for label, p in procs}
    busy = (system_cpu() - sys0) / elapsed
    profile = None
    if spies:
        stacks: Counter[str] = Counter()
        for out, proc in spies:
            proc.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            proc.wait()
            if out.exists():
                for line in out.read_text().splitlines():
                    stack, _, n = line.rpartition(" ")
                    if n.isdigit():
                        stacks[stack] += int(n)
        profile = summarize_profile(stacks)
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        raw = results / f"automations-{setup.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.spy.txt"
        raw.write_text("".join(f"{s} {n}\n" for s, n in stacks.items()))
        profile["raw"] = str(raw.relative_to(REPO))
    return {"cores_busy_by_process": cpu, "machine_cores_busy": busy, "profile": profile}


# -- analysis --------------------------------------------------------------------------------------


def analyse(engine: sa.Engine, post_stats: dict, window: dict) -> dict:
    with engine.connect() as conn:
        received = dict(
            conn.execute(
                sa.select(events.c.id, events.c.received_at).where(
                    events.c.name == "ecommerce.checkout_started"
                )
            ).all()
        )
        enrolled = conn.execute(
            sa.select(enrollments.c.id, enrollments.c.trigger_event_id, enrollments.c.created_at)
        ).all()
        waits = conn.execute(
            sa.select(enrollment_history.c.enrollment_id, enrollment_history.c.detail).where(
                enrollment_history.c.action == "waiting"
            )
        ).all()
        sent = conn.execute(sa.select(messages.c.enrollment_id, messages.c.created_at)).all()
        sent_history = conn.execute(
            sa.select(sa.func.count())
            .select_from(enrollment_history)
            .where(enrollment_history.c.action == "sent")
        ).scalar_one()
    enroll_latency = sorted((e.created_at - received[e.trigger_event_id]).total_seconds() for e in enrolled)
    due: dict[str, datetime] = {}
    for w in waits:
        due[w.enrollment_id] = datetime.fromisoformat(UNTIL.search(w.detail).group(1))
    ran = {m.enrollment_id: m.created_at for m in sent}
    lateness = sorted((ran[e] - due[e]).total_seconds() for e in ran if e in due)
    dues = sorted(due.values())
    first_due, last_due = dues[0], dues[-1]
    last_msg = max(ran.values())
    first_msg = min(ran.values())
    return {
        "posting": post_stats,
        "events": len(received),
        "enrollments": len(enrolled),
        "messages": len(sent),
        "sent_history_rows": sent_history,
        "exactly_once": len(sent) == len(ran) == len(enrolled) == sent_history == post_stats["ok"],
        "enroll_latency_s": stats(enroll_latency),
        "due_spread_s": (last_due - first_due).total_seconds(),
        "due_rate_per_s": len(dues) / max((last_due - first_due).total_seconds(), 1e-9),
        "lateness_s": stats(lateness),
        "messages_per_s": len(sent) / max((last_msg - first_due).total_seconds(), 1e-9),
        "drain_messages_per_s": len(sent) / max((last_msg - first_msg).total_seconds(), 1e-9),
        "last_message_after_last_due_s": (last_msg - last_due).total_seconds(),
        "goal_p99_lateness_s": GOAL_P99_LATENESS_S,
        "goal_met": lateness[int(0.99 * (len(lateness) - 1))] < GOAL_P99_LATENESS_S,
        **window,
    }


def stats(values: list[float]) -> dict:
    if not values:
        return {}

    def pct(p: float) -> float:
        return values[min(len(values) - 1, round(p * (len(values) - 1)))]

    return {
        "n": len(values),
        "min": values[0],
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": values[-1],
        "mean": statistics.fmean(values),
    }


def summarize_profile(stacks: Counter[str]) -> dict:
    """Inclusive share of samples per frame (a frame counted once per stack), the top ones."""
    total = sum(n for s, n in stacks.items() if not any(w in s.rsplit(";", 1)[-1] for w in IDLE_LEAVES)) or 1
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, n in stacks.items():
        leaf = stack.rsplit(";", 1)[-1]
        if any(w in leaf for w in IDLE_LEAVES):
            continue  # a thread waiting for work, not doing it
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            for f in stack.split(";")
            if f
        ]
        for f in set(frames):
            inclusive[f] += n
        if frames:
            own[frames[-1]] += n
    return {
        "samples": total,
        "inclusive_top": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(45)],
        "self_top": [(f, round(100 * n / total, 1)) for f, n in own.most_common(25)],
    }


# -- servers and databases -------------------------------------------------------------------------


def git_head() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() + ("+dirty src" if dirty.stdout.strip() else "")


def wait_healthy(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on {base} did not come up")


def system_cpu() -> float:
    """Busy CPU seconds of the whole machine (every process, PostgreSQL included)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# -- reporting -------------------------------------------------------------------------------------


def fmt_run(r: dict) -> str:
    e, lt = r["enroll_latency_s"], r["lateness_s"]
    text = (
        f"   enroll latency p50 {e['p50']:.3f} s p99 {e['p99']:.3f} s max {e['max']:.3f} s | "
        f"{r['messages']} due in {r['due_spread_s']:.1f} s ({r['due_rate_per_s']:.0f}/s): lateness "
        f"p50 {lt['p50']:.3f} s p99 {lt['p99']:.3f} s max {lt['max']:.3f} s, {r['messages_per_s']:.0f} msg/s "
        f"| exactly once: {r['exactly_once']} | load avg {r['loadavg_before_after'][0][0]:.1f}"
        f"->{r['loadavg_before_after'][1][0]:.1f} | cores busy {r['machine_cores_busy']:.2f} "
        + " ".join(f"{k}={v:.2f}" for k, v in r["cores_busy_by_process"].items())
    )
    if r.get("profile"):
        text += "\n   profile (inclusive % of samples in the worker process(es) during the due window):\n"
        text += "\n".join(f"     {pct:5.1f}%  {f}" for f, pct in r["profile"]["inclusive_top"])
        text += "\n   self time:\n" + "\n".join(
            f"     {pct:5.1f}%  {f}" for f, pct in r["profile"]["self_top"]
        )
    return text


def print_table(runs: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\n{args.enrollments} checkouts posted at {args.rate:g}/s, one email step with a "
        f"{args.delay_minutes:g}-minute delay; CARTBACK_TICK_SECONDS={TICK_SECONDS} (default); "
        f"SQLite synchronous={args.sync}\n"
    )
    print(
        "| setup | enroll p50 s | enroll p99 s | enroll max s | due spread s | lateness p50 s | "
        "lateness p99 s | lateness max s | msg/s | p99 < 2 s | exactly once | cartback cores | machine cores "
        "| load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        e, lt = r["enroll_latency_s"], r["lateness_s"]
        print(
            f"| {r['setup']} | {e['p50']:.3f} | {e['p99']:.3f} | {e['max']:.3f} | {r['due_spread_s']:.1f} | "
            f"{lt['p50']:.3f} | {lt['p99']:.3f} | {lt['max']:.3f} | {r['messages_per_s']:.0f} | "
            f"{'yes' if r['goal_met'] else '**no**'} | {'yes' if r['exactly_once'] else '**NO**'} | "
            f"{sum(r['cores_busy_by_process'].values()):.2f} | {r['machine_cores_busy']:.2f} | "
            f"{r['loadavg_before_after'][0][0]:.1f} |"
        )
    print(
        "\n(due window: cartback cores = CPU of the cartback processes, machine cores = every process "
        "incl. PostgreSQL and anything else running on the box; load avg = 1-min load when the run began)"
    )


_STAMP = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def save(runs: list[dict], args: argparse.Namespace, *, quiet: bool = False) -> None:
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = _STAMP
    path = out_dir / f"automations-{stamp}.json"
    machine = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "git": git_head(),
    }
    path.write_text(
        json.dumps(
            {
                "when": stamp,
                "args": vars(args),
                "tick_seconds": float(TICK_SECONDS),
                "machine": machine,
                "runs": runs,
            },
            indent=1,
            default=str,
        )
    )
    if not quiet:
        print(f"\nwritten to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
