"""People pages: search, the profile (attributes, order totals, timeline, enrollments with each step's
state and stop reasons, messages) and the explain panel, with the scheduler driven by a frozen clock."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cartback.core import sequences
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def shop(db, db_url, make_workspace, clock):
    tenant = make_workspace()
    seq = db.write_sync(lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active"))
    draft = db.write_sync(
        lambda tx: sequences.create(tx, tenant.id, {**ABANDONED, "name": "Later flow"}, clock.now())
    )
    clock.advance(seconds=1)
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        yield client, tenant, seq, draft


def api(client, tenant, path, body):
    reply = client.post("/api/v1" + path, json=body, headers={"Authorization": f"Bearer {tenant.key}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_dashboard_people_search_finds_by_email_and_name(shop, db, clock):
    client, tenant, _, _ = shop
    api(client, tenant, "/checkouts", checkout_body("c1", "jane@example.com"))
    api(client, tenant, "/checkouts", checkout_body("c2", "bob@example.com", first_name="Bob"))
    found = client.get("/app/people", params={"q": "JANE"})
    assert found.status_code == 200
    assert "jane@example.com" in found.text and "bob@example.com" not in found.text
    everyone = client.get("/app/people")
    assert "jane@example.com" in everyone.text and "bob@example.com" in everyone.text
    assert "Nobody matches" in client.get("/app/people", params={"q": "zed"}).text


def test_dashboard_profile_shows_enrollment_steps_messages_and_the_stop_reason(shop, db, clock):
    client, tenant, _, _ = shop
    person = api(client, tenant, "/checkouts", checkout_body("c1"))["subscriberId"]
    run_until_idle(db, clock)

    page = client.get(f"/app/people/{person}").text
    assert "Abandoned checkout" in page
    assert "Wait 1 h" in page and ">waiting<" in page
    assert "not reached" in page
    assert "ecommerce.checkout_started" in page
    assert "from the API" in page and "via sequenzy" not in page

    clock.advance(hours=1, seconds=1)
    run_until_idle(db, clock)
    page = client.get(f"/app/people/{person}").text
    assert "Email: You left …" in page  # the subject template in owner words, not raw Liquid
    assert ">sent<" in page and "You left Logo tee" in page  # the step, and the message it sent

    api(
        client,
        tenant,
        "/orders",
        {
            "orderId": "o1",
            "totalCents": 6450,
            "currency": "USD",
            "customer": {"email": "jane@example.com"},
            "properties": {"checkoutId": "c1"},
        },
    )
    run_until_idle(db, clock)
    page = client.get(f"/app/people/{person}").text
    assert ">stopped<" in page and "stopped: " in page
    assert 'data-total="USD">$64.50<' in page
    assert "ecommerce.order_placed" in page


def test_dashboard_explain_says_why_enrolled_or_not(shop, db, clock):
    client, tenant, seq, draft = shop
    person = api(client, tenant, "/checkouts", checkout_body("c1"))["subscriberId"]
    run_until_idle(db, clock)
    enrolled = client.get(f"/app/people/{person}/explain", params={"sequence": seq.id})
    assert enrolled.status_code == 200 and 'badge good">enrolled' in enrolled.text
    not_enrolled = client.get(f"/app/people/{person}/explain", params={"sequence": draft.id})
    assert "not enrolled" in not_enrolled.text
    # Without JavaScript the form reloads the profile with the same panel.
    page = client.get(f"/app/people/{person}", params={"sequence": draft.id})
    assert "Why Later flow did not run" in page.text


def test_dashboard_people_unknown_or_malformed_ids_are_404(shop):
    client, _, seq, _ = shop
    assert client.get("/app/people/sub_NOPE").status_code == 404
    assert client.get("/app/people/bad%00id").status_code == 404
    assert client.get("/app/people/sub_NOPE/explain", params={"sequence": seq.id}).status_code == 404
    assert client.get("/app/people", params={"q": "x" * 500}).status_code == 400


def test_dashboard_people_pages_escape_what_shoppers_send(shop, db, clock):
    client, tenant, _, _ = shop
    body = checkout_body(
        "c<x>", "mallory@example.com", title="<img src=x onerror=alert(1)>", first_name="<script>"
    )
    person = api(client, tenant, "/checkouts", body)["subscriberId"]
    for url in ("/app/people", f"/app/people/{person}", "/app/events"):
        page = client.get(url).text
        assert "<script>" not in page.split("</head>", 1)[1] and "<img src=x" not in page, url
    profile = client.get(f"/app/people/{person}").text
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in profile  # the event's properties, as JSON
    assert "&lt;script&gt;" in profile  # the first name
