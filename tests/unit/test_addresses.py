"""cartback.addresses: one mailbox in one normal form, and the key subscribers and suppressions use."""

from __future__ import annotations

import pytest

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
