"""cartback.addresses: one mailbox in one normal form, and the key subscribers and suppressions use."""

from __future__ import annotations

import email_validator
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartback import addresses


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("jane@example.com", "jane@example.com"),
        ("  Jane.Doe+cart@Shop.EXAMPLE ", "Jane.Doe+cart@shop.example"),
        ("jane@Bücher.example", "jane@xn--bcher-kva.example"),
        ("jane@XN--BCHER-KVA.example", "jane@xn--bcher-kva.example"),
    ],
)
def test_addresses_normal_form(given: str, normal: str) -> None:
    assert addresses.normalise(given) == normal
    assert addresses.key(given) == normal.lower()


@pytest.mark.parametrize(
    "given",
    [
        "a@victim.example;x@shop.example",
        "a@victim.example,x@shop.example",
        "a@victim.example<x@shop.example>",
        "Shop <a@victim.example>",
        "a@victim.example\r\nBcc: x@shop.example",
        '"a b"@victim.example',
        "a@[127.0.0.1]",
        "a@localhost",
        "a@shop.local",
        "jürgen@shop.example",
        "a b@victim.example",
        "@victim.example",
        "a@",
        "a" * 250 + "@victim.example",
        "a" * 65 + "@victim.example",
    ],
)
def test_addresses_anything_but_one_ascii_mailbox_is_refused(given: str) -> None:
    with pytest.raises(addresses.InvalidAddress):
        addresses.normalise(given)


def test_addresses_key_of_a_stored_non_mailbox_is_its_lowercase() -> None:
    # Rows stored before addresses were parsed keep the key they had.
    assert addresses.key(" A@Victim.Example;x@Shop.example ") == "a@victim.example;x@shop.example"
    assert addresses.key("Jürgen@Bücher.example") == "jürgen@xn--bcher-kva.example"


_LABEL_CHARS = "aZ09-x"
_LOCAL_CHARS = "aZ09_+-.!#x"


@st.composite
def _address_like(draw: st.DrawFn) -> str:
    """Strings shaped like addresses, crowded at the edges the plain-address pattern must get right:
    label and part lengths around their limits, hyphens, dots, Punycode, special-use and numeric TLDs."""
    local = draw(st.text(_LOCAL_CHARS, min_size=0, max_size=3)) + "a" * draw(
        st.sampled_from([0, 1, 60, 63, 64])
    )
    labels = draw(
        st.lists(
            st.one_of(
                st.text(_LABEL_CHARS, min_size=0, max_size=5),
                st.sampled_from(["xn--bcher-kva", "ab--cd", "a" * 63, "a" * 64, "-a", "a-"]),
            ),
            min_size=0,
            max_size=4,
        )
    )
    tld = draw(st.sampled_from(["com", "COM", "x", "test", "Local", "invalid", "123", "c0m", "io", "a" * 63]))
    domain = ".".join([*labels, tld]) if draw(st.booleans()) else ".".join(labels)
    pad = draw(st.sampled_from(["", " ", "a" * 200 + "."]))
    return f"{local}@{pad.strip() if pad == ' ' else pad}{domain}"


@settings(max_examples=3000, deadline=None)
@given(
    text=st.one_of(
        st.from_regex(addresses._PLAIN, fullmatch=True),  # every string the fast path may answer for
        _address_like(),
        st.text("aZ0.@-_+ x", max_size=12),
    )
)
def test_addresses_plain_fast_path_agrees_with_email_validator(text: str) -> None:
    """What the fast path answers, email-validator answers too: the same normal form, never an address
    it would refuse."""
    fast = addresses._plain(text)
    if fast is None:
        return
    parsed = email_validator.validate_email(
        text, check_deliverability=False, allow_smtputf8=False, allow_display_name=False, strict=True
    )
    assert parsed.ascii_email == fast


@pytest.mark.parametrize(
    "given",
    ["Jane.Doe+cart@Shop.Example.COM", "a_b-c@x-y.z0.io", "r1w-2-3@example.com", ("a" * 64) + "@b.co"],
)
def test_addresses_common_addresses_take_the_fast_path(given: str) -> None:
    fast = addresses._plain(given)
    assert fast is not None and fast == addresses.normalise(given)
    slow = email_validator.validate_email(
        given, check_deliverability=False, allow_smtputf8=False, allow_display_name=False, strict=True
    )
    assert fast == slow.ascii_email
