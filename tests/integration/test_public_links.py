"""The public links of a real message (click, open pixel, unsubscribe) on real SQLite and PostgreSQL: a
sequence, a checkout and the engine run by hand make the message; the app serves its links."""

from __future__ import annotations

import time
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from cartback.core import checkouts, sequences, subscribers
from cartback.core.clock import system_clock
from cartback.delivery import links
from cartback.store import workspaces
from cartback.store.messages import MESSAGE_COLUMNS, WITH_BODY
from cartback.store.tables import enrollments, events, message_delivery, messages, suppressions
from cartback.store.tables import subscribers as subscriber_table
from cartback.testing import FrozenClock, run_until_idle

CART_URL = "https://shop.example.com/cart/c1?utm_source=email&x=1"
SEQUENCE = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "steps": [
        {
            "type": "email",
            # Past the clock of the app's own worker: only the hand-run engine sends it.
            "delay": {"hours": 1},
            "subject": "You left {{ event.items[0].title }}",
            "html": "<p>Hi {{ subscriber.firstName }}</p><a href='{{ event.checkoutUrl }}'>Back to cart</a>"
            "<a href='mailto:help@shop.example.com'>help</a>"
            "<a href='{{ unsubscribe_url }}'>Unsubscribe</a>",
        }
    ],
}


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")


def _links(html: str) -> _Hrefs:
    parser = _Hrefs()
    parser.feed(html)
    return parser


def _path(url: str) -> str:
    return urlsplit(url).path


class Shop:
    """One workspace with the sequence, driven by a frozen clock, served by the in-process app."""

    def __init__(self, app_client: Any, db: Any) -> None:
        self.http = app_client.http
        self.db = db
        self.workspace_id = app_client.tenant.id
        self.clock = FrozenClock(system_clock.now())
        db.write_sync(
            lambda tx: sequences.create(tx, self.workspace_id, SEQUENCE, self.clock.now(), status="active")
        )

    def checkout(self, checkout_id: str, email: str = "jane@example.com") -> None:
        data = checkouts.CheckoutInput(
            checkout_id=checkout_id,
            customer=subscribers.Identity(email=email, first_name="Jane"),
            currency="USD",
            total_cents=6450,
            checkout_url=CART_URL,
            items=[{"productId": "tee", "title": "Logo tee", "quantity": 1, "priceCents": 6450}],
        )
        self.db.write_sync(
            lambda tx: checkouts.record_checkout(tx, self.workspace_id, data, self.clock.now())
        )

    def run(self) -> None:
        """Dispatch at the event's time, then run the engine two hours on."""
        self._settle()
        self.clock.advance(hours=2)
        self._settle()

    def _settle(self) -> None:
        # The app's own worker (real clock) may dispatch the checkout first, or hold a lease for a moment:
        # run until nothing is pending.
        deadline = time.monotonic() + 20
        while True:
            run_until_idle(self.db, self.clock)
            if not self._pending() or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def _pending(self) -> int:
        # A live run due within minutes has not run its delay yet (the app's worker enrolls at real time,
        # a little after the frozen clock).
        soon = self.clock.now() + timedelta(minutes=5)
        undispatched = sa.select(sa.func.count()).where(
            events.c.workspace_id == self.workspace_id, events.c.dispatched_at.is_(None)
        )
        busy = sa.select(sa.func.count()).where(
            enrollments.c.workspace_id == self.workspace_id,
            sa.or_(
                enrollments.c.lease_owner.is_not(None),
                sa.and_(enrollments.c.next_run_at <= soon, enrollments.c.status.in_(["active", "waiting"])),
            ),
        )
        return int(
            self.db.read_sync(
                lambda tx: tx.execute(undispatched).scalar_one() + tx.execute(busy).scalar_one()
            )
        )

    def messages(self, email: str = "jane@example.com") -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(*MESSAGE_COLUMNS)
                .select_from(WITH_BODY)
                .where(messages.c.workspace_id == self.workspace_id, messages.c.to_email == email)
            ).all()
        )

    def events(self, name: str) -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(events).where(events.c.workspace_id == self.workspace_id, events.c.name == name)
            ).all()
        )

    def delivery(self, message_id: str) -> Any:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(message_delivery).where(message_delivery.c.message_id == message_id)
            ).one()
        )

    def suppressed(self, email: str) -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(suppressions).where(
                    suppressions.c.workspace_id == self.workspace_id, suppressions.c.email == email
                )
            ).all()
        )

    def status(self, email: str) -> str:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(subscriber_table.c.status).where(
                    subscriber_table.c.workspace_id == self.workspace_id, subscriber_table.c.email == email
                )
            ).scalar_one()
        )

    def signer(self, message_id: str) -> links.LinkSigner:
        ws = self.db.read_sync(lambda tx: workspaces.get_workspace(tx, self.workspace_id))
        return links.LinkSigner("http://127.0.0.1:8000", ws.secret, ws.id, message_id)


@pytest.fixture
def shop(app_client, db) -> Shop:
    return Shop(app_client, db)


@pytest.fixture
def sent(shop: Shop) -> Any:
    shop.checkout("c1")
    shop.run()
    (message,) = shop.messages()
    return message


def _unsubscribe_path(message: Any) -> str:
    return _path(next(h for h in _links(message.html).hrefs if "/u/" in h))


def _click_path(message: Any) -> str:
    return _path(next(h for h in _links(message.html).hrefs if "/t/c/" in h))


def _altered(path: str) -> str:
    """The same path with one character of the token's payload changed."""
    head, _, token = path.rpartition("/")
    i = 5
    return f"{head}/{token[:i]}{'A' if token[i] != 'A' else 'B'}{token[i + 1 :]}"


def test_public_links_message_html_is_tracked(sent):
    found = _links(sent.html)
    assert CART_URL not in found.hrefs
    assert "mailto:help@shop.example.com" in found.hrefs
    assert sum("/t/c/" in h for h in found.hrefs) == 1
    assert sum("/u/" in h for h in found.hrefs) == 1
    assert any("/t/o/" in src and src.endswith(".gif") for src in found.images)
    # The text part keeps the real URL.
    assert CART_URL in sent.text


def test_public_links_click_redirects_and_records(shop, sent):
    path = _click_path(sent)
    response = shop.http.get(path, follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == CART_URL
    assert response.headers["referrer-policy"] == "no-referrer"
    clicks = shop.events("email.clicked")
    assert len(clicks) == 1
    props = clicks[0].properties
    assert props["url"] == CART_URL and props["messageId"] == sent.id
    assert props["sequenceId"] == sent.sequence_id and props["nodeId"] == sent.node_id
    assert clicks[0].subscriber_id == sent.subscriber_id
    first = shop.delivery(sent.id).clicked_at
    assert first is not None
    # Every click is an event; clicked_at keeps the first.
    assert shop.http.get(path, follow_redirects=False).status_code == 302
    assert len(shop.events("email.clicked")) == 2
    assert shop.delivery(sent.id).clicked_at == first


def test_public_links_head_on_click_redirects_without_recording(shop, sent):
    response = shop.http.head(_click_path(sent), follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == CART_URL
    assert shop.events("email.clicked") == []


def test_public_links_altered_click_token_is_refused(shop, sent):
    path = _click_path(sent)
    for bad in (_altered(path), path + "x", path[:-3], "/t/c/not-a-token", "/t/c/a.b", "/t/c/%00.%00"):
        response = shop.http.get(bad, follow_redirects=False)
        assert response.status_code in (400, 404), bad
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
    assert shop.events("email.clicked") == []
    assert shop.delivery(sent.id).clicked_at is None


def test_public_links_forged_or_wrong_kind_token_is_refused(shop, sent):
    # Signed with another workspace's secret: not ours, whatever it says.
    other = shop.db.write_sync(
        lambda tx: workspaces.create_workspace(tx, f"other-{sent.id}", shop.clock.now())
    )
    forged = links.LinkSigner("http://127.0.0.1:8000", other.secret, shop.workspace_id, sent.id)
    response = shop.http.get(_path(forged.click_url("https://evil.example.com/")), follow_redirects=False)
    assert response.status_code == 404
    # Other kinds of token of the same message are not click tokens.
    signer = shop.signer(sent.id)
    for path in (_path(signer.open_pixel_url()).removesuffix(".gif"), _unsubscribe_path(sent)):
        token = path.rpartition("/")[2]
        assert shop.http.get(f"/t/c/{token}", follow_redirects=False).status_code == 404
    assert shop.events("email.clicked") == []


def test_public_links_open_pixel_records_opens(shop, sent):
    (src,) = [s for s in _links(sent.html).images if "/t/o/" in s]
    response = shop.http.get(_path(src))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a") and len(response.content) < 64
    assert "no-store" in response.headers["cache-control"]
    opened = shop.events("email.opened")
    assert len(opened) == 1
    assert opened[0].properties == {
        "messageId": sent.id,
        "sequenceId": sent.sequence_id,
        "nodeId": sent.node_id,
    }
    first = shop.delivery(sent.id).opened_at
    assert first is not None
    shop.http.get(_path(src))
    assert len(shop.events("email.opened")) == 2
    assert shop.delivery(sent.id).opened_at == first
    assert shop.http.get(_altered(_path(src))).status_code == 404
    assert len(shop.events("email.opened")) == 2


def test_public_links_deleted_message_is_404_but_unsubscribe_works(shop, sent):
    unsubscribe = _unsubscribe_path(sent)
    click = _click_path(sent)
    shop.db.write_sync(lambda tx: tx.execute(sa.delete(messages).where(messages.c.id == sent.id)))
    assert shop.http.get(click, follow_redirects=False).status_code == 404
    assert shop.http.get(_path(shop.signer(sent.id).open_pixel_url())).status_code == 404
    assert shop.events("email.clicked") == [] and shop.events("email.opened") == []
    assert shop.http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert [s.reason for s in shop.suppressed("jane@example.com")] == ["unsubscribed"]


def test_public_links_get_shows_the_page_without_unsubscribing(shop, sent):
    path = _unsubscribe_path(sent)
    response = shop.http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "jane@example.com" in page and 'method="post"' in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")  # no external assets
    assert shop.suppressed("jane@example.com") == []
    assert shop.status("jane@example.com") != "unsubscribed"
    assert shop.events("email.unsubscribed") == []


def test_public_links_one_click_unsubscribes_and_stops_mail(shop, sent):
    path = _unsubscribe_path(sent)
    response = shop.http.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    (row,) = shop.suppressed("jane@example.com")
    assert (row.reason, row.source) == ("unsubscribed", "one_click")
    assert shop.status("jane@example.com") == "unsubscribed"
    (event,) = shop.events("email.unsubscribed")
    assert event.properties["messageId"] == sent.id and event.properties["sequenceId"] == sent.sequence_id
    # A second POST changes nothing, and answers the same.
    assert shop.http.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert len(shop.suppressed("jane@example.com")) == 1 and len(shop.events("email.unsubscribed")) == 1
    # The page now says so.
    assert "You are unsubscribed" in shop.http.get(path).text
    # A new cart of the same address gets no message.
    shop.checkout("c2")
    shop.run()
    assert [m.id for m in shop.messages()] == [sent.id]


def test_public_links_page_button_unsubscribes_as_link(shop, sent):
    path = _unsubscribe_path(sent)
    assert shop.http.post(path, data={"confirm": "1"}).status_code == 200
    (row,) = shop.suppressed("jane@example.com")
    assert row.source == "link"


def test_public_links_multipart_one_click(shop, sent):
    response = shop.http.post(_unsubscribe_path(sent), files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    (row,) = shop.suppressed("jane@example.com")
    assert row.source == "one_click"


def test_public_links_token_for_another_address_cannot_unsubscribe_this_one(shop, sent):
    signer = shop.signer(sent.id)
    bob = _path(signer.unsubscribe_url("bob@example.com"))
    assert shop.http.post(bob, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert shop.suppressed("jane@example.com") == []
    assert shop.status("jane@example.com") == "active"
    # Bob's token with Jane's address spliced into the payload: the signature no longer matches.
    jane = _unsubscribe_path(sent)
    spliced = f"/u/{jane.rpartition('/')[2].partition('.')[0]}.{bob.rpartition('.')[2]}"
    assert shop.http.post(spliced, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert shop.http.post(_altered(jane), data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert shop.suppressed("jane@example.com") == []


def test_public_links_bad_input_is_4xx_never_5xx(shop, sent):
    path = _unsubscribe_path(sent)
    token = path.rpartition("/")[2]
    cases = [
        ("get", "/u/"),
        ("get", "/u/x"),
        ("get", "/u/" + "a" * 9000 + ".b"),
        ("get", "/u/%00"),
        ("get", "/u/eyJ3IjoiXHUwMDAwIn0.abc"),  # {"w": "\u0000"}
        ("get", "/u/W10.abc"),  # a JSON list
        ("post", "/u/..."),
        ("post", f"/u/{token}x"),
        ("post", f"/u/{token.partition('.')[0]}.\u00e9"),  # a genuine payload, a non-ASCII signature
        ("get", f"/t/c/{_click_path(sent).rpartition('/')[2].partition('.')[0]}.%C3%A9"),
        ("get", "/t/o/abc.gif"),
        ("get", "/t/o/abc"),
        ("get", "/t/c/"),
        ("put", path),
        ("delete", "/t/c/abc"),
    ]
    for method, url in cases:
        response = shop.http.request(method.upper(), url, follow_redirects=False)
        assert 400 <= response.status_code < 500, (method, url, response.status_code)
    # Odd bodies on a genuine token are still an unsubscribe (the token is the authority), never a 5xx.
    for body, kind in [
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"{}", "application/json"),
        (b"&" * 5000, "application/x-www-form-urlencoded"),
    ]:
        assert shop.http.post(path, content=body, headers={"Content-Type": kind}).status_code == 200
    assert shop.suppressed("jane@example.com")[0].source == "link"


def test_public_links_token_of_deleted_workspace_is_404(shop, sent):
    signer = links.LinkSigner("http://127.0.0.1:8000", "whatever", "ws_NOPE", sent.id)
    assert shop.http.get(_path(signer.click_url(CART_URL)), follow_redirects=False).status_code == 404
    assert shop.http.post(_path(signer.unsubscribe_url("jane@example.com"))).status_code == 404


def test_public_links_time_of_first_open_is_the_app_clock(shop, sent):
    before = system_clock.now() - timedelta(seconds=5)
    shop.http.get(_path(shop.signer(sent.id).open_pixel_url()))
    assert shop.delivery(sent.id).opened_at >= before
