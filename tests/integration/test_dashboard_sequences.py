"""The sequence list and form editor: what it saves is what the API saves; a template error shows its line
and saves nothing; enable/disable; the live preview; sequences made through the API keep their graph."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartback.core import sequences, shops
from cartback.delivery import render
from cartback.store import sequences as sequence_store
from cartback.store.tables import message_bodies
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import checkout_body, csrf_of, make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

FORM = {
    "name": "Cart rescue",
    "description": "",
    "trigger": "event_received",
    "event_name": "Started Checkout",  # a Klaviyo name: the parser makes it canonical, as for the API
    "tag_name": "",
    "list_id": "",
    "filter_path": ["totalCents"],
    "filter_operator": ["greater_than"],
    "filter_value": ["1000"],
    "enrollment_mode": "matching_field",
    "enrollment_field_path": "checkoutId",
    "step_delay_days": ["", ""],
    "step_delay_hours": ["", "1"],
    "step_delay_minutes": ["0.5", ""],
    "step_subject": ["You left {{ event.items[0].title }}", "Still there?"],
    "step_preview_text": ["", ""],
    "step_html": [
        "<p>Hi {{ subscriber.firstName }}</p>\n"
        "<ul>{% for item in event.items %}<li>{{ item.title }}</li>{% endfor %}</ul>",
        "<p>Come back</p>",
    ],
    "step_text": ["", ""],
    "stop": "order_same_checkout",
    "stop_value": "",
    "window_enabled": "on",
    "window_days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
    "window_start": "09:00",
    "window_end": "18:00",
    "window_timezone": "Europe/Berlin",
    "steps_editable": "1",
}

# The same sequence as a Sequenzy API request body.
API_BODY = {
    "name": "Cart rescue",
    "trigger": "event_received",
    "eventName": "Started Checkout",
    "propertyFilters": [{"path": "totalCents", "operator": "greater_than", "value": "1000"}],
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": "ecommerce.order_placed",
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "sendingWindow": {
        "enabled": True,
        "days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
        "startTime": "09:00",
        "endTime": "18:00",
        "timezone": "Europe/Berlin",
    },
    "steps": [
        {
            "type": "email",
            "delay": {"minutes": 0.5},
            "subject": "You left {{ event.items[0].title }}",
            "html": FORM["step_html"][0],
        },
        {"type": "email", "delay": {"hours": 1}, "subject": "Still there?", "html": "<p>Come back</p>"},
    ],
}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def shop(db, db_url, make_workspace, clock):
    tenant = make_workspace()
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        yield client, tenant


def post_form(client, url, fields, **extra):
    page = client.get("/app/sequences/new")
    data = {**fields, "csrf_token": csrf_of(page.text), **extra}
    return client.post(url, data=data, follow_redirects=False)


def stored(db, workspace_id):
    return db.read_sync(lambda tx: sequence_store.listing(tx, workspace_id, limit=50)[0])


def test_dashboard_editor_saves_exactly_what_the_api_saves(shop, db):
    client, tenant = shop
    reply = post_form(client, "/app/sequences/new", FORM, action="save")
    assert reply.status_code == 303, reply.text
    sequence_id = reply.headers["location"].split("/app/sequences/", 1)[1].split("?", 1)[0]
    api = client.post("/api/v1/sequences", json=API_BODY, headers={"Authorization": f"Bearer {tenant.key}"})
    assert api.status_code == 200, api.text
    by_id = {s.id: s for s in stored(db, tenant.id)}
    from_editor, from_api = by_id[sequence_id], by_id[api.json()["sequence"]["id"]]
    assert from_editor.definition == from_api.definition
    assert from_editor.status == from_api.status == "draft"
    assert from_editor.definition["eventName"] == "ecommerce.checkout_started"
    # And the form shows it back as it was entered.
    page = client.get(f"/app/sequences/{sequence_id}", params={"saved": 1})
    assert page.status_code == 200 and "Saved." in page.text
    assert 'value="0.5"' in page.text and "Europe/Berlin" in page.text
    assert "You left {{ event.items[0].title }}" in page.text


def test_dashboard_editor_template_error_shows_its_line_and_saves_nothing(shop, db):
    client, tenant = shop
    broken = dict(FORM)
    broken["step_html"] = ["<p>Hi</p>", "<p>one</p>\n<p>two</p>\n<p>{% if %}three</p>"]
    reply = post_form(client, "/app/sequences/new", broken, action="save")
    assert reply.status_code == 400
    assert "Not saved" in reply.text
    assert "line 3" in reply.text
    assert 'id="html1" name="step_html" rows="14" spellcheck="false" aria-invalid="true"' in reply.text
    assert '<span class="lineno">3</span> &lt;p&gt;{% if %}three&lt;/p&gt;' in reply.text
    # What was typed is still in the form, and nothing was stored.
    assert "&lt;p&gt;two&lt;/p&gt;" in reply.text
    assert stored(db, tenant.id) == []


def test_dashboard_editor_refuses_what_the_api_refuses(shop, db):
    client, tenant = shop
    reply = post_form(client, "/app/sequences/new", {**FORM, "step_subject": ["", "x"]}, action="save")
    assert reply.status_code == 400 and "subject is required" in reply.text
    reply = post_form(client, "/app/sequences/new", {**FORM, "window_timezone": "Mars/Base"}, action="save")
    assert reply.status_code == 400 and "Mars/Base" in reply.text
    reply = post_form(
        client, "/app/sequences/new", {**FORM, "step_delay_minutes": ["soon", ""]}, action="save"
    )
    assert reply.status_code == 400
    assert stored(db, tenant.id) == []


def test_dashboard_editor_save_shows_the_warning_for_an_event_never_received(shop, db):
    client, _tenant = shop
    reply = post_form(client, "/app/sequences/new", {**FORM, "event_name": "checkout_started"}, action="save")
    assert reply.status_code == 303, reply.text
    page = client.get(reply.headers["location"])
    assert "Check: eventName: no event named &#39;checkout_started&#39; has been received" in page.text
    assert "did you mean &#34;ecommerce.checkout_started&#34;?" in page.text
    # The canonical name saves without it.
    reply = post_form(client, "/app/sequences/new", FORM, action="save")
    assert "no event named" not in client.get(reply.headers["location"]).text


def test_dashboard_editor_buttons_change_the_form_without_saving(shop, db):
    client, tenant = shop
    added = post_form(client, "/app/sequences/new", FORM, action="add_step")
    assert added.status_code == 200 and "Step 3" in added.text
    removed = post_form(client, "/app/sequences/new", FORM, action="remove_step:0")
    assert "Step 2" not in removed.text and "Still there?" in removed.text
    shipped = post_form(client, "/app/sequences/new", FORM, action="template_step:abandoned_cart")
    assert "you left something in your cart" in shipped.text
    assert (
        'aria-label="Property path 2"'
        in post_form(client, "/app/sequences/new", FORM, action="add_filter").text
    )
    assert (
        'aria-label="Property path 1"'
        not in post_form(client, "/app/sequences/new", FORM, action="remove_filter:0").text
    )
    assert stored(db, tenant.id) == []


def test_dashboard_edit_enable_and_disable(shop, db):
    client, tenant = shop
    reply = post_form(client, "/app/sequences/new", FORM, action="save")
    url = reply.headers["location"].split("?", 1)[0]
    edited = post_form(
        client, url, {**FORM, "step_subject": ["Your cart misses you", "Still there?"]}, action="save"
    )
    assert edited.status_code == 303
    [seq] = stored(db, tenant.id)
    emails = [n for n in seq.definition["nodes"] if n["type"] == "email"]
    assert emails[0]["config"]["subject"] == "Your cart misses you"
    assert seq.revision == 2

    token = csrf_of(client.get(url).text)
    assert client.post(url + "/status", data={"status": "active", "csrf_token": token}).status_code == 200
    assert stored(db, tenant.id)[0].status == "active"
    page = client.get(url).text
    assert 'id="sequence-status">live<' in page
    client.post(url + "/status", data={"status": "paused", "csrf_token": token})
    assert stored(db, tenant.id)[0].status == "paused"
    # Without the CSRF token nothing changes.
    assert client.post(url + "/status", data={"status": "active"}).status_code == 403
    assert stored(db, tenant.id)[0].status == "paused"
    assert post_form(client, url, FORM, action="save", csrf_token="").status_code == 403


def test_dashboard_editor_keeps_steps_it_cannot_show(shop, db):
    client, tenant = shop
    body = {
        "name": "Tagging flow",
        "trigger": "contact_added",
        "steps": [
            {"type": "add_tag", "config": {"tagName": "new"}},
            {"type": "email", "subject": "Hi", "html": "<p>x</p>"},
        ],
    }
    api = client.post("/api/v1/sequences", json=body, headers={"Authorization": f"Bearer {tenant.key}"})
    sequence_id = api.json()["sequence"]["id"]
    url = f"/app/sequences/{sequence_id}"
    page = client.get(url).text
    assert "steps the form cannot edit" in page and "Add tag new" in page
    before = stored(db, tenant.id)[0].definition["nodes"]
    token = csrf_of(page)
    fields = {k: v for k, v in FORM.items() if not k.startswith("step_")}
    reply = client.post(
        url,
        data={
            **fields,
            "trigger": "contact_added",
            "name": "Renamed",
            "steps_editable": "0",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    [seq] = stored(db, tenant.id)
    assert seq.name == "Renamed" and seq.definition["nodes"] == before


def test_dashboard_preview_renders_a_sample_then_the_newest_real_event(shop, db, clock):
    client, tenant = shop
    token = csrf_of(client.get("/app/sequences/new").text)
    sample = client.post("/app/sequences/preview?step=0", data={**FORM, "csrf_token": token})
    assert sample.status_code == 200
    assert "sample checkout" in sample.text and "<li>Protein Powder</li>" in sample.text
    assert "sandbox" in sample.headers["content-security-policy"]
    assert "img-src data:;" in sample.headers["content-security-policy"]
    assert "http" not in sample.headers["content-security-policy"]

    checkout = checkout_body("c1", title="Alpaca scarf")
    client.post("/api/v1/checkouts", json=checkout, headers={"Authorization": f"Bearer {tenant.key}"})
    real = client.post("/app/sequences/preview?step=0", data={**FORM, "csrf_token": token})
    assert "<li>Alpaca scarf</li>" in real.text and "You left Alpaca scarf" in real.text
    assert "jane@example.com" in real.text

    broken = client.post(
        "/app/sequences/preview?step=0", data={**FORM, "step_html": ["{% for %}", ""], "csrf_token": token}
    )
    assert broken.status_code == 200 and "line 1" in broken.text and "Cannot preview" in broken.text
    assert client.post("/app/sequences/preview?step=5", data={**FORM, "csrf_token": token}).status_code == 404
    assert client.post("/app/sequences/preview?step=0", data=FORM).status_code == 403


def test_dashboard_sequence_list_shows_status_and_step_figures(shop, db, clock):
    client, tenant = shop
    seq = db.write_sync(
        lambda tx: sequences.create(
            tx, tenant.id, {**API_BODY, "sendingWindow": None}, clock.now(), status="active"
        )
    )
    clock.advance(seconds=1)
    client.post(
        "/api/v1/checkouts", json=checkout_body("c1"), headers={"Authorization": f"Bearer {tenant.key}"}
    )
    run_until_idle(db, clock)
    page = client.get("/app/sequences").text
    assert "Cart rescue" in page and ">live<" in page
    row = page.split(f'data-sequence="{seq.id}"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num">1</td>' in row  # enrolled
    detail = client.get(f"/app/sequences/{seq.id}").text
    assert "1 enrolled" in detail and "1 running" in detail


NESTED_LOOPS = "{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}"


def test_dashboard_editor_refuses_a_template_over_the_render_limits_naming_the_step(shop, db):
    import time

    client, tenant = shop
    heavy = {**FORM, "step_html": ["<p>Hi</p>", "<p>one</p>\n" + NESTED_LOOPS]}
    started = time.perf_counter()
    reply = post_form(client, "/app/sequences/new", heavy, action="save")
    assert reply.status_code == 400 and "Not saved" in reply.text
    assert "Step 2 html: template exceeds the resource limits: more than 10,000 loop iterations" in reply.text
    assert 'id="html1" name="step_html" rows="14" spellcheck="false" aria-invalid="true"' in reply.text
    assert stored(db, tenant.id) == []
    token = csrf_of(client.get("/app/sequences/new").text)
    preview = client.post("/app/sequences/preview?step=1", data={**heavy, "csrf_token": token})
    assert preview.status_code == 200 and "Cannot preview" in preview.text
    assert "more than 10,000 loop iterations" in preview.text
    assert time.perf_counter() - started < 5


def test_dashboard_editor_stop_rule_is_the_stored_one(shop, db):
    """The editor's "Never stop early" saves a sequence that never stops on orders (the API's default
    for a checkout trigger would have been stopOnOrder); "any order" saves stopOnOrder and shows it."""
    client, tenant = shop
    for stop, on_order in (("none", False), ("any_order", True)):
        reply = post_form(client, "/app/sequences/new", {**FORM, "name": stop, "stop": stop}, action="save")
        assert reply.status_code == 303, reply.text
        [seq] = [s for s in stored(db, tenant.id) if s.name == stop]
        assert seq.definition["stopOnOrder"] is on_order
        assert not seq.definition.get("stopCondition")
        page = client.get(f"/app/sequences/{seq.id}").text
        assert f'<option value="{stop}" selected>' in page


def _without_links(html: str) -> str:
    """A message's HTML with its per-message addresses (tracked links, unsubscribe, open pixel) blanked."""
    html = re.sub(r"<img[^>]*/t/o/[^>]*>", "", html)
    return re.sub(r">\s+<", "><", re.sub(r'(href|src)="[^"]*"', r'\1=""', html))


def test_dashboard_preview_is_the_sent_mail_with_the_shops_name(shop, db, clock):
    client, tenant = shop
    db.write_sync(lambda tx: shops.update(tx, tenant.id, "Acme Outdoor", "1 Trail Road, Boulder"))
    form = {
        **FORM,
        "stop": "none",
        "window_enabled": "",
        "step_delay_days": [""],
        "step_delay_minutes": [""],
        "step_delay_hours": [""],
        "step_subject": ["You left something"],
        "step_preview_text": [""],
        "step_html": [render.default_template("abandoned_cart")["html"]],
        "step_text": [""],
    }
    reply = post_form(client, "/app/sequences/new", form, action="save")
    assert reply.status_code == 303, reply.text
    [seq] = stored(db, tenant.id)
    db.write_sync(lambda tx: sequences.set_status(tx, tenant.id, seq.id, "active", clock.now()))
    checkout = checkout_body("c1", title="Alpaca scarf")
    client.post("/api/v1/checkouts", json=checkout, headers={"Authorization": f"Bearer {tenant.key}"})
    run_until_idle(db, clock)
    [sent] = db.read_sync(
        lambda tx: tx.execute(
            sa.select(message_bodies.c.html).where(message_bodies.c.workspace_id == tenant.id)
        ).all()
    )
    token = csrf_of(client.get("/app/sequences/new").text)
    page = client.post("/app/sequences/preview?step=0", data={**form, "csrf_token": token}).text
    # The preview is the document with the editor's caption after <body>.
    caption = re.search(r"<body[^>]*>(.*?)<table", page, re.S)
    assert caption is not None
    preview = page.replace(caption.group(1), "", 1)
    assert "Acme Outdoor" in sent.html and "1 Trail Road, Boulder" in sent.html
    assert "OUR SHOP" not in preview.upper().replace("ACME OUTDOOR", "")
    assert _without_links(preview) == _without_links(sent.html)


def test_dashboard_and_api_number_email_steps_alike(shop):
    """Email steps are numbered 1, 2 among themselves in the API's stats and on the sequence page, however
    many waits stand between them (the API numbered them 2 and 4): stepNumber in the stats, step in the
    metrics."""
    client, tenant = shop
    body = {**API_BODY, "stopCondition": None}
    auth = {"Authorization": f"Bearer {tenant.key}"}
    sequence_id = client.post("/api/v1/sequences", json=body, headers=auth).json()["sequence"]["id"]
    stats = client.get(f"/api/v1/sequences/{sequence_id}/stats", headers=auth).json()
    emails = [(s["stepNumber"], s["subject"]) for s in stats["steps"] if s["type"] == "email"]
    assert emails == [(1, API_BODY["steps"][0]["subject"]), (2, "Still there?")]
    metrics = client.get(f"/api/v1/metrics/sequences/{sequence_id}", headers=auth).json()
    assert [s["step"] for s in metrics["steps"]] == [1, 2]
    page = client.get(f"/app/sequences/{sequence_id}").text
    assert "Step 1. Email: You left" in page and "Step 2. Email: Still there?" in page
