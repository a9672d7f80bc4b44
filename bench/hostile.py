"""One workspace attacks, another ingests: does the other notice?

    .venv/bin/python bench/hostile.py [--db sqlite|postgres] [--quiet 20] [--attack 20] [--rounds 4]
                                      [--rate 40] [--sign-in-clients 32] [--template-clients 2]
                                      [--template-loop N] [--flood distributed|single]
                                      [--set CARTBACK_X=V ...] [--json PATH]

A fresh database with two workspaces: the attacker's (a dashboard user and an API key) and the victim's
(an API key). One `cartback serve` with its default settings. The victim ingests checkouts at a steady
`--rate` per second (paced, from a process of its own) while latency is recorded per request:

1. **quiet**: the victim alone, `--quiet` seconds in all;
2. **attack**: the same, while the attacker floods the sign-in page with wrong passwords from
   `--sign-in-clients` threads and renders its largest template through the transactional preview
   (`preview: true`) from `--template-clients` threads, `--attack` seconds in all.

The two alternate in `--rounds` windows each, so a shared machine's load drifting during the run weighs on
both phases alike.

`--flood distributed` (the default) gives every sign-in attempt a made-up address and a client address of
its own (`X-Forwarded-For`, which the server trusts from 127.0.0.1 as from a local proxy), so no per-address
or per-client limit stops it: only the bound on concurrent password hashes does. `--flood single` sends
every attempt for one address from one client, as a naive script would: the limits stop it.

The template is `{% for i in (1..N) %}{% for j in (1..N) %}x{% endfor %}{% endfor %}`: with
`--template-loop N` as given, else the largest N up to 1000 the preview accepts (a template over the
server's Liquid limits is refused; without limits 1000 is taken, and one render takes seconds).

Printed: the victim's p50/p90/p99/max and errors in each phase, the ratio of the attack p99 to the quiet
p99 (the goal is at most 2), the cores' worth of CPU the server's process and its render and hash processes
used in each phase (CPU time, which a busy machine changes far less than latency) and how long the
server's threads waited, runnable, for a core (/proc/PID/task/*/schedstat), what the attacker's
requests got, and the server's RSS before, after each phase and its peak (VmHWM) from /proc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from servers import cpu_seconds, drop_database, free_port, fresh_database, stop

from cartback.core import users
from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database

PG_BENCH_DB = "cartback_bench_hostile"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "the attacker does not know this"


def _setup(url: str) -> dict[str, str]:
    db = Database(url)
    db.migrate()
    owner = f"owner-{secrets.token_hex(3)}@attacker.example"

    def create(tx: workspaces.Tx) -> dict[str, str]:
        now = system_clock.now()
        attacker = workspaces.create_workspace(tx, "attacker", now)
        victim = workspaces.create_workspace(tx, "victim", now)
        users.create_user(tx, attacker.name, owner, PASSWORD, now)
        return {
            "attacker_key": workspaces.create_api_key(tx, attacker.id, now)[1],
            "victim_key": workspaces.create_api_key(tx, victim.id, now)[1],
            "owner": owner,
        }

    made = db.write_sync(create)
    db.close()
    return made


def _rss(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended
            continue
    return found + [grandchild for child in found for grandchild in _children(child)]


def _cpu(pid: int) -> tuple[float, float, dict[str, float]]:
    """CPU seconds so far of the server's own process and of its render and hash processes (a live
    child's CPU is not in its parent's figures), and the seconds each of the server's threads has waited,
    runnable, for a core (the second figure of its /proc schedstat)."""
    waited = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, IndexError):  # a thread that ended
            waited[task.name] = int((task / "schedstat").read_text().split()[1]) / 1e9
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in _children(pid)), waited


class _CpuShare:
    """Cores' worth of CPU the server and its processes used over the phases timed with `during`, and how
    long the server's threads waited for a core, per second of those phases."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seconds = self.own = self.children = self.waited = 0.0

    @contextlib.contextmanager
    def during(self) -> Any:
        started, (own, children, waited) = time.monotonic(), _cpu(self.pid)
        yield
        own_after, children_after, waited_after = _cpu(self.pid)
        self.seconds += time.monotonic() - started
        self.own += own_after - own
        self.children += children_after - children
        # Threads alive at both ends (the thread pool's come and go).
        self.waited += sum(waited_after[tid] - waited[tid] for tid in waited.keys() & waited_after.keys())

    def figures(self) -> dict[str, float]:
        return {
            "server": self.own / self.seconds,
            "render_and_hash": self.children / self.seconds,
            "server_waited_for_a_core": self.waited / self.seconds,
        }


# -- the victim --------------------------------------------------------------------------------------


def _victim(base: str, key: str, rate: float, seconds: float, results: Any) -> None:
    """Paced checkouts from 4 threads at `rate` per second in all; each request's latency in ms."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    threads = 4
    interval = threads / rate
    deadline = time.monotonic() + seconds

    def run(n: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            due = time.monotonic() + n * interval / threads
            i = 0
            while due < deadline:
                time.sleep(max(0.0, due - time.monotonic()))
                body = {
                    "checkoutId": f"v-{n}-{i}-{secrets.token_hex(3)}",
                    "customer": {"email": f"shopper{n}-{i}@victim.example"},
                    "totalCents": 4200,
                    "currency": "USD",
                }
                started = time.perf_counter()
                try:
                    status = client.post("/api/v1/checkouts", json=body).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__  # type: ignore[assignment]
                took = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(took)
                    if status != 200:
                        failures[str(status)] += 1
                due += interval
                i += 1

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put({"latencies": latencies, "failures": dict(failures)})


def _measure(base: str, key: str, rate: float, seconds: float) -> dict[str, Any]:
    results: Any = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_victim, args=(base, key, rate, seconds, results))
    proc.start()
    got: dict[str, Any] = results.get()
    proc.join()
    return got


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    lat = sorted(x for run in runs for x in run["latencies"])
    failures: Counter[str] = Counter()
    for run in runs:
        failures.update(run["failures"])
    return {
        "requests": len(lat),
        "p50_ms": statistics.median(lat),
        "p90_ms": lat[min(len(lat) - 1, int(len(lat) * 0.90))],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": lat[-1],
        "failures": dict(failures),
    }


# -- the attacker ------------------------------------------------------------------------------------


def _template(n: int) -> str:
    return f"{{% for i in (1..{n}) %}}{{% for j in (1..{n}) %}}x{{% endfor %}}{{% endfor %}}"


def _preview(client: httpx.Client, n: int) -> httpx.Response:
    return client.post(
        "/api/v1/transactional/send",
        json={"to": "me@attacker.example", "subject": "t", "body": _template(n), "preview": True},
        timeout=120,
    )


def _largest_template(base: str, key: str) -> int:
    """The largest N <= 1000 whose N x N loop the preview accepts (a binary search: the server's Liquid
    limits refuse larger ones at once)."""
    low, high = 0, 1000
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        while low < high:
            n = (low + high + 1) // 2
            if _preview(client, n).status_code == 200:
                low = n
            else:
                high = n - 1
    if not low:
        raise SystemExit("the preview refuses even a 1 x 1 loop; give --template-loop")
    return low


def _attack(
    base: str, key: str, owner: str, clients: int, template_clients: int, loop: int, flood: str, stop_at: Any
) -> dict[str, Any]:
    statuses: dict[str, Counter[str]] = {"sign-in": Counter(), "template": Counter()}
    lock = threading.Lock()

    def note(kind: str, status: object) -> None:
        with lock:
            statuses[kind][str(status)] += 1

    def sign_in(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop_at.is_set():
                headers = {}
                email = owner
                if flood == "distributed":
                    headers["X-Forwarded-For"] = f"10.{n}.{random.randrange(256)}.{random.randrange(1, 255)}"
                    email = f"guess-{secrets.token_hex(4)}@attacker.example"
                try:
                    page = client.get("/app/login", headers=headers)
                    token = CSRF.search(page.text)
                    reply = client.post(
                        "/app/login",
                        headers=headers,
                        data={
                            "email": email,
                            "password": "wrong guess",
                            "csrf_token": token.group(1) if token else "",
                        },
                    )
                    note("sign-in", reply.status_code)
                except httpx.HTTPError as exc:
                    note("sign-in", type(exc).__name__)

    def render(n: int) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            while not stop_at.is_set():
                try:
                    note("template", _preview(client, loop).status_code)
                except httpx.HTTPError as exc:
                    note("template", type(exc).__name__)

    pool = [threading.Thread(target=sign_in, args=(n,), daemon=True) for n in range(clients)]
    pool += [threading.Thread(target=render, args=(n,), daemon=True) for n in range(template_clients)]
    for t in pool:
        t.start()
    stop_at.wait()
    for t in pool:
        t.join(timeout=130)
    return {kind: dict(counts) for kind, counts in statuses.items()}


def _attacker_process(args: tuple[Any, ...], results: Any) -> None:
    # A real attacker's CPU is elsewhere; here its client shares the machine with the victim's client and
    # the server, so it runs at the lowest priority: what is measured is the server's isolation, not how
    # much CPU 32 Python client threads take from the victim's own client.
    os.nice(19)
    results.put(_attack(*args))


# -- the run -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds of the victim alone")
    parser.add_argument("--attack", type=float, default=20.0, help="seconds of the victim under attack")
    parser.add_argument("--rate", type=float, default=40.0, help="the victim's checkouts per second")
    parser.add_argument("--rounds", type=int, default=4, help="quiet/attack windows, alternating")
    parser.add_argument("--sign-in-clients", type=int, default=32)
    parser.add_argument("--template-clients", type=int, default=2)
    parser.add_argument("--template-loop", type=int, default=0, help="N of the N x N loop; 0: probe")
    parser.add_argument("--flood", choices=("distributed", "single"), default="distributed")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting (CARTBACK_...)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="cartback-hostile-"))
    url = fresh_database(args.db, tmp / "hostile.db", PG_BENCH_DB)
    made = _setup(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTBACK_")}
    env.update({"CARTBACK_DATABASE_URL": url, "CARTBACK_LOG_LEVEL": "warning"})
    env.update(dict(item.split("=", 1) for item in args.set))
    log = (tmp / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "cartback", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"cartback serve did not start; see {tmp / 'serve.log'}")
            time.sleep(0.1)
        _measure(base, made["victim_key"], args.rate, 3)  # warm-up
        loop = args.template_loop or _largest_template(base, made["attacker_key"])
        rss_start = _rss(server.pid)
        quiet_runs: list[dict[str, Any]] = []
        attack_runs: list[dict[str, Any]] = []
        attack: dict[str, Counter[str]] = {"sign-in": Counter(), "template": Counter()}
        rss_attack: dict[str, float] = {}
        cpu_quiet, cpu_attack = _CpuShare(server.pid), _CpuShare(server.pid)
        attacker_cpu = 0.0
        # Quiet and attacked windows alternate, so the load of a shared machine drifting during the run
        # falls on both alike.
        for _ in range(args.rounds):
            with cpu_quiet.during():
                quiet_runs.append(_measure(base, made["victim_key"], args.rate, args.quiet / args.rounds))
            rss_quiet = _rss(server.pid)
            stop_at = multiprocessing.Event()
            results: Any = multiprocessing.Queue()
            attacker = multiprocessing.Process(
                target=_attacker_process,
                args=(
                    (
                        base,
                        made["attacker_key"],
                        made["owner"],
                        args.sign_in_clients,
                        args.template_clients,
                        loop,
                        args.flood,
                        stop_at,
                    ),
                    results,
                ),
            )
            attacker.start()
            time.sleep(1.0)  # the flood is under way before the victim's clock starts
            attacker_before = cpu_seconds(attacker.pid)
            with cpu_attack.during():
                attack_runs.append(_measure(base, made["victim_key"], args.rate, args.attack / args.rounds))
            attacker_cpu += cpu_seconds(attacker.pid) - attacker_before
            rss_now = _rss(server.pid)
            rss_attack = {k: max(v, rss_attack.get(k, 0.0)) for k, v in rss_now.items()}
            stop_at.set()
            for kind, counts in results.get().items():
                attack[kind].update(counts)
            attacker.join()
            time.sleep(1.0)  # what the flood left queued drains before the next quiet window
        quiet, attacked = _summary(quiet_runs), _summary(attack_runs)
        rss_end = _rss(server.pid)
    finally:
        stop(server)
        log.close()
        drop_database(args.db, PG_BENCH_DB)

    figures = {
        "db": args.db,
        "flood": args.flood,
        "template_loop": loop,
        "quiet": quiet,
        "attack": attacked,
        "p99_ratio": attacked["p99_ms"] / quiet["p99_ms"],
        "attacker": {kind: dict(counts) for kind, counts in attack.items()},
        "cores": {"quiet": cpu_quiet.figures(), "attack": cpu_attack.figures()},
        "attacker_client_cores": attacker_cpu / cpu_attack.seconds,
        "rss_mib": {"start": rss_start, "after_quiet": rss_quiet, "under_attack": rss_attack, "end": rss_end},
    }
    print(f"database {args.db}; flood {args.flood}; template {loop} x {loop} loop; victim {args.rate:g}/s")
    for name, phase in (("quiet", quiet), ("attack", attacked)):
        print(
            f"  victim {name:6}: {phase['requests']} checkouts, p50 {phase['p50_ms']:.1f} ms, "
            f"p90 {phase['p90_ms']:.1f} ms, p99 {phase['p99_ms']:.1f} ms, max {phase['max_ms']:.1f} ms, "
            f"failures {phase['failures'] or 0}"
        )
    print(f"  p99 under attack / quiet: {figures['p99_ratio']:.2f} (goal: at most 2)")
    for name, cores in figures["cores"].items():
        print(
            f"  cores used {name:6}: server {cores['server']:.2f}, "
            f"render and hash processes {cores['render_and_hash']:.2f}; "
            f"server threads waited for a core {cores['server_waited_for_a_core'] * 1000:.0f} ms a second"
        )
    print(f"  the attacker's client process used {figures['attacker_client_cores']:.2f} of a core")
    print(f"  attacker's sign-ins: {dict(attack['sign-in'])}; template previews: {dict(attack['template'])}")
    print(
        f"  server RSS MiB: start {rss_start['VmRSS']:.0f}, after quiet {rss_quiet['VmRSS']:.0f}, "
        f"under attack (most) {rss_attack['VmRSS']:.0f}, end {rss_end['VmRSS']:.0f}, "
        f"peak {rss_end['VmHWM']:.0f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
