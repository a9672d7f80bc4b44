"""The overview: figures over a chosen range (presets or dates), charts and funnel, from the viewer's
workspace only. Recovered revenue end to end is in tests/browser/test_dashboard_flow.py and the demo test."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cartback.dashboard import charts, overview
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
    assert 'aria-label="From checkout to order: Checkouts 3, Emailed 0, Clicked 0, Ordered 0"' in page

    # A range that ends before the checkouts sees none of them.
    before = client.get("/app/", params={"start": "2026-11-01", "end": "2026-11-22"}).text
    assert figure(before, "checkouts_started") == "0"
    assert "by day" in before
    same_day = client.get("/app/", params={"start": "2026-11-23", "end": "2026-11-23"}).text
    assert figure(same_day, "checkouts_started") == "3" and "by hour" in same_day
    assert "by week" in client.get("/app/", params={"range": "90d"}).text


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
