"""Messages/s through cartback's sender to a local aiosmtpd sink, against raw aiosmtplib to the same sink in
the same run (the usual method: the sink discards, runs in its own process on uvloop; a 20 KB HTML
multipart message; connections reused).

    .venv/bin/python bench/smtp.py [--messages 2000] [--connections 4] [--rounds 3] [--db sqlite|postgres]

Raw: `--connections` aiosmtplib clients, each reused, sending the message pre-flattened to bytes
(`sendmail`), as many messages as cartback sends. Cartback: the messages are queued in a new database
(SQLite file with synchronous=FULL, or a new PostgreSQL database), then the sender duty runs rounds of 200
until the queue is empty: per message the first write (attempt, MIME built and stored), the send over its
pool of `--connections`, the second write (outcome, `email.sent` event). Rounds alternate raw/cartback.
Results also go to bench/results/smtp-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import sqlalchemy as sa

from cartback import ids
from cartback.core.clock import system_clock
from cartback.delivery import mime, render, smtp
from cartback.scheduler import mail_sender
from cartback.scheduler.worker import Worker
from cartback.store import deliveries, workspaces
from cartback.store import messages as message_store
from cartback.store.db import Database, sqlalchemy_url

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("CARTBACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROW = (
    "<tr><td style='padding:8px;font-family:Arial'>{i}. Slim Jeans, size 32, indigo</td><td>$54.00</td></tr>"
)
HTML = (
    "<html><body><h1>You left something behind</h1><table>"
    + "".join(ROW.format(i=i) for i in range(190))
    + "</table><p><a href='https://shop.example.com/checkout/abc'>Back to your cart</a></p></body></html>"
)
# The render layer stores the text part with the message when the step runs; the sender only packs it.
TEXT = render.html_to_text(HTML)


def start_sink(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "smtp_sink.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def sample_mime() -> bytes:
    return mime.build(
        message_id="msg_bench",
        rfc_message_id="<msg_bench@example.com>",
        from_email="Shop <shop@example.com>",
        to_email="someone@example.com",
        subject="You left something behind",
        html=HTML,
        text=TEXT,
        kind="marketing",
        date=datetime.now(UTC),
        unsubscribe_url="https://shop.example.com/u/token",
    )


async def raw_round(port: int, count: int, connections: int, payload: bytes) -> tuple[float, float]:
    """(messages/s, client CPU ms per message)."""
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(connections)]
    for c in clients:
        await c.connect()
    left = [count]

    async def run(client: aiosmtplib.SMTP) -> None:
        while left[0] > 0:
            left[0] -= 1
            await client.sendmail("shop@example.com", ["someone@example.com"], payload)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run(c) for c in clients))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    for c in clients:
        await c.quit()
    return count / elapsed, 1000 * cpu / count


def new_database(kind: str, tmp: Path, n: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'bench-{n}.db'}"
    admin = sa.create_engine(sqlalchemy_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    name = f"cartback_smtp_bench_{n}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def queue_messages(db: Database, count: int) -> None:
    now = system_clock.now()

    def fill(tx: sa.Connection) -> None:
        ws = workspaces.create_workspace(tx, f"bench-{ids.new_id('x')}", now)
        for i in range(count):
            message = message_store.Message(
                id=ids.new_id("msg"),
                workspace_id=ws.id,
                subscriber_id=None,
                sequence_id="seq_bench",
                enrollment_id=ids.new_id("enr"),
                node_id="n1",
                kind="marketing",
                to_email=f"buyer{i}@example.com",
                from_email="Shop <shop@example.com>",
                subject="You left something behind",
                preheader=None,
                html=HTML,
                text=TEXT,
                status="queued",
                error=None,
                created_at=now,
                updated_at=now,
                sent_at=None,
            )
            message_store.insert(tx, message)
            deliveries.enqueue(tx, message, now, transport="smtp")

    db.write_sync(fill)


async def cartback_round(
    url: str, port: int, count: int, connections: int, sync: str = "FULL"
) -> tuple[float, float, dict[str, int]]:
    """(messages/s, CPU ms per message in this process: event loop, writer and reader threads, statuses)."""
    db = Database(url, sqlite_synchronous=sync)
    db.migrate()
    queue_messages(db, count)
    transport = smtp.SmtpTransport.from_url(f"smtp://127.0.0.1:{port}?starttls=0", concurrency=connections)
    duty = mail_sender.Sender(transport, public_url="https://shop.example.com")
    worker = Worker(db, system_clock, batch_size=200, lease_seconds=300)
    await db.start()
    start, cpu = time.perf_counter(), time.process_time()
    while await duty.duty(worker):
        pass
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await transport.close()
    await db.stop()
    statuses = Database(url).read_sync(
        lambda tx: dict(tx.execute(sa.text("SELECT status, count(*) FROM messages GROUP BY status")).all())
    )
    return duty.stats.sent / elapsed, 1000 * cpu / max(1, duty.stats.sent), statuses


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sync", choices=["FULL", "NORMAL"], default="FULL", help="SQLite synchronous")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = start_sink(port)
    payload = sample_mime()
    raw_rates: list[float] = []
    cb_rates: list[float] = []
    raw_cpu: list[float] = []
    cb_cpu: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(raw_round(port, 200, args.connections, payload))  # warm-up
            for n in range(args.rounds):
                raw, raw_ms = asyncio.run(raw_round(port, args.messages, args.connections, payload))
                url = new_database(args.db, Path(tmp), n)
                rate, cb_ms, statuses = asyncio.run(
                    cartback_round(url, port, args.messages, args.connections, args.sync)
                )
                if statuses != {"sent": args.messages}:
                    raise SystemExit(f"not every message was sent: {statuses}")
                raw_rates.append(raw)
                cb_rates.append(rate)
                raw_cpu.append(raw_ms)
                cb_cpu.append(cb_ms)
                print(
                    f"round {n + 1}: raw aiosmtplib {raw:7.1f} msg/s ({raw_ms:.2f} ms CPU/msg)   "
                    f"cartback sender {rate:7.1f} msg/s ({cb_ms:.2f} ms CPU/msg)   ratio {rate / raw:.2f}",
                    flush=True,
                )
    finally:
        sink.terminate()
        sink.wait()
    ratios = [c / r for c, r in zip(cb_rates, raw_rates, strict=True)]
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "db": args.db,
        "messages": args.messages,
        "connections": args.connections,
        "message_bytes": len(payload),
        "raw_msgs_per_s": raw_rates,
        "cartback_msgs_per_s": cb_rates,
        "raw_cpu_ms_per_msg": raw_cpu,
        "cartback_cpu_ms_per_msg": cb_cpu,
        "ratio": ratios,
        "median": {
            "raw": statistics.median(raw_rates),
            "cartback": statistics.median(cb_rates),
            "ratio": statistics.median(ratios),
            "raw_cpu_ms": statistics.median(raw_cpu),
            "cartback_cpu_ms": statistics.median(cb_cpu),
        },
        "load_average": os.getloadavg(),
    }
    median = summary["median"]
    print(
        f"median: raw {median['raw']:.1f} msg/s, cartback {median['cartback']:.1f} msg/s, "
        f"ratio {median['ratio']:.2f} (goal >= 0.5); CPU/msg raw {median['raw_cpu_ms']:.2f} ms, cartback "
        f"{median['cartback_cpu_ms']:.2f} ms; message {len(payload)} bytes, "
        f"{args.connections} connections, {args.db}; load average {os.getloadavg()[0]:.1f}"
    )
    out = ROOT / "bench" / "results" / f"smtp-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
