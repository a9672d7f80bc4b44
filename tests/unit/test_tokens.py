from __future__ import annotations

import pytest

from cartback.delivery import links, tokens

SECRETS = {"ws_a": "secret-a", "ws_b": "secret-b"}


def test_token_roundtrip_and_tamper_detection():
    token = tokens.sign("secret-a", {"k": "u", "w": "ws_a", "m": "msg_1", "e": "jane@example.com"})
    assert tokens.verify(token, SECRETS.get)["e"] == "jane@example.com"
    payload, signature = token.split(".")
    forged = tokens.sign("guess", {"k": "u", "w": "ws_a", "m": "msg_1", "e": "bob@example.com"}).split(".")[0]
    for bad in [f"{forged}.{signature}", f"{payload}.{signature[:-2]}xx", payload, "", "a.b", f"{payload}."]:
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(bad, SECRETS.get)


def test_token_of_one_workspace_does_not_verify_under_another():
    token = tokens.sign("secret-a", {"k": "c", "w": "ws_b", "m": "m", "u": "https://shop.example.com"})
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(token, SECRETS.get)


def test_links_carry_signed_tokens():
    signer = links.LinkSigner("https://cb.example.com/", "secret-a", "ws_a", "msg_1")
    url = signer.click_url("https://shop.example.com/checkout/abc")
    assert url.startswith("https://cb.example.com/t/c/")
    assert tokens.verify(url.rsplit("/", 1)[1], SECRETS.get)["u"] == "https://shop.example.com/checkout/abc"
    assert signer.open_pixel_url().endswith(".gif")
    assert tokens.verify(signer.unsubscribe_url("Jane@Example.com").rsplit("/", 1)[1], SECRETS.get)["e"] == (
        "jane@example.com"
    )


def test_non_ascii_token_is_invalid_not_an_error():
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("abc.déf", SECRETS.get)
