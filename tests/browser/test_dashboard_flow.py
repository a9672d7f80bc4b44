"""The whole loop in real headless Chromium against `cartback serve`: sign in, build a sequence in the
editor, send a checkout through the API, see the enrollment on the person's page, then (after a wait of a
few seconds) the message in the outbox with the cart's items in its preview, and the overview's figures
change. The server sends through a real SMTP sink, so the email is `sent` (without one it is `kept` in the
outbox: tests/integration/test_dashboard_delivery.py). A screenshot of each page is saved (see the
`screenshots` fixture)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user
from smtp_sink import SmtpSink

CHECKOUT = {
    "checkoutId": "browser-cart-1",
    "totalCents": 7400,
    "currency": "EUR",
    "checkoutUrl": "https://shop.example.com/checkout/browser-cart-1",
    "customer": {"email": "robin@example.com", "firstName": "Robin"},
    "items": [
        {"productId": "B-1", "title": "Merino beanie", "quantity": 1, "priceCents": 3400},
        {"productId": "S-2", "title": "Trail socks", "quantity": 2, "priceCents": 2000},
    ],
}


def setup_shop(tmp_path):
    url = f"sqlite:///{tmp_path / 'flow.db'}"
    db = Database(url)
    db.migrate()

    def create(tx):
        ws = workspaces.create_workspace(tx, "shop", system_clock.now())
        return workspaces.create_api_key(tx, ws.id, system_clock.now())[1]

    key = db.write_sync(create)
    user = make_user(db, "shop")
    db.close()
    return url, key, user


def whole_email_in_frame(page):
    """The preview frame holds the whole email: no part of it is cut off to the right or below, and the
    footer's unsubscribe line lies inside the frame's visible box as the page shows it (no scrolling
    inside the frame)."""
    frame_box = page.locator("iframe.preview").bounding_box()
    preview = page.frame_locator("iframe.preview")
    footer = preview.get_by_text("from these emails")
    footer.wait_for()
    box = footer.bounding_box()
    assert "You are receiving this email because" in preview.locator("body").inner_text()
    assert frame_box["x"] <= box["x"] and box["x"] + box["width"] <= frame_box["x"] + frame_box["width"]
    assert frame_box["y"] <= box["y"] and box["y"] + box["height"] <= frame_box["y"] + frame_box["height"]
    [inner] = [f for f in page.frames if f.url.endswith("/preview")]
    size = inner.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.documentElement.scrollHeight, document.documentElement.clientHeight]"
    )
    assert size[0] <= size[1] and size[2] <= size[3], f"the email overflows its frame: {size}"
    assert page.locator("iframe.preview").get_attribute("sandbox") == ""


def eventually(check, timeout=45.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def sign_in(page, server, user):
    page.goto(server.url + "/app/login")
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/app/")


def nav(page, name):
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def figure(page, name):
    return page.locator(f"[data-figure={name}]").inner_text()


def test_browser_editor_checkout_enrollment_outbox_and_overview(
    tmp_path, start_server, chromium, screenshots
):
    url, key, user = setup_shop(tmp_path)
    with SmtpSink() as sink:
        server = start_server(url, env={"CARTBACK_SMTP_URL": sink.url})
        _flow(server, key, user, chromium, screenshots)
    # Robin's email went through the mail server once (a second shopper's may follow before the end).
    assert [r.rcpt_tos for r in sink.received].count(["robin@example.com"]) == 1


def _flow(server, key, user, chromium, screenshots):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    sign_in(page, server, user)
    assert figure(page, "checkouts_started") == "0" and figure(page, "emails_sent") == "0"
    screenshots(page, "01-overview-before")

    # Build the sequence in the editor: the shipped abandoned-cart email, sent after 3 seconds.
    nav(page, "Sequences")
    page.get_by_role("link", name="New sequence").click()
    page.get_by_label("Name", exact=True).fill("Cart rescue")
    page.get_by_label("Wait (days)").fill("")
    page.get_by_label("Wait (hours)").fill("")
    page.get_by_label("Wait (minutes)").fill("0.05")
    # A locator waits through the frame's reloads (Frame.content raised while the preview was navigating).
    page.frame_locator("iframe[name=preview-0]").get_by_text("Protein Powder").first.wait_for(timeout=45_000)
    screenshots(page, "02-editor")
    page.get_by_role("button", name="Save sequence").first.click()
    page.wait_for_url("**/app/sequences/seq_*?saved=1")
    assert page.get_by_role("status").inner_text() == "Saved."
    page.get_by_role("button", name="Enable").click()
    assert page.locator("#sequence-status").inner_text() == "live"
    nav(page, "Sequences")
    assert page.get_by_role("link", name="Cart rescue").is_visible()
    screenshots(page, "03-sequences")

    # The store sends a checkout through the API.
    sent = httpx.post(server.api + "/checkouts", json=CHECKOUT, headers={"Authorization": f"Bearer {key}"})
    assert sent.status_code == 200, sent.text

    nav(page, "People")
    page.get_by_label("Search").fill("robin")
    page.get_by_role("button", name="Search").click()
    screenshots(page, "04-people")
    page.get_by_role("link", name="robin@example.com").click()

    def enrolled():
        page.reload()
        return page.locator("[data-enrollment]").count() == 1

    eventually(enrolled, what="the enrollment on the person's page")
    assert "Cart rescue" in page.locator("[data-enrollment]").inner_text()
    screenshots(page, "04-person")
    page.get_by_role("button", name="Explain").click()
    page.locator("#explain .badge.good", has_text="enrolled").wait_for()

    # After the wait, the message is in the outbox with the cart's items in its preview.
    nav(page, "Messages")

    def delivered():
        page.reload()
        return page.locator("tbody tr [data-status=sent]").count() == 1

    eventually(delivered, what="the message to be sent")
    screenshots(page, "05-messages")
    page.locator("tbody tr a").first.click()
    frame = page.frame_locator("iframe.preview")
    assert frame.locator("body").inner_text().count("Merino beanie") >= 1
    body = frame.locator("body").inner_text()
    assert "Trail socks" in body and "robin" in body.lower()
    assert page.locator("iframe.preview").get_attribute("sandbox") == ""
    screenshots(page, "06-message")
    # The whole email shows in its frame, down to the footer's unsubscribe line, on a phone (390 px) and on
    # a desktop, without the frame being given scripts.
    for width, height in ((390, 844), (1280, 900)):
        page.set_viewport_size({"width": width, "height": height})
        page.reload()
        whole_email_in_frame(page)
        shot = screenshots(page, f"06-message-{width}px")
        # A full-page capture leaves the frame blank; the frame alone, as it shows on screen:
        page.locator("iframe.preview").screenshot(
            path=str(shot.with_name(f"06-message-preview-{width}px.png"))
        )
    page.set_viewport_size({"width": 1280, "height": 900})

    # The customer comes back and orders: the overview shows the checkout, the email and the recovery.
    order = {
        "orderId": "browser-order-1",
        "totalCents": 7400,
        "currency": "EUR",
        "customer": {"email": "robin@example.com"},
        "properties": {"checkoutId": "browser-cart-1"},
    }
    placed = httpx.post(server.api + "/orders", json=order, headers={"Authorization": f"Bearer {key}"})
    assert placed.status_code == 200, placed.text
    nav(page, "Overview")

    def recovered():
        page.reload()
        return figure(page, "recovered") == "1"

    eventually(recovered, what="the order to be attributed")
    assert figure(page, "checkouts_started") == "1"
    assert figure(page, "emails_sent") == "1"
    assert figure(page, "abandoned") == "1"  # Shopify's sense: left, then won back by the email
    assert figure(page, "recovery_rate") == "100.0%"
    assert page.locator("[data-revenue=EUR]").inner_text() == "€74.00"
    assert page.get_by_role("img", name="From email to order").is_visible()
    screenshots(page, "07-overview-after")

    # The person and the message say what the email won back: the run reads "recovered" (not a red
    # "stopped"), and both pages name the amount and the step that earned it.
    nav(page, "People")
    page.get_by_label("Search").fill("robin")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="robin@example.com").click()
    said = page.locator("[data-recovered]").first.inner_text()
    assert said.startswith("recovered €74.00 by step 1 of Cart rescue"), said
    assert page.locator("[data-run-status]").inner_text() == "recovered"
    assert page.locator(".badge.bad", has_text="stopped").count() == 0
    screenshots(page, "07-person-recovered")
    page.locator("[data-recovered] a").first.click()
    said = page.locator("dd[data-recovered]").inner_text()
    assert said.startswith("recovered €74.00 by step 1"), said
    screenshots(page, "07-message-recovered")

    # The event log refreshes by itself: a checkout started now shows up without a reload.
    nav(page, "Events")
    assert page.locator("tr", has_text="ecommerce.order_placed").count() >= 1
    second = {**CHECKOUT, "checkoutId": "browser-cart-2", "customer": {"email": "kim@example.com"}}
    again = httpx.post(server.api + "/checkouts", json=second, headers={"Authorization": f"Bearer {key}"})
    assert again.status_code == 200, again.text
    page.locator("tr", has_text="kim@example.com").first.wait_for(timeout=30_000)
    screenshots(page, "08-events")
    nav(page, "Settings")
    assert page.get_by_role("heading", name="API keys").is_visible()
    screenshots(page, "09-settings")

    assert problems == []
    context.close()


def test_browser_editor_template_error_shows_its_line_and_is_not_saved(
    tmp_path, start_server, chromium, screenshots
):
    url, _, user = setup_shop(tmp_path)
    server = start_server(url)
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, server, user)
    page.goto(server.url + "/app/sequences/new")
    html = page.get_by_label("HTML (Liquid)")
    html.fill("<p>Hello</p>\n<p>{{ subscriber.firstName }}</p>\n<p>{% for item in %}</p>")
    page.get_by_role("button", name="Save sequence").first.click()
    alert = page.get_by_role("alert").first
    assert "Not saved" in alert.inner_text() and "line 3" in alert.inner_text()
    assert html.get_attribute("aria-invalid") == "true"
    assert "line 3" in page.locator(".field-error").inner_text()
    # What was typed is still there to fix.
    assert "{% for item in %}" in html.input_value()
    screenshots(page, "editor-template-error")
    page.goto(server.url + "/app/sequences")
    assert "No sequences yet" in page.locator("main").inner_text()
    context.close()
