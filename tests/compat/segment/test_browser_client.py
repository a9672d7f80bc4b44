"""Segment's browser library itself (@segment/analytics-next, its published UMD build from npm) in real
headless Chromium on a shop's page, posting to a real `cartback serve` from another origin as a shop's
pages do: each call to its short path (/v1/i, /v1/t, /v1/p, /v1/g) as JSON labelled text/plain, the write
key in the body. Settings are given to it inline (cdnSettings), so it asks Segment's CDN for nothing; the
shop's page and the library's files come from a small server of the test's own. What the library sent
is read back from the database."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.compat.segment.test_node_clients import the_journey_as_stored

CALLS = """
async ({ writeKey, apiHost, userId }) => {
  const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load(
    {
      writeKey,
      cdnSettings: {
        integrations: { 'Segment.io': { apiKey: writeKey, apiHost, protocol: 'http' } },
        metrics: { sampleRate: 0 },
      },
    },
    { retryQueue: false },
  )
  await analytics.identify(userId, { email: `${userId}@example.com`, firstName: 'Noor', plan: 'pro' })
  await analytics.track('Checkout Started', {
    checkout_id: `chk_${userId}`,
    value: 64.5,
    currency: 'EUR',
    products: [
      { product_id: 'tee', name: 'Logo tee', price: 25, quantity: 2 },
      { product_id: 'mug', name: 'Mug', price: 14.5 },
    ],
    checkout_url: `https://shop.example.com/checkout/${userId}`,
  })
  await analytics.page('Docs', 'Pricing', { path: '/pricing' })
  await analytics.group('acme', { name: 'Acme' })
}
"""


def _until(page: Any, condition: Any, what: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what()
        page.wait_for_timeout(100)  # Playwright delivers the page's events while it waits, not in a sleep


class _ShopPages(http.server.BaseHTTPRequestHandler):
    """The shop's page at /shop/ and the library's UMD build (and the chunks it loads from beside itself)
    under /shop/ajs/, from a server of its own: Chromium lets a page reach a loopback address only when the
    page came from one too."""

    umd: Path

    def do_GET(self) -> None:
        if self.path == "/shop/":
            self._send("text/html", b'<!doctype html><title>Shop</title><script src="ajs/index.js"></script>')
        elif (
            self.path.startswith("/shop/ajs/") and (self.umd / self.path.removeprefix("/shop/ajs/")).is_file()
        ):
            self._send("text/javascript", (self.umd / self.path.removeprefix("/shop/ajs/")).read_bytes())
        else:
            self.send_error(404)

    def _send(self, ctype: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def shop_page(node_clients, chromium):
    """A page at http://localhost:<port>/shop/ loading the library; the page's errors are listed."""
    handler = type(
        "Pages", (_ShopPages,), {"umd": node_clients / "node_modules/@segment/analytics-next/dist/umd"}
    )
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    context = chromium.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        yield page, f"http://localhost:{pages.server_port}/shop/", problems
    finally:
        context.close()
        pages.shutdown()
        pages.server_close()


def test_browser_library_calls_are_stored_exactly(shop_page, server, make_workspace):
    page, shop, problems = shop_page
    tenant = make_workspace()
    user = f"ajs_{uuid.uuid4().hex[:8]}"
    api = server.url  # 127.0.0.1: another origin than the shop's localhost
    refused: list[str] = []

    def route(r: Any) -> None:
        # The shop's own pages and cartback; anything else (Segment's CDN, its API) would be a mistake.
        if r.request.url.startswith((shop, api + "/v1/")):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    sent: list[tuple[str, str | None, dict[str, Any]]] = []
    page.on(
        "request",
        lambda r: (
            sent.append((r.url, r.headers.get("content-type"), json.loads(r.post_data or "{}")))
            if r.url.startswith(api + "/v1/")
            else None
        ),
    )
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.url, r.status)) if r.url.startswith(api) else None)
    page.goto(shop)
    page.wait_for_function("typeof window.AnalyticsNext === 'object'")
    page.evaluate(CALLS, {"writeKey": tenant.key, "apiHost": f"127.0.0.1:{server.port}/v1", "userId": user})
    _until(page, lambda: len(answers) >= 4, lambda: (answers, problems, refused))

    assert problems == [] and refused == [], (problems, refused)
    assert sorted(answers) == sorted((f"{api}/v1/{p}", 200) for p in "itpg"), answers
    assert {ctype for _, ctype, _ in sent} == {"text/plain"}
    body = {url.rsplit("/", 1)[1]: message for url, _, message in sent}
    assert {m["writeKey"] for m in body.values()} == {tenant.key}

    data, by_key = the_journey_as_stored(server.database_url, tenant.id, user)
    [person] = data["subscribers"]
    assert person["anonymous_id"] == body["i"]["anonymousId"]
    assert {k: e["name"] for k, e in by_key.items()} == {
        f"segment:{body['p']['messageId']}": "page.viewed",
        f"segment:{body['g']['messageId']}": "group.joined",
    }
    # The page call's properties as the library filled them in (url, title, referrer ... of the shop's
    # page), with its name and category.
    assert by_key[f"segment:{body['p']['messageId']}"]["properties"] == {
        **body["p"]["properties"],
        "name": "Pricing",
        "category": "Docs",
    }
    assert by_key[f"segment:{body['g']['messageId']}"]["properties"] == {
        "groupId": "acme",
        "traits": {"name": "Acme"},
    }
    started = [e for e in data["events"] if e["name"] == "ecommerce.checkout_started"]
    assert [e["subscriber_id"] for e in started] == [person["id"]]
