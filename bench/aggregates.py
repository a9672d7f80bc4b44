"""Metric aggregates over 1,000,000 events, on SQLite and PostgreSQL.

    .venv/bin/python bench/aggregates.py [--db sqlite|postgres|both] [--events 1000000] [--rounds 3]

Seeds a fresh database (a new SQLite file; a new PostgreSQL database `cartback_bench_aggregates`, dropped
afterwards) with `--events` ecommerce.order_placed events over 30 days in one workspace (50,000 subscribers,
a value on each), plus a tenth as many events of another name and of another workspace, then times
core/aggregates.aggregate (what `POST /api/metric-aggregates` runs) for count, sum_value and unique by day
over the 30 days, all three at once, by hour, and grouped by $attributed_flow. Prints min / median / max
milliseconds per query and exits non-zero if a daily query takes a second or more or a figure is wrong.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))

import servers

from cartback.core import aggregates
from cartback.store import workspaces
from cartback.store.db import Database
from cartback.store.tables import events

PG_NAME = "cartback_bench_aggregates"
START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
SUBSCRIBERS = 50_000
METRIC = "ecommerce.order_placed"


_SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1),
r AS (SELECT i, abs(random()) % :span AS offset, round(5 + (abs(random()) % 29500) / 100.0, 2) AS v,
             abs(random()) % :subscribers AS s FROM n)
INSERT INTO events (id, workspace_id, subscriber_id, name, source, properties, occurred_at, received_at,
                    historical, dispatched_at, value, subscriber_key)
SELECT :prefix || printf('%021d', i), :workspace, 'sub_01JD' || printf('%022d', s), :name, 'bench',
       json_object('value', v), t, t, 0, t, v, s
FROM (SELECT i, v, s, strftime('%Y-%m-%d %H:%M:%S', :start + offset, 'unixepoch') || '.000000' AS t FROM r)
"""

_PG_FILL = """
INSERT INTO events (id, workspace_id, subscriber_id, name, source, properties, occurred_at, received_at,
                    historical, dispatched_at, value, subscriber_key)
SELECT :prefix || lpad(i::text, 21, '0'), :workspace, 'sub_01JD' || lpad(s::text, 22, '0'), :name, 'bench',
       jsonb_build_object('value', v), t, t, false, t, v, s
FROM (SELECT i, floor(random() * :subscribers)::int AS s,
             round((5 + random() * 295)::numeric, 2)::float8 AS v,
             to_timestamp(:start + floor(random() * :span)) AS t
      FROM generate_series(0, :count - 1) AS i) AS r
"""


# One order in 25 attributed to one of four sequences, as the dispatcher would have done.
_ATTRIBUTE = """
INSERT INTO attributions (id, workspace_id, order_id, order_event_id, subscriber_id, sequence_id, message_id,
                          node_id, kind, touched_at, ordered_at, amount_cents, currency, attributed_at, value,
                          subscriber_key)
SELECT 'att_' || id, workspace_id, id, id, subscriber_id, 'seq_' || {tail}, 'msg_' || id, 'n1', 'click',
       occurred_at, occurred_at, 1000, 'USD', occurred_at, value, subscriber_key
FROM events WHERE workspace_id = :workspace AND name = :name AND {tail} IN ('00', '25', '50', '75')
"""


def seed(db: Database, n: int) -> tuple[str, int, float]:
    """Fill the log in SQL, indexes dropped meanwhile and rebuilt after as a bulk load would
    (subscriber_key is the subscriber's number: as distinct as the hash the app stores); returns the
    workspace and the count and sum a plain scan finds, to check the aggregates against."""
    ws, other = db.write_sync(
        lambda tx: (
            workspaces.create_workspace(tx, "bench", START).id,
            workspaces.create_workspace(tx, "other", START).id,
        )
    )
    fill = sa.text(_PG_FILL if db.dialect == "postgresql" else _SQLITE_FILL)
    plan = [(n, ws, METRIC, "evt_01JDA"), (n // 10, ws, "ecommerce.checkout_started", "evt_01JDB")]
    plan.append((n // 10, other, METRIC, "evt_01JDC"))

    def load(tx: sa.Connection) -> None:
        for index in events.indexes:
            index.drop(tx)
        for count, workspace, name, prefix in plan:
            params = {"count": count, "workspace": workspace, "name": name, "prefix": prefix}
            params |= {"span": DAYS * 86400, "subscribers": SUBSCRIBERS, "start": int(START.timestamp())}
            tx.execute(fill, params)
        for index in events.indexes:
            index.create(tx)
        tail = "right(id, 2)" if db.dialect == "postgresql" else "substr(id, -2)"
        tx.execute(sa.text(_ATTRIBUTE.format(tail=tail)), {"workspace": ws, "name": METRIC})

    db.write_sync(load)
    if db.dialect == "postgresql":
        # What autovacuum does soon after a bulk load: fresh statistics and a visibility map, without which
        # PostgreSQL cannot answer from the index alone.
        engine = sa.create_engine(db.write_engine.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE events")
            conn.exec_driver_sql("VACUUM ANALYZE attributions")
        engine.dispose()
    else:
        db.write_sync(lambda tx: tx.exec_driver_sql("ANALYZE"))
    count, total = db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count(), sa.func.sum(events.c.value)).where(
                events.c.workspace_id == ws, events.c.name == METRIC
            )
        ).one()
    )
    return ws, int(count), float(total)


def timed(
    db: Database, ws: str, query: aggregates.Query, rounds: int
) -> tuple[list[float], aggregates.Result]:
    times, result = [], None
    for _ in range(rounds):
        began = time.perf_counter()
        result = db.read_sync(lambda tx: aggregates.aggregate(tx, ws, query))
        times.append((time.perf_counter() - began) * 1000)
    assert result is not None
    return times, result


def run(kind: str, n: int, rounds: int, tmp: Path) -> bool:
    url = servers.fresh_database(kind, tmp / "bench.db", PG_NAME)
    db = Database(url)
    ok = True
    try:
        db.migrate()
        began = time.perf_counter()
        ws, count, total = seed(db, n)
        print(f"\n{kind}: seeded {n:,} + {n // 5:,} events in {time.perf_counter() - began:.1f} s")
        end = START + timedelta(days=DAYS)
        cases = [
            ("count by day", ("count",), "day", ()),
            ("sum_value by day", ("sum_value",), "day", ()),
            ("unique by day", ("unique",), "day", ()),
            ("count+sum+unique by day", ("count", "sum_value", "unique"), "day", ()),
            ("count+sum by day, Europe/Paris", ("count", "sum_value"), "day", ()),
            ("count+sum+unique by week", ("count", "sum_value", "unique"), "week", ()),
            ("count+sum by hour (720 buckets)", ("count", "sum_value"), "hour", ()),
            ("count+sum by day by $attributed_flow", ("count", "sum_value"), "day", ("$attributed_flow",)),
            (
                "all three by day by $attributed_flow",
                ("count", "sum_value", "unique"),
                "day",
                ("$attributed_flow",),
            ),
        ]
        print(f"{'query':<40} {'min ms':>8} {'median':>8} {'max':>8}")
        for label, measurements, interval, by in cases:
            zone = "Europe/Paris" if "Paris" in label else "UTC"
            query = aggregates.Query(METRIC, measurements, START, end, interval, zone, by)
            times, result = timed(db, ws, query, rounds)
            print(f"{label:<40} {min(times):8.0f} {statistics.median(times):8.0f} {max(times):8.0f}")
            counted = sum(sum(r.measurements.get("count", [0])) for r in result.rows)
            summed = sum(sum(r.measurements.get("sum_value", [0])) for r in result.rows)
            if "count" in measurements and zone == "UTC" and counted != count:
                print(f"  WRONG: counted {counted}, expected {count}")
                ok = False
            if "sum_value" in measurements and zone == "UTC" and abs(summed - total) > 1:
                print(f"  WRONG: summed {summed}, expected {total}")
                ok = False
            if by and len(result.rows) != 5:
                print(f"  WRONG: {len(result.rows)} groups, expected 4 sequences and the unattributed")
                ok = False
            if interval == "day" and not by and max(times) >= 1000:
                print("  TOO SLOW: a daily aggregate must answer in under 1 s")
                ok = False
    finally:
        db.close()
        servers.drop_database(kind, PG_NAME)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(kind, args.events, args.rounds, Path(tmp)) for kind in kinds]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
