"""URLs a store sends (urls.check_web_url): a URL of the common shape is accepted in one match, and that
match never accepts what the full check (no spaces or controls, urlsplit's scheme and host) refuses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartback import urls


def _full(text: str) -> str | None:
    try:
        return urls._checked_by_parts(text)
    except urls.InvalidUrl:
        return None


def _checked(text: str) -> str | None:
    try:
        return urls.check_web_url(text)
    except urls.InvalidUrl:
        return None


@settings(max_examples=1500, deadline=None)
@given(st.from_regex(urls._PLAIN_WEB_URL, fullmatch=True))
def test_what_the_one_match_accepts_the_full_check_accepts(text: str) -> None:
    assert _full(text) == text


URLISH = st.text(
    alphabet=st.sampled_from(list("hHtTpPsS:/.-[]@?#%:0123456789aZ é\t\x00\x7f")), max_size=40
).map(lambda tail: "https://" + tail)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(URLISH, st.text(max_size=40)))
def test_the_one_match_changes_no_answer(text: str) -> None:
    assert _checked(text) == _full(text.strip())


@pytest.mark.parametrize(
    "text",
    [
        "https://shop.example/checkouts/c1?token=a&b=c#top",
        "HTTP://SHOP.EXAMPLE:8080",
        "https://cdn.shop.example/i/p1.jpg",
    ],
)
def test_common_urls_take_the_one_match(text: str) -> None:
    assert urls._PLAIN_WEB_URL.fullmatch(text)
    assert urls.check_web_url(text) == text
