"""Settings > Store connectors in real headless Chromium against `cartback serve`: add a WooCommerce
connector (its secret made and shown once), a webhook signed with it reaches the URL the page gives and
shows as the last webhook, a rotation keeps the previous secret for its grace period, removing it makes
the URL answer 404; at 390 px the section fits without horizontal scroll."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from test_dashboard_flow import setup_shop, sign_in

from connector_hooks import payload, raw, woo_headers, woo_order


def _send(url: str, secret: str, data: dict[str, object]) -> httpx.Response:
    body = raw(data)
    return httpx.post(url, content=body, headers=woo_headers(body, secret, "order.created"))


def test_browser_store_connectors(tmp_path, start_server, chromium, screenshots):
    url, _, user = setup_shop(tmp_path)
    server = start_server(url)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    sign_in(page, server, user)

    page.goto(server.url + "/app/settings#connectors")
    section = page.locator("section#connectors")
    assert "No connectors." in section.inner_text()
    section.get_by_label("Platform").select_option("woocommerce")
    section.get_by_label("Name").fill("Woo shop")
    section.get_by_role("button", name="Add connector").click()
    made = page.locator("[data-connector-made]")
    made.wait_for()
    hook = made.locator("[data-connector-url]").inner_text()
    secret = made.locator("[data-connector-secret]").inner_text()
    assert hook.startswith(server.url + "/hooks/woocommerce/con_")
    screenshots(page, "added")

    sent = _send(hook, secret, woo_order("pending"))
    assert sent.status_code == 200 and sent.json()["applied"], sent.text
    page.goto(server.url + "/app/settings#connectors")
    row = page.locator("tr[data-connector]", has_text="Woo shop")
    assert hook in row.inner_text() and "none yet" not in row.locator("[data-last-webhook]").inner_text()
    # Shown once: the secret is on no later page.
    assert secret not in page.content()

    row.get_by_text("Rotate secret").click()
    row.get_by_label("Previous secret valid for (hours)").fill("1")
    row.get_by_role("button", name="Rotate").click()
    rotated = page.locator("[data-connector-made]")
    rotated.wait_for()
    assert "the previous one stays valid until" in rotated.inner_text()
    newer = rotated.locator("[data-connector-secret]").inner_text()
    assert newer != secret
    assert _send(hook, newer, payload("woocommerce", "customer")).status_code == 200
    assert _send(hook, secret, woo_order("processing")).status_code == 200

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/app/settings#connectors")
    screenshots(page, "listed-390")
    wide = page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    assert not wide, "the settings page scrolls sideways at 390 px"

    page.locator("tr[data-connector]", has_text="Woo shop").get_by_role("button", name="Remove").click()
    page.get_by_text("Connector removed").wait_for()
    assert page.locator("tr[data-connector]").count() == 0
    assert _send(hook, newer, woo_order("processing")).status_code == 404
    assert problems == []
