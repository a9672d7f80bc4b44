"""cartback.headers and cartback.urls, and the renderer's handling of links that are not web links."""

from __future__ import annotations

import pytest

from cartback import headers, urls
from cartback.delivery import render
from cartback.delivery.links import LinkSigner


@pytest.mark.parametrize(
    ("given", "built"),
    [
        ("shop@T1.example", "shop@t1.example"),
        ("Shop <shop@T1.example>", "Shop <shop@t1.example>"),
        ('"Shop, Inc." <shop@t1.example>', '"Shop, Inc." <shop@t1.example>'),
        ("Shop, Inc. <shop@t1.example>", '"Shop, Inc." <shop@t1.example>'),
        ("Shöp <shop@t1.example>", "Shöp <shop@t1.example>"),
    ],
)
def test_headers_mailbox_is_one_address_with_an_optional_name(given: str, built: str) -> None:
    assert headers.mailbox(given) == built


@pytest.mark.parametrize(
    "given",
    [
        "Shop <shop@t1.example>\r\nX-Injected: 1",
        "Shop <shop@t1.example>\nBcc: x@t2.example",
        "Shop <a@t1.example>, Other <b@t2.example>",
        "Shop <a@t1.example> <b@t2.example>",
        "a@t1.example;b@t2.example",
        "Shop <a@t1.example;b@t2.example>",
        "Sh\u2028op <a@t1.example>",
    ],
)
def test_headers_mailbox_refuses_anything_else(given: str) -> None:
    with pytest.raises(ValueError):
        headers.mailbox(given)


@pytest.mark.parametrize("given", ["a\rb", "a\nb", "a\x00b", "a\x1bb", "a\x85b", "a\u2029b", "a\ud800b"])
def test_headers_text_is_one_encodable_line(given: str) -> None:
    with pytest.raises(headers.InvalidHeader):
        headers.check_text(given)
    assert headers.check_text("Ihr Warenkorb wartet\tauf Sie ✓") == "Ihr Warenkorb wartet\tauf Sie ✓"


@pytest.mark.parametrize(
    "given",
    ["javascript:alert(7)", " JavaScript:alert(7)", "data:text/html,x", "/checkout/1", "//evil.example/x",
     "https://", "ftp://shop.example/x", "https://shop.example/a b", "vbscript:x"],
)  # fmt: skip
def test_urls_only_absolute_web_urls(given: str) -> None:
    with pytest.raises(urls.InvalidUrl):
        urls.check_web_url(given)
    assert urls.check_web_url(" https://Shop.example/c?x=1 ") == "https://Shop.example/c?x=1"


def test_render_drops_script_links_and_tracks_web_links() -> None:
    signer = LinkSigner("https://cb.example", "secret", "ws_1", "msg_1")
    html = (
        '<p><a href="javascript:alert(7)">Cart</a> <a href=" java&#9;script:alert(7)">B</a>'
        ' <a href="data:text/html,x">D</a> <a href="mailto:help@shop.example">Mail</a>'
        ' <a href="https://shop.example/c">Go</a> <a href="#top">Top</a></p>'
    )
    for who in (signer, None):
        out, text = render.decorate(html, preheader=None, signer=who)
        assert "script:" not in out.lower() and "data:" not in out
        assert "<a>Cart</a>" in out and "<a>B</a>" in out and "<a>D</a>" in out
        assert 'href="mailto:help@shop.example"' in out and 'href="#top"' in out
        assert ("https://cb.example/t/c/" in out) == (who is not None)
        assert "javascript" not in text


def test_web_url_refuses_exactly_whitespace_controls_and_del():
    """The one-regex test refuses the same characters as the rule it replaced (str.isspace, C0, DEL)."""
    for code in range(0x110000):
        c = chr(code)
        refused = c.isspace() or code < 0x20 or code == 0x7F
        if refused or code % 97 == 0:  # every refused character, and a sample of the allowed ones
            url = f"https://shop.example.com/a{c}b"
            if refused:
                with pytest.raises(urls.InvalidUrl):
                    urls.check_web_url(url)
            elif 0xD800 <= code <= 0xDFFF:
                continue
            else:
                assert urls.check_web_url(url) == url
