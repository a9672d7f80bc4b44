"""Rendering an email step: filters, missing variables, CSS inlining, the text part, the preheader, click
tracking and the open pixel, and the shipped abandoned-cart template."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from cartback.delivery import render, tokens
from cartback.delivery.links import LinkSigner

PUBLIC = "https://mail.shop.example.com"
SECRET = "test-secret"
SIGNER = LinkSigner(PUBLIC, SECRET, "ws_1", "msg_1")
UNSUBSCRIBE = SIGNER.unsubscribe_url("jane@example.com")
CART_URL = "https://shop.example.com/cart/abc?utm_source=email&step=2"


def _context(**extra: Any) -> dict[str, Any]:
    return {
        "subscriber": {"email": "jane@example.com", "firstName": "Jane", "attributes": {}},
        "event": {
            "checkoutId": "abc",
            "checkoutUrl": CART_URL,
            "totalCents": 6450,
            "currency": "USD",
            "occurredAt": "2026-11-23T10:00:00Z",
            "items": [
                {
                    "title": "Logo tee",
                    "quantity": 2,
                    "priceCents": 2500,
                    "imageUrl": "https://cdn.example.com/t.jpg",
                },
                {"title": "Mug", "quantity": 1, "priceCents": 1450, "imageUrl": None},
            ],
            "properties": {},
        },
        "checkout": {},
        "workspace": {"id": "ws_1", "name": "Acme"},
        "unsubscribe_url": UNSUBSCRIBE,
        **extra,
    }


def _html(
    source: str, context: dict[str, Any] | None = None, signer: LinkSigner | None = None, **content: Any
) -> render.Rendered:
    return render.render_message({"subject": "s", "html": source, **content}, context or _context(), signer)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


def _clicked_url(href: str) -> str:
    assert href.startswith(f"{PUBLIC}/t/c/")
    payload = tokens.verify(href.rpartition("/")[2], lambda w: SECRET if w == "ws_1" else None)
    assert payload["k"] == "c" and payload["m"] == "msg_1"
    return str(payload["u"])


# -- filters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 8850 | money: 'USD' }}", "$88.50"),
        ("{{ 8850 | money }}", "$88.50"),
        ("{{ 0 | money: 'USD' }}", "$0.00"),
        ("{{ 123456789 | money: 'usd' }}", "$1,234,567.89"),
        ("{{ -500 | money: 'USD' }}", "-$5.00"),
        ("{{ 8850 | money: 'JPY' }}", "¥8,850"),
        ("{{ 8850 | money: 'KRW' }}", "₩8,850"),
        ("{{ 1234 | money: 'KWD' }}", "KWD\xa01.234"),
        ("{{ 1234 | money: 'IQD' }}", "IQD\xa01.234"),
        ("{{ 8850 | money: 'EUR' }}", "€88.50"),
        ("{{ 8850 | money: 'GBP' }}", "£88.50"),
        ("{{ 8850 | money: 'EUR', 'de_DE' }}", "88,50\xa0€"),
        ("{{ 8850 | money: 'EUR', 'zz' }}", "€88.50"),
        ("{{ '8850' | money: 'USD' }}", "$88.50"),
        ("{{ missing | money: 'USD' }}", ""),
        ("{{ 'lots' | money: 'USD' }}", ""),
        ("{{ 8850 | money: 'not a currency' }}", ""),
        ("{{ event.totalCents | money: event.currency }}", "$64.50"),
    ],
)
def test_render_money_filter(source: str, expected: str) -> None:
    assert render.render_email({"subject": source}, _context()).subject == " ".join(expected.split())
    assert render.render_email({"subject": "s", "text": source}, _context()).text == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ event.occurredAt | date: '%b %d, %Y' }}", "Nov 23, 2026"),
        ("{{ checkout.updatedAt | date: '%Y-%m-%d %H:%M' }}", "2026-11-24 08:30"),
        ("{{ '2026-11-23T10:00:00.123+00:00' | date: '%H:%M' }}", "10:00"),
        ("[{{ nothing | date: '%Y' }}]", "[]"),
    ],
)
def test_render_date_filter_formats_iso_strings(source: str, expected: str) -> None:
    ctx = _context(checkout={"updatedAt": "2026-11-24T08:30:00Z"})
    assert render.render_email({"subject": "s", "text": source}, ctx).text == expected


def test_render_missing_variables_render_empty() -> None:
    rendered = render.render_email(
        {
            "subject": "Hi {{ subscriber.nickname }}{{ nope.deeper.still }}!",
            "text": "[{{ event.items[9].title }}][{% for x in nothing %}x{% endfor %}]",
            "html": "<p>[{{ subscriber.attributes.missing }}]</p>",
        },
        _context(),
    )
    assert rendered.subject == "Hi !"
    assert rendered.text == "[][]"
    assert "<p>[]</p>" in (rendered.html or "")


def test_render_autoescapes_subscriber_data_in_html_only() -> None:
    ctx = _context(subscriber={"firstName": '<script>alert("x")</script> & co'})
    rendered = render.render_email(
        {"subject": "Hi {{ subscriber.firstName }}", "html": "<p>{{ subscriber.firstName }}</p>"}, ctx
    )
    assert "<script>" not in (rendered.html or "")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in (rendered.html or "")
    assert rendered.subject == 'Hi <script>alert("x")</script> & co'


def test_render_subject_is_one_line() -> None:
    assert render.render_email({"subject": "  a\r\n  b\n"}, _context()).subject == "a b"


def test_render_check_reports_line_and_column() -> None:
    render.check("html", "<p>{{ fine }}</p>", html=True)
    with pytest.raises(render.TemplateError, match=r"html: template error at line 2, column \d+"):
        render.check("html", "<p>ok</p>\n{% if %}", html=True)


# -- CSS, text, preheader -------------------------------------------------------------------------------


def test_render_inlines_css_and_keeps_media_queries() -> None:
    source = (
        "<html><head><style>p.lead { color: #ff0000; } @media (max-width: 600px) { p { color: blue; } }"
        "</style><link rel='stylesheet' href='https://example.com/remote.css'></head>"
        "<body><p class='lead'>Hello</p></body></html>"
    )
    html = _html(source).html or ""
    (p,) = _tags(html, "p")
    assert "color: #ff0000" in (p["style"] or "")
    assert "p.lead" not in html
    assert "@media (max-width: 600px)" in html


def test_render_generates_text_when_missing() -> None:
    source = (
        "<html><head><title>T</title><style>p{margin:0}</style></head><body>"
        "<h1>Your cart</h1><p>Hi {{ subscriber.firstName }},<br>still there?</p>"
        "<table><tr><td>Logo tee</td><td>{{ 2500 | money: 'USD' }}</td></tr></table>"
        "<ul><li>One</li><li>Two</li></ul>"
        "<div style='display: none'>hidden</div>"
        "<p><a href='{{ event.checkoutUrl }}'>Back to your cart</a> or "
        "<a href='mailto:help@shop.example.com'>write to us</a></p></body></html>"
    )
    rendered = _html(source, signer=SIGNER, previewText="Preview words")
    assert rendered.text == (
        "Your cart\n\nHi Jane,\nstill there?\n\nLogo tee  $25.00\n\n- One\n- Two\n\n"
        f"Back to your cart ({CART_URL}) or write to us (help@shop.example.com)"
    )


def test_render_keeps_given_text() -> None:
    rendered = _html("<p>html</p>", text="Plain {{ subscriber.firstName }}")
    assert rendered.text == "Plain Jane"


def test_render_html_to_text_is_public() -> None:
    assert render.html_to_text(
        "<p>a &amp; b</p><p><a href='https://x.example'>https://x.example</a></p>"
    ) == ("a & b\n\nhttps://x.example")
    assert render.html_to_text("") == ""
    assert (
        render.html_to_text("<p>unclosed <b>bold <i>and</p> </div></span> stray")
        == "unclosed bold and\n\nstray"
    )


def test_render_preheader_is_a_hidden_span_first_in_the_body() -> None:
    rendered = _html(
        "<html><body class='b'><p>Body</p></body></html>", previewText="Hi {{ subscriber.firstName }} & co"
    )
    html = rendered.html or ""
    assert rendered.preheader == "Hi Jane & co"
    start = html.index("<body")
    span = html.index("<span", start)
    assert span == html.index(">", start) + 1
    (attrs,) = _tags(html, "span")
    assert "display:none" in (attrs["style"] or "")
    assert "Hi Jane &amp; co" in html
    assert "Hi Jane" not in (rendered.text or "")


# -- tracking ------------------------------------------------------------------------------------------


def test_render_rewrites_http_links_but_not_mailto_or_unsubscribe() -> None:
    source = (
        "<html><head><style>a { color: red; }</style></head><body>"
        "<a href='{{ event.checkoutUrl }}' class='button'>Cart</a>"
        "<a HREF=' http://shop.example.com/plain '>Plain</a>"
        "<a href='mailto:help@shop.example.com'>Mail</a>"
        "<a href='tel:+15551234'>Call</a>"
        "<a href='#top'>Top</a>"
        "<a name='anchor'>No href</a>"
        "<a href='{{ unsubscribe_url }}'>Unsubscribe</a>"
        "<!--[if mso]><a href='https://outlook.example.com/'>vml</a><![endif]-->"
        "</body></html>"
    )
    html = _html(source, signer=SIGNER).html or ""
    anchors = _tags(html, "a")
    hrefs = [a.get("href") for a in anchors]
    assert _clicked_url(hrefs[0] or "") == CART_URL
    assert anchors[0]["class"] == "button" and "color: red" in (anchors[0]["style"] or "")
    assert _clicked_url(hrefs[1] or "") == "http://shop.example.com/plain"
    assert hrefs[2:] == ["mailto:help@shop.example.com", "tel:+15551234", "#top", None, UNSUBSCRIBE]
    assert "<!--[if mso]><a href='https://outlook.example.com/'>vml</a><![endif]-->" in html


def test_render_adds_open_pixel_last_in_body() -> None:
    html = _html("<html><body><p>Hi</p></body></html>", signer=SIGNER).html or ""
    pixel = SIGNER.open_pixel_url()
    assert html.endswith(
        f'<img src="{pixel}" width="1" height="1" alt="" style="{render._PIXEL_STYLE}" /></body></html>'
    )
    assert html.count(pixel) == 1


def test_render_fragment_without_body_gets_pixel_and_preheader() -> None:
    html = _html("<p>Hi</p>", signer=SIGNER, previewText="Pre").html or ""
    assert html.startswith('<span class="preheader"')
    assert html.endswith('.gif" width="1" height="1" alt="" style="' + render._PIXEL_STYLE + '" />')


def test_render_without_signer_leaves_links_alone() -> None:
    html = _html("<a href='{{ event.checkoutUrl }}'>Cart</a>").html or ""
    assert _tags(html, "a")[0]["href"] == CART_URL
    assert "/t/o/" not in html


# -- the shipped template ------------------------------------------------------------------------------


def test_render_default_template_shows_the_cart() -> None:
    content = render.default_template("abandoned_cart")
    assert set(content) == {"subject", "previewText", "html"}
    rendered = render.render_email(content, _context())
    html = rendered.html or ""
    assert rendered.subject == "Jane, you left something in your cart"
    assert "Logo tee" in html and "Mug" in html
    assert "$50.00" in html and "$14.50" in html and "$64.50" in html  # lines: price x quantity; total
    assert 'src="https://cdn.example.com/t.jpg"' in html
    assert [a["href"] for a in _tags(html, "a") if a.get("class") == "button"] == [CART_URL]
    assert UNSUBSCRIBE in html
    assert "@media only screen" in html
    assert "Return to your cart" in (rendered.text or "") and CART_URL in (rendered.text or "")


def test_render_default_template_without_items_or_url_shows_no_empty_cart_and_no_button() -> None:
    """A checkout sent with neither items nor a URL: the email says what is known (the shop, the total),
    with no "here is what's in it" over an empty table and no button that leads nowhere."""
    bare = {"checkoutId": "abc", "totalCents": 6450, "currency": "USD", "items": [], "properties": {}}
    rendered = render.render_email(render.default_template("abandoned_cart"), _context(event=bare))
    html = rendered.html or ""
    assert "you started a checkout at Acme and did not finish it ($64.50)." in html
    assert "what's in it" not in html and 'class="items"' not in html and 'class="item"' not in html
    assert "Return to your cart" not in html and 'class="button"' not in html
    assert "It is saved for you" not in html
    assert UNSUBSCRIBE in html  # the footer is there as ever
    # With a URL but no items: the button, and no empty cart either.
    with_url = render.render_email(
        render.default_template("abandoned_cart"), _context(event={**bare, "checkoutUrl": CART_URL})
    )
    html = with_url.html or ""
    assert "It is saved for you." in html and "what's in it" not in html
    assert [a["href"] for a in _tags(html, "a") if a.get("class") == "button"] == [CART_URL]


def test_render_default_template_prefers_latest_checkout_and_tracks_its_url() -> None:
    latest = "https://shop.example.com/cart/abc?v=2"
    ctx = _context(
        checkout={
            "checkoutId": "abc",
            "checkoutUrl": latest,
            "totalCents": 99_00,
            "currency": "EUR",
            "items": [{"title": "Hoodie", "quantity": 1, "priceCents": 99_00}],
        }
    )
    rendered = render.render_message({"type": "email", "template": "abandoned_cart"}, ctx, SIGNER)
    html = rendered.html or ""
    assert "Hoodie" in html and "€99.00" in html and "Logo tee" not in html
    (button,) = [a for a in _tags(html, "a") if a.get("class") == "button"]
    assert _clicked_url(button["href"] or "") == latest
    unsubscribe = [a for a in _tags(html, "a") if a["href"] == UNSUBSCRIBE]
    assert len(unsubscribe) == 1
    assert SIGNER.open_pixel_url() in html


def test_render_template_fields_given_in_the_step_win() -> None:
    rendered = render.render_email({"template": "abandoned_cart", "subject": "Mine"}, _context())
    assert rendered.subject == "Mine" and "Logo tee" in (rendered.html or "")
    with pytest.raises(KeyError):
        render.default_template("nope")
    assert render.TEMPLATES == ("abandoned_cart",)


def test_render_default_template_checks_clean() -> None:
    content = render.default_template("abandoned_cart")
    render.check("subject", content["subject"])
    render.check("previewText", content["previewText"])
    render.check("html", content["html"], html=True)


# -- resource limits --------------------------------------------------------------------------------

X120 = "x" * 120
# Each exceeds one limit on any context, and each ran for seconds to minutes (or without end) unlimited.
OVER_LIMITS = {
    "nested loops": (
        "{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}",
        "more than 10,000 loop iterations",
    ),
    "loops one after another": (
        "{% for i in (1..9999) %}{% endfor %}" * 50,
        "more than 10,000 loop iterations",
    ),
    "a reversed huge range": (
        "{% for i in (1..100000000) reversed %}{% endfor %}",
        "more than 10,000 loop iterations",
    ),
    "tablerows": (
        "{% tablerow i in (1..3000) %}{% tablerow j in (1..3000) %}{% endtablerow %}{% endtablerow %}",
        "more than 10,000 loop iterations",
    ),
    "a filter over a huge range": ("{{ (1..100000000) | join: ',' }}", "handed to filters"),
    "filters over the largest string, in a loop": (
        "{% capture s %}{% for i in (1..4000) %}" + X120 + "{% endfor %}{% endcapture %}"
        "{% for i in (1..1000) %}{{ s | split: '' | sort | size }}{% endfor %}",
        "more than 2,000,000 characters and items handed to filters",
    ),
    "a string doubled": (
        "{% assign s = 'xxxxxxxxxx' %}{% for i in (1..100) %}{% assign s = s | append: s %}{% endfor %}",
        "more than 500,000 bytes of assigned variables",
    ),
    "output": ("{% for i in (1..9000) %}" + X120 + "{% endfor %}", "more than 500,000 bytes of output"),
    "a hundred small assignments in a loop": (
        "{% for i in (1..10000) %}" + "{% assign x = i | plus: 1 %}" * 100 + "{% endfor %}",
        "more than 0.25 s of CPU time",
    ),
}


@pytest.mark.parametrize("name", list(OVER_LIMITS))
def test_render_limits_refuse_at_check_and_at_render_quickly(name: str) -> None:
    import time

    source, reason = OVER_LIMITS[name]
    # The rendering thread's CPU time: what the limits bound, whatever else the machine is doing.
    started = time.thread_time()
    with pytest.raises(render.RenderError, match="template exceeds the resource limits") as at_save:
        render.check("html", source, html=True)
    assert reason in str(at_save.value) and str(at_save.value).startswith("html: ")
    with pytest.raises(render.RenderError) as at_send:
        render.render_email({"subject": "s", "html": source}, _context())
    assert reason in str(at_send.value)
    assert time.thread_time() - started < 1


def test_render_limits_leave_real_templates_alone() -> None:
    """The shipped template, a loop over a cart and a few filters over a large body all render."""
    render.check("html", render.default_template("abandoned_cart")["html"], html=True)
    assert render.render_email({"template": "abandoned_cart"}, render.SAMPLE_CONTEXT).html
    body = (
        "{% capture s %}{% for i in (1..3000) %}"
        + X120
        + "{% endfor %}{% endcapture %}{{ s | upcase | size }}"
    )
    render.check("html", body, html=True)
    assert "360000" in (render.render_email({"subject": "s", "html": body}, _context()).html or "")
    limited = "{% for i in (1..100000000) limit: 3 %}{{ i }}{% endfor %}"
    assert "123" in (render.render_email({"subject": "s", "html": limited}, _context()).html or "")


def test_render_check_refuses_limits_only_not_what_sample_data_cannot_render() -> None:
    """A template that fails on the sample data for another reason may be right for real data."""
    render.check("html", "{{ 10 | divided_by: subscriber.attributes.count }}", html=True)
    with pytest.raises(render.RenderError, match="divided_by"):
        render.render_email({"subject": "s", "html": "{{ 10 | divided_by: 0 }}"}, _context())
