"""Building a webhook request from what is stored: its body, its signed headers, and the checks that the
target URL and the signing secrets can be used. Nothing here reads the database or opens a connection;
the duty that leases, POSTs and records deliveries is `scheduler/webhook_sender.py`.

The signature scheme (docs/webhooks.md): for each active secret
`v1,` + base64(HMAC-SHA256(key, f"v1:{webhook-timestamp}:{body}")), where key is the base64 decoding of the
secret after its `whsec_` prefix; the signatures are space-separated in one header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence

import httpx

from cartback import __version__

SECRET_PREFIX = "whsec_"
USER_AGENT = f"cartback-webhooks/{__version__}"


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of this request with this secret."""
    key = _key(secret)
    signed = f"v1:{timestamp}:".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secrets: Sequence[str], webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers: one signature per active secret, so a receiver may rotate secrets."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, timestamp, body) for s in secrets),
    }


def body_of(payload: object) -> bytes:
    """The request body. A ValueError (or UnicodeError) for a payload that is not a JSON object or does
    not encode as UTF-8 (a lone surrogate)."""
    if not isinstance(payload, dict):
        raise ValueError("the payload is not a JSON object")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def check_target(url: str) -> str:
    """The endpoint URL as it will be requested: a ValueError when it cannot be (a row written before the
    checks at save, or by other means)."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("the URL has spaces or control characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"the URL cannot be requested: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("the URL is not an absolute http:// or https:// URL")
    return url


def check_secrets(secrets: Sequence[str]) -> list[str]:
    for secret in secrets:
        try:
            base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except ValueError:  # binascii.Error
            raise ValueError("a signing secret is not valid base64") from None
    return list(secrets)
