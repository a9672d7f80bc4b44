"""The RFC 5322 message for a stored `messages` row: headers, multipart/alternative text + HTML, and the
List-Unsubscribe headers (RFC 2369, one-click per RFC 8058) on marketing mail.

The Message-ID is the one fixed at enqueue time (`delivery/queue.py`), so every attempt of a message, and
the copy kept in `message_delivery.mime`, carry the same id. The output is 7-bit clean (quoted-printable
bodies, RFC 2047 headers): any SMTP server takes it, with or without 8BITMIME/SMTPUTF8.
"""

from __future__ import annotations

import email.policy
import email.utils
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from cartback.delivery import render

# SMTP line endings, and quoted-printable/base64 instead of raw 8-bit bodies.
POLICY = email.policy.SMTP.clone(cte_type="7bit", max_line_length=78)


@dataclass(frozen=True)
class Envelope:
    """What the transport needs beside the bytes."""

    sender: str
    recipients: list[str]


def address_of(value: str) -> str:
    """The bare address of `Name <addr>` (or of a bare address)."""
    return email.utils.parseaddr(value)[1] or value.strip()


def domain_of(value: str) -> str:
    return address_of(value).rpartition("@")[2] or "cartback.invalid"


def unsubscribe_headers(unsubscribe_url: str, from_email: str) -> dict[str, str]:
    """List-Unsubscribe with the one-click HTTPS URL and a mailto, and List-Unsubscribe-Post (RFC 8058).
    The mailto carries the same signed token in its subject: a token is longer than the 64 characters a
    mailbox local part may have (RFC 5321 §4.5.3.1.1)."""
    token = unsubscribe_url.rstrip("/").rpartition("/")[2]
    mailto = f"mailto:unsubscribe@{domain_of(from_email)}?subject={quote('unsubscribe ' + token)}"
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def build(
    *,
    message_id: str,
    rfc_message_id: str,
    from_email: str,
    to_email: str,
    subject: str,
    html: str | None,
    text: str | None,
    kind: str,
    date: datetime,
    unsubscribe_url: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """The message as bytes with CRLF line endings, ready for SMTP DATA."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = from_email
    msg["To"] = to_email
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date)
    msg["Message-ID"] = rfc_message_id
    msg["MIME-Version"] = "1.0"
    msg["X-Cartback-Message-Id"] = message_id
    if kind == "marketing" and unsubscribe_url:
        for name, value in unsubscribe_headers(unsubscribe_url, from_email).items():
            msg[name] = value
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    # The render layer normally supplies the text part; a message stored without one gets it here.
    plain = text if text else (render.html_to_text(html) + "\n" if html else "")
    msg.set_content(plain, subtype="plain", charset="utf-8", cte="quoted-printable")
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes()


def summary(raw: bytes) -> dict[str, Any]:
    """Headers of a built message (for logs and tests)."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return {k: str(v) for k, v in parsed.items()}
