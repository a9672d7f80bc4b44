"""How long the dashboard's pages take to render for a large workspace.

    .venv/bin/python bench/dashboard.py [--events 1000000] [--subscribers 100000] [--rounds 5]
                                        [--db PATH]

Builds (or reuses, with --db naming an existing file) a SQLite database with one workspace holding
`--subscribers` people, `--events` events (a checkout started for a tenth of them, the rest spread over
other names), a checkout row per checkout event, an abandoned-checkout sequence with enrollments, and a
sent message for one checkout in three. Rows are written in bulk with SQL, not through the API: this
measures reading, not ingest. Then every page is fetched `--rounds` times through the app in-process
(FastAPI's TestClient, signed in), and the median and worst times are printed, with the 500 ms goal.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from cartback import ids
from cartback.core import sequences, users
from cartback.store import tables, workspaces
from cartback.store.db import Database

GOAL_MS = 500.0
NAMES = ("ecommerce.checkout_started", "ecommerce.order_placed", "email.sent", "email.opened", "page.viewed")


def build(path: Path, n_events: int, n_subscribers: int) -> None:
    url = f"sqlite:///{path}"
    db = Database(url, sqlite_synchronous="NORMAL")
    db.migrate()
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    rng = random.Random(1)

    def setup(tx: sa.Connection) -> tuple[str, str]:
        ws = workspaces.create_workspace(tx, "big", now)
        users.create_user(tx, "big", "owner@big.example", "bench-password", now)
        body = {
            "name": "Abandoned checkout",
            "trigger": "event_received",
            "eventName": "ecommerce.checkout_started",
            "enrollmentMode": "matching_field",
            "enrollmentFieldPath": "checkoutId",
            "steps": [{"type": "email", "template": "abandoned_cart", "delay": {"hours": 1}}],
        }
        seq = sequences.create(tx, ws.id, body, start, status="active")
        return ws.id, seq.id

    workspace_id, sequence_id = db.write_sync(setup)
    engine = db.write_engine
    t0 = time.monotonic()
    subscriber_ids = []
    with engine.begin() as conn:
        rows = []
        for i in range(n_subscribers):
            sid = ids.new_id("sub")
            subscriber_ids.append(sid)
            created = start + timedelta(seconds=30 * 86400 * i / n_subscribers)
            rows.append(
                {
                    "id": sid,
                    "workspace_id": workspace_id,
                    "email": f"person{i}@example.com",
                    "email_key": f"person{i}@example.com",
                    "first_name": f"First{i % 500}",
                    "last_name": f"Last{i % 700}",
                    "status": "active",
                    "attributes": {},
                    "created_at": created,
                    "updated_at": created,
                }
            )
            if len(rows) == 10_000:
                conn.execute(tables.subscribers.insert(), rows)
                rows = []
        if rows:
            conn.execute(tables.subscribers.insert(), rows)
    print(f"  {n_subscribers:,} subscribers in {time.monotonic() - t0:.1f} s", flush=True)

    t0 = time.monotonic()
    with engine.begin() as conn:
        events, checkouts, enrollments, messages, deliveries = [], [], [], [], []

        def flush() -> None:
            for table, batch in (
                (tables.events, events),
                (tables.checkouts, checkouts),
                (tables.enrollments, enrollments),
                (tables.messages, messages),
                (tables.message_delivery, deliveries),
            ):
                if batch:
                    conn.execute(table.insert(), batch)
                    batch.clear()

        for i in range(n_events):
            at = start + timedelta(seconds=30 * 86400 * i / n_events)
            sub = subscriber_ids[rng.randrange(n_subscribers)]
            name = NAMES[0] if i % 10 == 0 else rng.choice(NAMES[1:])
            event_id = ids.new_id("evt")
            props = (
                {"checkoutId": f"c{i}", "totalCents": 4200, "currency": "USD"} if i % 10 == 0 else {"n": i}
            )
            events.append(
                {
                    "id": event_id,
                    "workspace_id": workspace_id,
                    "subscriber_id": sub,
                    "name": name,
                    "source": "sequenzy",
                    "properties": props,
                    "occurred_at": at,
                    "received_at": at,
                    "idempotency_key": f"e:{i}",
                    "historical": False,
                    "dispatched_at": at,
                }
            )
            if i % 10 == 0:
                checkouts.append(
                    {
                        "id": ids.new_id("chk"),
                        "workspace_id": workspace_id,
                        "checkout_id": f"c{i}",
                        "subscriber_id": sub,
                        "event_id": event_id,
                        "currency": "USD",
                        "total_cents": 4200,
                        "items": [{"title": "Mug", "quantity": 1, "priceCents": 4200}],
                        "properties": {},
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                enrollment_id = ids.new_id("enr")
                enrollments.append(
                    {
                        "id": enrollment_id,
                        "workspace_id": workspace_id,
                        "sequence_id": sequence_id,
                        "subscriber_id": sub,
                        "trigger_event_id": event_id,
                        "trigger_received_at": at,
                        "context": {"event": props},
                        "dedupe_key": f"{sub}:c{i}",
                        "status": "completed",
                        "created_at": at,
                        "updated_at": at,
                        "finished_at": at,
                    }
                )
                if i % 30 == 0:
                    message_id = ids.new_id("msg")
                    messages.append(
                        {
                            "id": message_id,
                            "workspace_id": workspace_id,
                            "subscriber_id": sub,
                            "sequence_id": sequence_id,
                            "enrollment_id": enrollment_id,
                            "node_id": "node_2",
                            "kind": "marketing",
                            "to_email": "someone@example.com",
                            "from_email": "Shop <shop@example.com>",
                            "subject": "You left something",
                            "html": "<p>Hi</p>",
                            "text": "Hi",
                            "status": "sent",
                            "created_at": at,
                            "updated_at": at,
                            "sent_at": at,
                        }
                    )
                    deliveries.append(
                        {
                            "message_id": message_id,
                            "workspace_id": workspace_id,
                            "rfc_message_id": f"<{message_id}@example.com>",
                            "transport": "outbox",
                            "attempts": 1,
                            "opened_at": at if i % 60 == 0 else None,
                        }
                    )
            if len(events) >= 10_000:
                flush()
        flush()
    print(f"  {n_events:,} events (+ checkouts, enrollments, messages) in {time.monotonic() - t0:.1f} s")
    db.close()


def measure(path: Path, rounds: int) -> list[tuple[str, float, float]]:
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings
    from dashboard_client import DashboardUser, sign_in

    url = f"sqlite:///{path}"
    app = create_app(Settings(database_url=url, secret_key="b" * 48), run_worker=False)
    out = []
    with TestClient(app) as client:
        sign_in(client, DashboardUser("owner@big.example", "bench-password", "big"))
        people = client.get("/app/people").text
        person = people.split('href="/app/people/', 1)[1].split('"', 1)[0]
        message = client.get("/app/messages").text.split('href="/app/messages/', 1)[1].split('"', 1)[0]
        sequence = client.get("/app/sequences").text.split('href="/app/sequences/seq_', 1)[1].split('"', 1)[0]
        pages = [
            "/app/",
            "/app/?range=7d",
            "/app/?range=90d",
            "/app/people",
            "/app/people?q=person4242",
            f"/app/people/{person}",
            "/app/messages",
            f"/app/messages/{message}",
            "/app/events",
            "/app/events/rows?name=ecommerce.checkout_started",
            "/app/events?person=person4242@example.com",
            "/app/sequences",
            f"/app/sequences/seq_{sequence}",
            "/app/settings",
        ]
        for page in pages:
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                reply = client.get(page)
                times.append((time.perf_counter() - t0) * 1000)
                assert reply.status_code == 200, (page, reply.status_code)
            out.append((page, statistics.median(times), max(times)))
            print(f"  {page:55} median {out[-1][1]:7.1f} ms   max {out[-1][2]:7.1f} ms", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", type=Path, help="a database file to build, or to reuse if it exists")
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "dashboard-bench.db"
    if not path.exists():
        print(f"building {path}", flush=True)
        build(path, args.events, args.subscribers)
    print(f"pages of a workspace with {args.events:,} events and {args.subscribers:,} people", end="")
    print(f" ({args.rounds} fetches each):")
    results = measure(path, args.rounds)
    slow = [page for page, median, _ in results if median > GOAL_MS]
    verdict = "met" if not slow else "NOT met: " + ", ".join(slow)
    print(f"goal: every page under {GOAL_MS:.0f} ms (median): {verdict}")
    return 0 if not slow else 1


if __name__ == "__main__":
    raise SystemExit(main())
