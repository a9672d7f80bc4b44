"""`cartback serve --processes 2`: two server processes answer on one port. Whichever of them a client
reaches, the metrics are the sums over both and one key's rate limit is one budget; a child that dies is
replaced (the worker's too); a kill -9 of the parent takes its children with it, so the port is free for
the next start, and nothing acknowledged is lost; SIGTERM stops them all.

Which child accepts a new connection is the kernel's choice. To send requests to one child on purpose,
the other is stopped (SIGSTOP) meanwhile: a stopped process takes no connection from the shared socket."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

PROCESSES = ["--processes", "2"]
CHECKOUT = {"customer": {"email": "two@example.com"}, "totalCents": 1000, "currency": "USD"}


def children(pid: int) -> list[int]:
    """The server processes under `serve`'s parent (multiprocessing's resource tracker is not one)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found if "spawn_main" in _cmdline(c)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(check, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextlib.contextmanager
def only(pids: list[int], chosen: int) -> Iterator[None]:
    """Every other child stopped, so new connections go to `chosen`."""
    others = [p for p in pids if p != chosen]
    for p in others:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in others:
            os.kill(p, signal.SIGCONT)


def post_checkout(server, key: str, checkout_id: str) -> httpx.Response:
    # A new connection per request (no client kept): the kernel picks a child for each.
    return httpx.post(
        server.api + "/checkouts",
        json={**CHECKOUT, "checkoutId": checkout_id},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


SEQUENZY_REQUESTS = re.compile(r'^cartback_http_requests_total\{[^}]*surface="sequenzy"[^}]*\} (\S+)$', re.M)


def requests_counted(server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in SEQUENZY_REQUESTS.finditer(text))


def test_serve_processes_metrics_count_the_requests_of_every_child(start_server, db_url, make_workspace):
    server = start_server(db_url, args=PROCESSES)
    pids = children(server.proc.pid)
    assert len(pids) == 2
    tenant = make_workspace()
    for n, pid in enumerate(pids):
        with only(pids, pid):
            for i in range(10):
                assert post_checkout(server, tenant.key, f"chk-{n}-{i}").status_code == 200
    # Each child answered ten; whichever answers the scrape counts all twenty.
    for _ in range(6):
        assert requests_counted(server) == 20
    for pid in pids:
        with only(pids, pid):
            assert requests_counted(server) == 20


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_processes_spend_one_rate_limit_budget(start_server, db_url, make_workspace):
    steady = 6
    env = {
        "CARTBACK_RATE_LIMIT_BURST": "1000",
        "CARTBACK_RATE_LIMIT_STEADY": str(steady),
        "CARTBACK_REFUSAL_DELAY_SECONDS": "0",
    }
    server = start_server(db_url, env=env, args=PROCESSES)
    pids = children(server.proc.pid)
    tenant = make_workspace()
    if time.time() % 60 > 50:  # keep the requests below inside one minute's window
        time.sleep(60 - time.time() % 60 + 0.1)
    statuses = []
    for n, pid in enumerate(pids):
        with only(pids, pid):
            statuses += [post_checkout(server, tenant.key, f"chk-{n}-{i}").status_code for i in range(5)]
    # Five granted by the first child, one left for the second: not five each.
    assert statuses == [200] * 6 + [429] * 4


def test_serve_processes_a_dead_child_is_replaced_and_sigterm_stops_all(start_server, db_url, make_workspace):
    server = start_server(db_url, args=PROCESSES)
    first = children(server.proc.pid)
    tenant = make_workspace()
    worker_child = min(first)  # started first: the one running the worker
    os.kill(worker_child, signal.SIGKILL)
    wait_until(lambda: len(children(server.proc.pid)) == 2 and worker_child not in children(server.proc.pid))
    assert post_checkout(server, tenant.key, "chk-after").status_code == 200
    # The replacement runs the worker: its start is logged a second time.
    assert server.log is not None
    wait_until(lambda: len(re.findall(r"worker \S+ started", server.log.read_text())) == 2)
    now = children(server.proc.pid)
    server.proc.terminate()
    assert server.proc.wait(30) == 0
    assert not any(alive(p) for p in now)


def test_serve_processes_kill9_of_the_parent_takes_the_children_and_loses_nothing(
    start_server, db_url, make_workspace
):
    server = start_server(db_url, args=PROCESSES)
    pids = children(server.proc.pid)
    tenant = make_workspace()
    acked = []
    for n, pid in enumerate(pids):
        with only(pids, pid):
            for i in range(5):
                res = post_checkout(server, tenant.key, f"chk-{n}-{i}")
                assert res.status_code == 200
                acked.append((f"chk-{n}-{i}", res.json()["eventId"]))
    server.kill9()
    wait_until(lambda: not any(alive(p) for p in pids), seconds=5)
    # The port is free again: the same server starts on it, and every acknowledged checkout is there.
    server.start()
    for checkout_id, event_id in acked:
        res = post_checkout(server, tenant.key, checkout_id)
        assert res.status_code == 200 and res.json()["eventId"] == event_id
