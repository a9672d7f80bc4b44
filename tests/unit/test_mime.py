"""The MIME builder: headers written directly must be what the email package would write, and both body
encodings must give the customer the exact HTML and text back."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartback.delivery import mime


def _by_email_package(name: str, value: str) -> bytes:
    head = EmailMessage(policy=mime.POLICY)
    head[name] = value
    return head.as_bytes().removesuffix(b"\r\n")


def _build(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "message_id": "msg_1",
        "rfc_message_id": "<msg_1@shop.example.com>",
        "from_email": "Shop <shop@example.com>",
        "to_email": "buyer@example.com",
        "subject": "You left something behind",
        "html": "<p>Your cart</p>",
        "text": "Your cart",
        "kind": "marketing",
        "date": datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
        "unsubscribe_url": "https://shop.example.com/u/token",
    }
    fields.update(overrides)
    return mime.build(**fields)  # type: ignore[arg-type]


_ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=90)
_any_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=90)
_local = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9_-]{1,10})?", fullmatch=True)
_domain = st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,10}){0,3}", fullmatch=True)


@given(st.sampled_from(["Subject", "X-Campaign"]), st.one_of(_ascii_text, _any_text))
def test_header_is_what_the_email_package_writes(name: str, value: str) -> None:
    assert mime.header(name, value) == _by_email_package(name, value)


@given(st.sampled_from(["To", "From"]), _local, _domain)
def test_bare_address_header_is_what_the_email_package_writes(name: str, local: str, domain: str) -> None:
    value = f"{local}@{domain}"
    assert mime.header(name, value) == _by_email_package(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("From", "Shop <shop@example.com>"),
        ("From", '"Doe, John" <j@example.com>'),
        ("From", "Jöhn Café <j@example.com>"),
        ("To", "(note) a@example.com"),
        ("Subject", "Dein Warenkorb wartet \u2013 10 % Rabatt"),
        ("Subject", "=?utf-8?q?caf=C3=A9?="),
        ("Subject", "a long subject " * 8),
        ("Subject", "  spaced  out  "),
    ],
)
def test_headers_that_need_encoding_or_folding_go_through_the_email_package(name: str, value: str) -> None:
    assert mime.header(name, value) == _by_email_package(name, value)


def test_non_ascii_headers_are_rfc2047_encoded_and_read_back() -> None:
    raw = _build(from_email="Café Ünïcode <shop@example.com>", subject="Ton panier t'attend ☕")
    assert raw.isascii()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Ton panier t'attend ☕"
    assert parsed["From"].addresses[0].display_name == "Café Ünïcode"


def _parts(raw: bytes) -> dict[str, tuple[str, str]]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return {
        part.get_content_type(): (part["Content-Transfer-Encoding"], part.get_content().replace("\r\n", "\n"))
        for part in parsed.walk()
        if part.get_content_maintype() == "text"
    }


def test_ascii_bodies_with_short_lines_go_as_7bit() -> None:
    html = '<html>\n<body><p>Slim Jeans x 2 = $108.00</p>\n<a href="https://s.example/c?a=1&b=2">Back</a></body></html>'
    parts = _parts(_build(html=html, text="Slim Jeans x 2\r\nTotal $108.00"))
    assert parts["text/html"] == ("7bit", html + "\n")
    assert parts["text/plain"] == ("7bit", "Slim Jeans x 2\nTotal $108.00\n")


@pytest.mark.parametrize(
    "html",
    [
        "<p>Grüße, Zoë — ¥8,850</p>",  # not ASCII
        "<table>" + "<tr><td>Slim Jeans</td><td>$54.00</td></tr>" * 60 + "</table>",  # a 2,500-char line
        "<p>nul\0byte</p>",
    ],
)
def test_other_bodies_go_quoted_printable_and_decode_to_the_same_text(html: str) -> None:
    raw = _build(html=html)
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    encoding, content = _parts(raw)["text/html"]
    assert encoding == "quoted-printable"
    assert content == html + "\n"


@given(_any_text.map(lambda s: s * 30))
def test_any_html_comes_back_exactly_and_the_message_stays_7bit_clean(html: str) -> None:
    raw = _build(html=html or "x")
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    normal = (html or "x").replace("\r\n", "\n").replace("\r", "\n")
    assert _parts(raw)["text/html"][1] == (normal if normal.endswith("\n") else normal + "\n")
