"""What a store owner sees in real headless Chromium, in one session to keep it quick: the editor shows the
stop rule a sequence made through the API really has and loads every step's preview;
the event log's refresh adds new rows and leaves open ones open; the abandoned checkouts page lists the
carts and links to each shopper; every page (the sign-in and not-found pages too) at desktop width and
at 390 px (screenshots under test-artifacts/screenshots/test_browser_owner_pages/) without horizontal
scroll, with chart labels of 11 px or more."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from test_dashboard_flow import setup_shop, sign_in

# Made through the API: stops on any order of the person (stopOnOrder), no other stop condition.
SEQUENCE = {
    "name": "Two reminders",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopOnOrder": True,
    "steps": [
        {"type": "email", "subject": "First reminder", "html": "<p>First body</p>", "delay": {"hours": 1}},
        {"type": "email", "subject": "Second reminder", "html": "<p>Second body</p>", "delay": {"days": 1}},
    ],
}


def test_browser_owner_pages(tmp_path, start_server, chromium, screenshots):
    url, key, user = setup_shop(tmp_path)
    server = start_server(url)
    made = httpx.post(server.api + "/sequences", json=SEQUENCE, headers={"Authorization": f"Bearer {key}"})
    assert made.status_code == 200, made.text
    sequence_id = made.json()["sequence"]["id"]
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    sign_in(page, server, user)

    # The editor names the stop rule the sequence has (stopOnOrder), not "Never stop early".
    page.goto(f"{server.url}/app/sequences/{sequence_id}")
    stop = page.get_by_label("Stop", exact=True)
    assert stop.locator("option:checked").inner_text() == "The person places any order"
    # Every step's preview loads on page load, not only the last one's.
    for index, body in enumerate(("First body", "Second body")):
        page.frame_locator(f"iframe[name=preview-{index}]").get_by_text(body).wait_for(timeout=10_000)

    # The event log keeps a row opened to read while its refresh adds the new events on top.
    def checkout(number):
        body = {"checkoutId": f"owner-cart-{number}", "totalCents": 1900, "currency": "EUR",
                "customer": {"email": f"shopper{number}@example.com"}}  # fmt: skip
        sent = httpx.post(server.api + "/checkouts", json=body, headers={"Authorization": f"Bearer {key}"})
        assert sent.status_code == 200, sent.text

    checkout(1)
    page.goto(server.url + "/app/events")
    shown = page.locator("tr", has_text="shopper1@example.com")
    before = shown.count()
    first = shown.first
    first.locator("summary").click()
    checkout(2)
    page.locator("tr", has_text="shopper2@example.com").first.wait_for(timeout=15_000)
    page.wait_for_timeout(2500)  # one more refresh with nothing new
    assert first.locator("details").get_attribute("open") is not None
    assert shown.count() == before
    assert page.locator("tr[data-empty]").is_hidden()

    # Every page, at desktop width and at 390 px (a phone): a screenshot each, no horizontal scroll, and
    # chart labels drawn at 11 px or more.
    sent = httpx.post(
        server.api + "/transactional/send",
        json={"to": "shopper1@example.com", "subject": "Your receipt", "body": "<p>Thanks</p>",
              "from": "shop@example.com"},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    page.goto(server.url + "/app/messages")
    message_url = page.locator("tbody tr a").first.get_attribute("href")
    page.goto(server.url + "/app/people?q=shopper1")
    person_url = page.get_by_role("link", name="shopper1@example.com").first.get_attribute("href")
    # The abandoned checkouts page lists both carts, newest first, each linking to its shopper.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Abandoned checkouts").click()
    rows = page.locator("tr[data-checkout]")
    assert rows.count() == 2 and rows.first.get_attribute("data-checkout") == "owner-cart-2"
    assert "€19.00" in rows.first.inner_text() and "not recovered" in rows.first.inner_text()
    rows.last.get_by_role("link", name="shopper1@example.com").click()
    page.wait_for_url(server.url + person_url)
    pages = {
        "overview": "/app/",
        "checkouts": "/app/checkouts",
        "sequences": "/app/sequences",
        "sequence": f"/app/sequences/{sequence_id}",
        "new-sequence": "/app/sequences/new",
        "people": "/app/people",
        "person": person_url,
        "messages": "/app/messages",
        "message": message_url,
        "events": "/app/events",
        "settings": "/app/settings",
        "not-found": "/app/people/sub_missing",
        "sign-in": "/app/login",  # in a context of its own, not signed in
    }
    signed_out = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    too_wide, small_labels = [], []
    for width in (1280, 390):
        for name, path in pages.items():
            view = signed_out if name == "sign-in" else page
            view.set_viewport_size({"width": width, "height": 900})
            view.goto(server.url + path)
            view.wait_for_load_state("networkidle")
            screenshots(view, f"{name}-{'desktop' if width > 390 else '390px'}")
            scroll = view.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                too_wide.append((name, width, scroll))
            smallest = view.evaluate(SMALLEST_CHART_TEXT)
            if smallest is not None and smallest < 11:
                small_labels.append((name, width, round(smallest, 1)))
    assert (too_wide, small_labels) == ([], [])
    signed_out.context.close()

    assert problems == []
    context.close()


# The smallest font size, in CSS pixels as drawn, of any text in an SVG chart on the page (None if none).
SMALLEST_CHART_TEXT = """() => {
  let smallest = null;
  for (const text of document.querySelectorAll("svg text")) {
    const svg = text.ownerSVGElement, box = svg.viewBox.baseVal;
    const scale = box && box.width ? svg.getBoundingClientRect().width / box.width : 1;
    const size = parseFloat(getComputedStyle(text).fontSize) * scale;
    if (smallest === null || size < smallest) smallest = size;
  }
  return smallest;
}"""
