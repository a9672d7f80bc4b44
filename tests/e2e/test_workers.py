"""Several `cartback worker` processes on one PostgreSQL: every step runs exactly once, also when a worker
is killed with SIGKILL in the middle of a batch and restarted."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartback.core import checkouts, sequences, subscribers
from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database
from cartback.store.tables import enrollment_history, enrollments, messages

pytestmark = pytest.mark.slow

FLOW = {
    "name": "one email",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [
        {"type": "email", "subject": "Hi {{ subscriber.email }}", "html": "<p>{{ event.checkoutId }}</p>"}
    ],
}


def seed(db: Database, workspace_id: str, count: int) -> None:
    now = system_clock.now()

    def write(tx):
        sequences.create(tx, workspace_id, FLOW, now, status="active")
        for i in range(count):
            data = checkouts.CheckoutInput(
                checkout_id=f"c{i}", customer=subscribers.Identity(email=f"p{i}@example.com"), total_cents=100
            )
            checkouts.record_checkout(tx, workspace_id, data, now)

    db.write_sync(write)


def start_worker(db_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARTBACK_DATABASE_URL": db_url,
        "CARTBACK_TICK_SECONDS": "0.05",
        "CARTBACK_LEASE_SECONDS": "2",
        "CARTBACK_LOG_LEVEL": "info",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cartback", "worker", "--concurrency", "100"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def counts(db: Database, workspace_id: str) -> tuple[int, int, int, int]:
    def read(tx):
        def n(table, *where):
            return tx.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.workspace_id == workspace_id, *where)
            ).scalar_one()

        return (
            n(enrollments),
            n(enrollments, enrollments.c.status == "completed"),
            n(messages),
            n(enrollment_history, enrollment_history.c.action == "sent"),
        )

    return db.read_sync(read)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pg(pg_database, tmp_path):
    db = Database(pg_database)
    yield db
    db.close()


def run_workers(
    pg_database: str, db: Database, workspace_id: str, total: int, tmp_path: Path, kill: bool
) -> None:
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    procs = [start_worker(pg_database, log) for log in logs]
    try:
        if kill:
            wait_for(lambda: counts(db, workspace_id)[2] >= total // 10, 60, "the first messages")
            procs[0].kill()  # SIGKILL: no chance to release its leases or finish its batch
            procs[0].wait()
            assert counts(db, workspace_id)[1] < total, "the kill came too late to test anything"
            procs[0] = start_worker(pg_database, logs[0])
        wait_for(
            lambda: counts(db, workspace_id)[1] == total,
            120,
            f"every enrollment to complete: {counts(db, workspace_id)}",
        )
        time.sleep(0.5)  # a duplicate, if any, would have landed by now
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
    enrolled, completed, sent, history = counts(db, workspace_id)
    assert (enrolled, completed, sent, history) == (total, total, total, total)
    per_enrollment = db.read_sync(
        lambda tx: tx.execute(
            sa.select(messages.c.enrollment_id, sa.func.count())
            .where(messages.c.workspace_id == workspace_id)
            .group_by(messages.c.enrollment_id)
            .having(sa.func.count() > 1)
        ).all()
    )
    assert per_enrollment == []
    text = "".join(log.read_text() for log in logs)
    assert "Traceback" not in text, text[-3000:]


def workspace_in(db: Database) -> str:
    return db.write_sync(
        lambda tx: workspaces.create_workspace(tx, f"w-{secrets.token_hex(4)}", system_clock.now())
    ).id


def test_two_workers_run_each_step_exactly_once(pg_database, pg, tmp_path):
    workspace_id = workspace_in(pg)
    seed(pg, workspace_id, 1000)
    run_workers(pg_database, pg, workspace_id, 1000, tmp_path, kill=False)


def test_killed_worker_loses_nothing_and_repeats_nothing(pg_database, pg, tmp_path):
    workspace_id = workspace_in(pg)
    seed(pg, workspace_id, 1000)
    run_workers(pg_database, pg, workspace_id, 1000, tmp_path, kill=True)
