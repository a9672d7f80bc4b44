"""SIGTERM is a clean stop, on a real SQLite file and on PostgreSQL.

200 abandoned checkouts fall due for an email each, sent over SMTP to a sink that takes 0.1 s per message,
while a stream of 1,000 checkouts comes in. `cartback serve` is sent SIGTERM in the middle of both, then a
`cartback worker` (scraped on --metrics-port) in the middle of what is left, then a second worker finishes.
Each stopped process must exit in under 10 s leaving no lease behind; every acknowledged checkout must be
stored; no address may get its email twice and none may end `unknown` (a graceful stop never abandons a
send half-way); and with leases of 60 s, the next process finishes the rest long before any could expire.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from cartback.core import checkouts, sequences, subscribers
from cartback.core.clock import system_clock
from cartback.store.db import Database
from cartback.store.tables import enrollments, events, message_delivery, messages

sys.path.insert(0, str(Path(__file__).parent.parent))
from smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

DUE = 200
STREAM = 1000
CONNECTIONS = 8
EXIT_WITHIN = 10.0

FLOW = {
    "name": "abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "subject": "Your cart", "html": "<p>{{ event.checkoutId }}</p>"}],
}


def seed_due_sends(db: Database, workspace_id: str) -> None:
    """An enabled flow and DUE checkouts for it: once dispatched, each is an email step due now."""
    now = system_clock.now()

    def write(tx: Any) -> None:
        sequences.create(tx, workspace_id, FLOW, now, status="active")
        for i in range(DUE):
            data = checkouts.CheckoutInput(
                checkout_id=f"due-{i}",
                customer=subscribers.Identity(email=f"due{i}-{workspace_id}@example.com"),
                total_cents=100,
            )
            checkouts.record_checkout(tx, workspace_id, data, now)

    db.write_sync(write)


class Stream:
    """Checkouts POSTed from a thread over CONNECTIONS connections; `acked` holds what got a 2xx."""

    def __init__(self, api: str, key: str) -> None:
        self.api, self.key = api, key
        self.acked: dict[str, str] = {}  # checkoutId -> eventId
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        todo = collections.deque(range(STREAM))
        async with httpx.AsyncClient(
            base_url=self.api, headers={"Authorization": f"Bearer {self.key}"}, timeout=15
        ) as client:

            async def post() -> None:
                while todo:
                    i = todo.popleft()
                    body = {
                        "checkoutId": f"s-{i}",
                        "customer": {"email": f"s{i}@example.com"},
                        "totalCents": 1,
                    }
                    try:
                        res = await client.post("/checkouts", json=body)
                    except httpx.TransportError:
                        await asyncio.sleep(0.01)  # the server is gone or going; later ones fail fast
                        continue
                    if res.status_code < 300:
                        self.acked[body["checkoutId"]] = res.json()["eventId"]

            await asyncio.gather(*(post() for _ in range(CONNECTIONS)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def terminate(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM; the seconds until the process had exited."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(EXIT_WITHIN + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - started


def leases_held(db: Database, workspace_id: str) -> int:
    """Enrollment and message leases still in force: a graceful stop leaves none."""
    now = datetime.now(UTC)

    def read(tx: Any) -> int:
        held = tx.execute(
            sa.select(sa.func.count())
            .select_from(enrollments)
            .where(enrollments.c.workspace_id == workspace_id, enrollments.c.lease_until > now)
        ).scalar_one()
        held += tx.execute(
            sa.select(sa.func.count())
            .select_from(message_delivery.join(messages, messages.c.id == message_delivery.c.message_id))
            .where(messages.c.workspace_id == workspace_id, message_delivery.c.lease_until > now)
        ).scalar_one()
        return int(held)

    return db.read_sync(read)


def message_statuses(db: Database, workspace_id: str) -> collections.Counter[str]:
    return collections.Counter(
        db.read_sync(
            lambda tx: (
                tx.execute(sa.select(messages.c.status).where(messages.c.workspace_id == workspace_id))
                .scalars()
                .all()
            )
        )
    )


def stored_checkouts(db: Database, workspace_id: str) -> dict[str, str]:
    rows = db.read_sync(
        lambda tx: tx.execute(
            sa.select(events.c.idempotency_key, events.c.id).where(
                events.c.workspace_id == workspace_id, events.c.name == "ecommerce.checkout_started"
            )
        ).all()
    )
    return {key.removeprefix("checkout:"): event_id for key, event_id in rows}


def start_worker(env: dict[str, str], log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cartback", "worker", "--metrics-port", str(metrics_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_sigterm_keeps_acknowledged_events_sends_once_and_hands_work_over(
    start_server, db, db_url, make_workspace, tmp_path
):
    flow_ws, ingest_ws = make_workspace(), make_workspace()
    seed_due_sends(db, flow_ws.id)
    recipients = {f"due{i}-{flow_ws.id}@example.com" for i in range(DUE)}

    with SmtpSink(delay=0.1, keep=False) as sink:

        def delivered() -> collections.Counter[str]:
            got = collections.Counter(r for m in list(sink.received) for r in m.rcpt_tos)
            return collections.Counter({r: n for r, n in got.items() if r in recipients})

        env = {
            "CARTBACK_SMTP_URL": sink.url,
            "CARTBACK_LOG_FORMAT": "json",
            "CARTBACK_LEASE_SECONDS": "60",
            "CARTBACK_SHUTDOWN_SECONDS": "8",
        }
        server = start_server(db_url, env=env)
        stream = Stream(server.api, ingest_ws.key)
        stream.thread.start()

        # 1. `cartback serve`, with ingest and sends both in full flow.
        wait_for(lambda: len(stream.acked) >= 200 and sum(delivered().values()) >= 30, 60, "traffic")
        assert server.proc is not None
        took = terminate(server.proc)
        exits = [round(took, 2)]
        at_stop = sum(delivered().values())
        assert took < EXIT_WITHIN, f"serve took {took:.1f}s to exit"
        assert server.proc.returncode in (0, -signal.SIGTERM), server.proc.returncode
        stream.thread.join(60)
        assert not stream.thread.is_alive()
        assert 200 <= len(stream.acked) < STREAM, len(stream.acked)
        assert at_stop < DUE, "every send was done before the stop; nothing was tested"
        assert leases_held(db, flow_ws.id) == 0
        stored = stored_checkouts(db, ingest_ws.id)
        missing = {c for c in stream.acked if c not in stored}
        assert not missing, f"{len(missing)} acknowledged checkouts were lost, e.g. {sorted(missing)[:5]}"
        assert all(stored[c] == event_id for c, event_id in stream.acked.items())

        # 2. A `cartback worker` takes over at once (leases of 60 s: nothing waits for one to expire).
        worker_env = {**server.env, "CARTBACK_DATABASE_URL": db_url}
        port = free_port()
        worker = start_worker(worker_env, tmp_path / "worker-1.log", port)
        try:
            wait_for(lambda: sum(delivered().values()) >= at_stop + 30, 20, "the worker to send")
            samples = scrape(port)
            assert samples.get(("cartback_messages_total", (("outcome", "sent"),)), 0) >= 1
            assert samples.get(("cartback_smtp_send_duration_seconds_count", ()), 0) >= 1
            took = terminate(worker)
            exits.append(round(took, 2))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert took < EXIT_WITHIN, f"worker took {took:.1f}s to exit"
        assert worker.returncode == 0, (tmp_path / "worker-1.log").read_text()[-3000:]
        at_second_stop = sum(delivered().values())
        assert at_second_stop < DUE, "the first worker sent everything; its stop was not tested"
        assert leases_held(db, flow_ws.id) == 0

        # 3. A second worker finishes the rest promptly.
        second = start_worker(worker_env, tmp_path / "worker-2.log", free_port())
        try:
            wait_for(lambda: len(delivered()) == DUE, 30, f"every email (got {len(delivered())})")
            time.sleep(0.5)  # a duplicate, if there were one, would have arrived by now
            counts = delivered()
        finally:
            terminate(second)

    assert set(counts) == recipients
    assert max(counts.values()) == 1, [r for r, n in counts.items() if n > 1][:5]
    assert message_statuses(db, flow_ws.id) == {"sent": DUE}
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "Traceback" not in logs, logs[-3000:]
    print(
        f"acked {len(stream.acked)} of {STREAM} checkouts; sent {at_stop} before the serve stop, "
        f"{at_second_stop} before the worker stop, {DUE} in all; exits took {exits}"
    )
