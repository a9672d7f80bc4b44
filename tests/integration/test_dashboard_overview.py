"""The overview: figures over a chosen range (presets or dates), charts and funnel, from the viewer's
workspace only. Recovered revenue end to end is in tests/browser/test_dashboard_flow.py and the demo test."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from cartback.app import create_app
from cartback.dashboard import charts, overview
from cartback.settings import Settings
from cartback.store import tables
from cartback.testing import FrozenClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import checkout_body, make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def figure(html: str, name: str) -> str:
    return html.split(f'data-figure="{name}">', 1)[1].split("<", 1)[0]


@pytest.fixture
def shop(db, db_url, make_workspace):
    clock = FrozenClock(T0)
    tenant = make_workspace()
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        yield client, tenant, clock


def test_dashboard_overview_counts_started_abandoned_and_charts(shop):
    client, tenant, clock = shop
    auth = {"Authorization": f"Bearer {tenant.key}"}
    for i in range(3):
        client.post("/api/v1/checkouts", json=checkout_body(f"c{i}", f"p{i}@example.com"), headers=auth)
    order = {"orderId": "o1", "totalCents": 6450, "currency": "USD", "customer": {"email": "p0@example.com"},
             "properties": {"checkoutId": "c0"}}  # fmt: skip
    assert client.post("/api/v1/orders", json=order, headers=auth).status_code == 200
    clock.advance(minutes=5)
    page = client.get("/app/").text
    assert figure(page, "checkouts_started") == "3"
    assert figure(page, "abandoned") == "2"
    assert figure(page, "recovered") == "0"  # an order no email led to is not a recovery
    assert 'data-revenue="none"' in page
    assert 'role="img" aria-label="Checkouts per day: 3 started, 0 recovered"' in page
    assert 'aria-label="From email to order: Emails sent 0, Clicked 0, Ordered 0"' in page

    # A range that ends before the checkouts sees none of them.
    before = client.get("/app/", params={"start": "2026-11-01", "end": "2026-11-22"}).text
    assert figure(before, "checkouts_started") == "0"
    assert "by day" in before
    same_day = client.get("/app/", params={"start": "2026-11-23", "end": "2026-11-23"}).text
    assert figure(same_day, "checkouts_started") == "3" and "by hour" in same_day
    assert "by week" in client.get("/app/", params={"range": "90d"}).text


def test_dashboard_overview_counts_a_checkout_by_its_own_time_and_defines_its_figures(shop):
    """A checkout sent with a `time` last month counts last month, not in the range it arrived in; every
    card carries its definition, the same words as docs/analytics.md."""
    from cartback.core import analytics

    client, tenant, clock = shop
    headers = {"Authorization": f"Klaviyo-API-Key {tenant.key}", "revision": "2026-10-15"}
    old = {"data": {"type": "event", "attributes": {
        "properties": {"checkout_id": "old-1", "value": 19}, "time": "2026-10-01T12:00:00+00:00",
        "metric": {"data": {"type": "metric", "attributes": {"name": "Started Checkout"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "old@example.com"}}}}}}  # fmt: skip
    assert client.post("/api/events", json=old, headers=headers).status_code == 202
    client.post(
        "/api/v1/checkouts", json=checkout_body("new-1"), headers={"Authorization": f"Bearer {tenant.key}"}
    )
    clock.advance(minutes=5)
    recent = client.get("/app/", params={"range": "7d"}).text
    assert figure(recent, "checkouts_started") == "1"
    october = client.get("/app/", params={"start": "2026-10-01", "end": "2026-10-31"}).text
    assert figure(october, "checkouts_started") == "1" and figure(october, "abandoned") == "1"
    docs = (Path(__file__).parents[2] / "docs" / "analytics.md").read_text()
    for text in analytics.DEFINITIONS.values():
        assert f'title="{text}"'.replace("'", "&#39;") in recent
        assert text in docs


def test_dashboard_overview_bad_dates_are_a_400_page(shop):
    client, _, _ = shop
    for params in ({"start": "23/11/2026"}, {"start": "2026-11-23", "end": "2026-11-01"},
                   {"start": "2020-01-01", "end": "2026-01-01"}):  # fmt: skip
        reply = client.get("/app/", params=params)
        assert reply.status_code == 400, params
        assert reply.headers["content-type"].startswith("text/html")


def test_overview_period_presets_and_dates():
    now = T0
    assert overview._period(now, "7d", "", "") == (now - timedelta(days=7), now, "7d")
    assert overview._period(now, "bogus", "", "")[2] == "30d"
    start, end, key = overview._period(now, "7d", "2026-11-01", "2026-11-02")
    assert (start, end, key) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 3, tzinfo=UTC),
        "custom",
    )


def test_charts_scale_to_a_round_maximum_and_escape_labels():
    svg = charts.bars("T", ["<a>", "b"], [charts.Series("sent", [3, 7])])
    assert svg.startswith("<svg") and "&lt;a&gt;" in svg and "<a>" not in svg
    assert ">10</text>" in svg  # 7 rounds up to an axis of 10
    assert charts._nice_max(0) == 1 and charts._nice_max(120) == 200 and charts._nice_max(5000) == 5000
    funnel = charts.funnel("F", [("Checkouts", 10), ("Emailed", 5), ("Clicked", 0), ("Ordered", 0)])
    assert "5 (50%)" in funnel and "0 (0%)" in funnel and "0 (—)" in funnel


def tally_figures(t):
    return (t.sent, t.delivered, t.opened, t.clicked, t.checkouts_started, t.recovered, t.revenue)


def by_hand(tx, workspace_id, start, end, cuts):
    """The workspace's figures per interval, counted row by row in Python from the tables, by the
    definitions of docs/analytics.md: what the report, counted by the database, must equal."""
    import bisect

    from cartback.core import analytics

    starts = [b.start for b in cuts]
    total, series = analytics.Tally(), [analytics.Tally() for _ in cuts]

    def slots(moment):
        return (total, series[bisect.bisect_right(starts, moment) - 1])

    for row in tx.execute(sa.select(tables.checkouts).where(tables.checkouts.c.workspace_id == workspace_id)):
        if start <= row.created_at < end:
            for t in slots(row.created_at):
                t.checkouts_started += 1
    mail = tx.execute(
        sa.select(tables.messages, tables.message_delivery.c.opened_at, tables.message_delivery.c.clicked_at)
        .outerjoin(tables.message_delivery, tables.message_delivery.c.message_id == tables.messages.c.id)
        .where(tables.messages.c.workspace_id == workspace_id, tables.messages.c.sequence_id.is_not(None))
    )
    for row in mail:
        if start <= row.created_at < end:
            for t in slots(row.created_at):
                t.sent += row.status in ("sent", "failed", "unknown")
                t.delivered += row.status == "sent"
                t.opened += row.opened_at is not None
                t.clicked += row.clicked_at is not None
    return total, series


def test_overview_figures_equal_the_tables_counted_by_hand(tmp_path):
    """The overview shows core/analytics.report, which the database counts per interval: on a week of
    demo traffic (runs, emails, opens, clicks, orders) it equals the tables counted row by row, in total
    and per interval, for each kind of interval."""
    from cartback import demo
    from cartback.core import analytics
    from cartback.settings import Settings
    from cartback.store import workspaces
    from cartback.store.db import Database

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    demo.run(Settings(database_url=url), checkouts_count=80, seed=5, now=T0)
    db = Database(url)
    workspace_id = db.read_sync(lambda tx: workspaces.get_workspace_by_name(tx, "demo")).id
    for start, end, interval in (
        (T0 - timedelta(days=8), T0, "day"),
        (T0 - timedelta(days=2), T0, "hour"),
        (T0 - timedelta(days=60), T0 + timedelta(days=1), "week"),
        (T0 - timedelta(days=3, hours=5), T0 - timedelta(days=1), "day"),
    ):

        def both(tx, start=start, end=end, interval=interval):
            report = analytics.report(tx, workspace_id, start, end, interval=interval)
            return report, by_hand(tx, workspace_id, start, end, report.buckets)

        report, (total, series) = db.read_sync(both)
        figures = ("sent", "delivered", "opened", "clicked", "checkouts_started")

        def of(t, figures=figures):
            return tuple(getattr(t, f) for f in figures)

        assert of(report.workspace.total) == of(total), interval
        assert [of(t) for t in report.workspace.series] == [of(t) for t in series], interval
        assert sum(s.total.sent for s in report.sequences.values()) == total.sent
    assert report.workspace.total.sent > 0 and report.workspace.total.recovered > 0

    # The funnel, counted by hand: emails sent, clicked (the report's own figure), and clicked emails an
    # order was attributed to; the recovery rate's abandoned checkouts: no order, or a recovered one.
    start, end = T0 - timedelta(days=8), T0

    def by_hand_funnel(tx):
        t = tables
        mail = {
            r.id: r
            for r in tx.execute(
                sa.select(t.messages.c.id, t.messages.c.created_at, t.message_delivery.c.clicked_at)
                .join(t.message_delivery, t.message_delivery.c.message_id == t.messages.c.id)
                .where(
                    t.messages.c.workspace_id == workspace_id,
                    t.messages.c.sequence_id.is_not(None),
                    t.messages.c.status.in_(("sent", "failed", "unknown")),
                )
            )
            if start <= r.created_at < end
        }
        attributed = {r.message_id: r.order_id for r in tx.execute(sa.select(t.attributions))}
        ordered = {m for m, r in mail.items() if r.clicked_at is not None and m in attributed}
        mine = sa.select(t.checkouts).where(t.checkouts.c.workspace_id == workspace_id)
        carts = [r for r in tx.execute(mine) if start <= r.created_at < end]
        won = set(attributed.values())
        abandoned = [c for c in carts if c.order_id is None or c.order_id in won]
        return len(ordered), len(abandoned)

    def counted(tx):
        report = analytics.report(tx, workspace_id, start, end)
        return report.workspace.total, analytics.funnel(tx, workspace_id, report)

    total, funnel = db.read_sync(counted)
    ordered, abandoned = db.read_sync(by_hand_funnel)
    assert (funnel.sent, funnel.clicked) == (total.sent, total.clicked)
    assert funnel.ordered == ordered and 0 < funnel.ordered <= funnel.clicked
    assert total.abandoned == abandoned and total.recovered <= abandoned < total.checkouts_started
    db.close()


def test_dashboard_overview_says_mail_is_kept_without_smtp_and_not_with_it(shop, db, db_url):
    client, tenant, clock = shop
    kept = client.get("/app/").text
    assert "<strong data-kept" in kept and "kept in outbox, not delivered</strong>" in kept
    settings = Settings(database_url=db_url, secret_key="s" * 48, smtp_url="smtp://mail.example.net:25")
    with TestClient(create_app(settings, clock=clock, run_worker=False)) as smtp_client:
        sign_in(smtp_client, make_user(db, tenant.name))
        page = smtp_client.get("/app/").text
    assert figure(page, "emails_sent") == "0" and "kept in outbox" not in page
