"""Signed tokens for the public links in emails (unsubscribe, open pixel, click redirect).

A token is `<payload>.<signature>`, both base64url without padding: the payload is compact JSON naming the
workspace (`w`), the message (`m`) and what the link does; the signature is HMAC-SHA256 of the payload
under that workspace's secret. Changing any byte (another address, another URL) breaks the signature,
and the secret never leaves the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson


class InvalidToken(ValueError):
    """The token is malformed, or its signature does not match."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(secret: str, payload: dict[str, Any]) -> str:
    """`payload` must name its workspace under `w`; keys are kept short because links get long."""
    if "w" not in payload:
        raise ValueError("a token payload names its workspace under 'w'")
    encoded = _b64(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))
    return f"{encoded}.{_mac(secret, encoded)}"


def verify(token: str, secret_for: Callable[[str], str | None]) -> dict[str, Any]:
    """The payload of a genuine token; InvalidToken otherwise. `secret_for(workspace_id)` looks up the
    workspace's secret (None if there is no such workspace)."""
    if not token.isascii():
        raise InvalidToken("malformed token")
    encoded, dot, signature = token.partition(".")
    if not dot or not encoded or not signature or len(token) > 8192:
        raise InvalidToken("malformed token")
    try:
        payload = orjson.loads(_unb64(encoded))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("w"), str):
        raise InvalidToken("malformed token")
    secret = secret_for(payload["w"])
    if secret is None or not hmac.compare_digest(_mac(secret, encoded), signature):
        raise InvalidToken("invalid signature")
    return payload
