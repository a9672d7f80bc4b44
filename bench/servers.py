"""What the benchmarks share: starting from a fresh database, reading the key a first `cartback serve`
prints, stopping processes and reading their CPU time."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from cartback.store.db import sqlalchemy_url

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"  # trust auth; bench databases are made from `test`
KEY_LINE = re.compile(r"(?:CARTBACK_DEFAULT_API_KEY=|API key \(shown only this once\): )(\S+)$", re.M)
# What `cartback serve` prints instead when its output is not a terminal (as here, a log file): no key is
# made, and the benchmark makes one with `cartback apikey create`, as a person would.
NO_KEY_LINE = "No API key is shown here"


def fresh_database(kind: str, sqlite_path: Path, pg_name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{sqlite_path}"
    drop_database(kind, pg_name)
    with pg_admin() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{pg_name}"')
    return f"{PG_SERVER}/{pg_name}"


def drop_database(kind: str | None, pg_name: str) -> None:
    if kind == "postgres":
        with pg_admin() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def analyze(db_url: str) -> None:
    """Give a PostgreSQL database's planner the statistics of what the warm-up stored, as autovacuum does
    within its first minute (autovacuum_naptime): planned on the statistics of empty tables, the checkout
    lookup reads every subscriber of the workspace per batch (bench/README.md), which a server that has run
    for a minute no longer does. Nothing to do on SQLite, whose planner keeps no statistics unless asked."""
    if not db_url.startswith("postgresql"):
        return
    engine = sa.create_engine(sqlalchemy_url(db_url), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def pg_admin() -> sa.Connection:
    url = sqlalchemy_url(f"{PG_SERVER}/test")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool).connect()


def wait_for_key(log_path: Path, proc: subprocess.Popen, env: dict[str, str]) -> str:
    """The key of the `default` workspace a first `cartback serve` creates on an empty database (`env`
    names that database)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        text = log_path.read_text()
        if match := KEY_LINE.search(text):
            return match.group(1)
        if NO_KEY_LINE in text:
            cli = Path(sys.executable).parent / "cartback"
            made = subprocess.run(
                [cli, "apikey", "create", "--workspace", "default", "--name", "bench"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            return made.stdout.strip().splitlines()[-1]
        time.sleep(0.05)
    raise RuntimeError(f"cartback did not print its API key; see {log_path}:\n{log_path.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of every process under it (`serve --processes`' children, render pools)."""
    return sum(_own_cpu_seconds(p) for p in _tree(pid))


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in children:
            pids += _tree(int(child))
    return pids


def _own_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
