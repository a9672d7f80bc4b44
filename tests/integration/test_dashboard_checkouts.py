"""Recovered revenue on the dashboard: the abandoned checkouts page (cart, value, customer, emails sent,
recovered or not and by which email), the sequences list's revenue column, "recovered ... by step 1" on the
person and message pages, and a recovered run shown as recovered, not stopped. A real order is attributed
to a real click by the worker's attribution hook, and every page shows the figures of core/analytics, the
read model behind the overview and the API's recovery report."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from cartback.core import analytics, attribution, sequences
from cartback.store.tables import attributions, message_bodies, messages
from cartback.testing import FrozenClock, MemoryTransport, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, make_user, open_app, sign_in
from delivering import deliver

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def api(client, tenant, path, body):
    reply = client.post("/api/v1" + path, json=body, headers={"Authorization": f"Bearer {tenant.key}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


def work(db, clock):
    # The app's worker attributes orders in its dispatcher (app.py adds the hook); a bare test worker has
    # no hooks, and without this one no order is ever attributed.
    run_until_idle(db, clock, hooks=[attribution.hook()])


def click(client, db, workspace_id, email):
    html = db.read_sync(
        lambda tx: tx.execute(
            sa.select(message_bodies.c.html)
            .join_from(messages, message_bodies)
            .where(messages.c.workspace_id == workspace_id, messages.c.to_email == email)
        ).scalar_one()
    )
    href = re.search(r"href=['\"]([^'\"]*/t/c/[^'\"]+)['\"]", html)
    assert href is not None, html
    reply = client.get(urlsplit(href.group(1)).path, follow_redirects=False)
    assert reply.status_code == 302, reply.text


def row(page: str, checkout_id: str) -> str:
    return page.split(f'data-checkout="{checkout_id}"', 1)[1].split("</tr>", 1)[0]


@pytest.fixture
def recovered(db, db_url, make_workspace, clock):
    """Jane's cart (c1) is won back by a click on step 1 and an order; Bob's (c2) gets the email and no
    order; Ann (c3) orders on her own before any email: not an abandoned checkout."""
    tenant = make_workspace()
    seq = db.write_sync(lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active"))
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        jane = api(
            client,
            tenant,
            "/checkouts",
            {**checkout_body("c1", "jane@example.com"), "currency": "EUR", "totalCents": 1900},
        )
        clock.advance(minutes=1)
        api(client, tenant, "/checkouts", checkout_body("c2", "bob@example.com", first_name="Bob"))
        clock.advance(minutes=1)
        api(client, tenant, "/checkouts", checkout_body("c3", "ann@example.com", first_name="Ann"))
        api(
            client,
            tenant,
            "/orders",
            {
                "orderId": "o3",
                "totalCents": 6450,
                "currency": "USD",
                "customer": {"email": "ann@example.com"},
                "properties": {"checkoutId": "c3"},
            },
        )
        work(db, clock)
        clock.advance(hours=1, seconds=1)
        work(db, clock)
        assert deliver(db_url, clock, MemoryTransport()) >= 2
        work(db, clock)

        clock.advance(minutes=30)
        click(client, db, tenant.id, "jane@example.com")
        clock.advance(hours=2)
        api(
            client,
            tenant,
            "/orders",
            {
                "orderId": "o1",
                "totalCents": 1900,
                "currency": "EUR",
                "customer": {"email": "jane@example.com"},
                "properties": {"checkoutId": "c1"},
            },
        )
        work(db, clock)
        clock.advance(seconds=1)
        yield client, tenant, seq, jane["subscriberId"]


def test_the_click_then_the_order_is_attributed_to_step_one(recovered, db):
    _, tenant, seq, _ = recovered
    rows = db.read_sync(
        lambda tx: tx.execute(
            sa.select(attributions.c.order_id, attributions.c.kind, attributions.c.sequence_id).where(
                attributions.c.workspace_id == tenant.id
            )
        ).all()
    )
    assert [tuple(r) for r in rows] == [("o1", "checkout", seq.id)]


def test_abandoned_checkouts_page_lists_cart_value_customer_emails_and_recovery(recovered, db, clock):
    client, tenant, _, jane = recovered
    page = client.get("/app/checkouts")
    assert page.status_code == 200
    text = page.text
    assert "Abandoned checkouts" in text
    # Newest first; Ann's checkout, which her own order completed, is not abandoned.
    assert text.index('data-checkout="c2"') < text.index('data-checkout="c1"')
    assert 'data-checkout="c3"' not in text
    c1, c2 = row(text, "c1"), row(text, "c2")
    assert f'href="/app/people/{jane}"' in c1 and "jane@example.com" in c1
    assert "1 \N{MULTIPLICATION SIGN} Logo tee" in c1 and "https://shop.example.com/c/c1" in c1
    assert "€19.00" in c1 and "$64.50" in c2
    assert re.search(r"data-emails>1<", c1) and re.search(r"data-emails>1<", c2)
    assert "recovered</span> €19.00 by" in c1 and "step 1</a> of Abandoned checkout" in c1
    assert "not recovered" in c2 and "not recovered" not in c1

    # The same figures as the overview's: its "Abandoned" and "Recovered" over the same checkouts.
    figures = db.read_sync(
        lambda tx: analytics.report(tx, tenant.id, T0 - timedelta(hours=1), clock.now()).workspace.total
    )
    assert (figures.abandoned, figures.recovered, figures.revenue) == (2, 1, {"EUR": [1, 1900]})
    assert f"{figures.abandoned} checkouts no order completed" in text
    assert text.count('badge good">recovered') == figures.recovered


def test_abandoned_checkouts_page_numbers_are_checked_and_scoped_to_the_workspace(
    recovered, db, db_url, make_workspace
):
    client, _, _, _ = recovered
    assert "data-checkout=" not in client.get("/app/checkouts", params={"page": 2}).text
    assert client.get("/app/checkouts", params={"page": 0}).status_code == 400
    assert client.get("/app/checkouts", params={"page": "x"}).status_code == 400
    other = make_workspace()
    with open_app(db_url) as stranger:
        sign_in(stranger, make_user(db, other.name))
        page = stranger.get("/app/checkouts").text
        assert "data-checkout=" not in page and "No abandoned checkouts" in page


def test_sequences_list_shows_recovered_revenue(recovered):
    client, _, seq, _ = recovered
    listed = row(
        client.get("/app/sequences").text.replace(f'data-sequence="{seq.id}"', 'data-checkout="seq"'), "seq"
    )
    assert re.search(r'data-revenue><span title="1 recovered orders">€19.00</span>', listed)


def test_person_and_message_pages_say_what_the_email_recovered(recovered, db, clock):
    client, tenant, _, jane = recovered
    person = client.get(f"/app/people/{jane}").text
    assert "recovered</span> €19.00 by <a" in person and "step 1</a> of Abandoned checkout" in person
    # The run the order stopped reads "recovered", in green, not "stopped" in red.
    run = person.split('class="card run"', 1)[1].split("</div>", 1)[0]
    assert 'badge good" data-run-status>recovered<' in run
    assert "recovered €19.00 by step 1" in run
    assert 'class="reason"' not in run and ">stopped<" not in run
    message_id = re.search(r'href="/app/messages/([^"]+)">step 1<', person).group(1)
    message = client.get(f"/app/messages/{message_id}").text
    assert "recovered</span> €19.00 by step 1 (order o1" in message
    bob = db.read_sync(
        lambda tx: tx.execute(
            sa.select(messages.c.id).where(
                messages.c.workspace_id == tenant.id, messages.c.to_email == "bob@example.com"
            )
        ).scalar_one()
    )
    assert "No order attributed to this email." in client.get(f"/app/messages/{bob}").text


def test_a_cancelled_recovered_order_is_no_longer_recovered_anywhere(recovered, db):
    client, tenant, seq, jane = recovered
    api(client, tenant, "/orders", {"orderId": "o1", "totalCents": 1900, "currency": "EUR",
                                    "status": "cancelled", "customer": {"email": "jane@example.com"},
                                    "properties": {"checkoutId": "c1"}})  # fmt: skip
    c1 = row(client.get("/app/checkouts").text, "c1")
    assert "not recovered" in c1  # still abandoned: the order an email won back is worth nothing now
    listed = client.get("/app/sequences").text.split(f'data-sequence="{seq.id}"', 1)[1].split("</tr>", 1)[0]
    assert "data-revenue>—<" in listed
    person = client.get(f"/app/people/{jane}").text
    assert "data-recovered" not in person and "data-run-status>recovered<" not in person


def test_abandoned_checkouts_come_fifty_a_page(recovered):
    client, tenant, _, _ = recovered
    for i in range(49):
        api(client, tenant, "/checkouts", checkout_body(f"p{i}", f"p{i}@example.com"))
    first = client.get("/app/checkouts").text
    assert first.count("data-checkout=") == 50 and "51 checkouts" in first
    assert 'href="?page=2">Next<' in first
    second = client.get("/app/checkouts", params={"page": 2}).text
    # The oldest (Jane's, c1) is the one left for page 2.
    assert second.count("data-checkout=") == 1 and 'data-checkout="c1"' in second
    assert 'href="?page=1">Previous<' in second and "Next<" not in second
