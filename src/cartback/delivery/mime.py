"""The RFC 5322 message for a stored `messages` row: headers, multipart/alternative text + HTML, and the
List-Unsubscribe headers (RFC 2369, one-click per RFC 8058) on marketing mail.

The Message-ID is the one fixed at enqueue time (`store/deliveries.py`), so every attempt of a message, and
the copy kept in `message_mime`, carry the same id. The output is 7-bit clean (7bit or
quoted-printable bodies, RFC 2047 headers): any SMTP server takes it, with or without 8BITMIME/SMTPUTF8.
"""

from __future__ import annotations

import binascii
import email.policy
import email.utils
import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from cartback.delivery import render

# SMTP line endings, and quoted-printable/base64 instead of raw 8-bit bodies; headers folded at 78.
_MAX_HEADER_LINE = 78
POLICY = email.policy.SMTP.clone(cte_type="7bit", max_line_length=_MAX_HEADER_LINE)


@dataclass(frozen=True)
class Envelope:
    """What the transport needs beside the bytes."""

    sender: str
    recipients: list[str]


def address_of(value: str) -> str:
    """The bare address of `Name <addr>` (or of a bare address)."""
    return email.utils.parseaddr(value)[1] or value.strip()


def envelope_of(from_email: str, to_email: str) -> Envelope:
    """The SMTP envelope of a message: the bare sender address and the recipient. A ValueError when either
    cannot go into MAIL FROM / RCPT TO: the sender does not use SMTPUTF8 (the message is 7-bit), so an
    address must be printable ASCII; a row stored before the edge checked addresses may hold anything."""
    envelope = Envelope(address_of(from_email), [to_email])
    for role, address in (("sender", envelope.sender), ("recipient", to_email)):
        if not address or not address.isascii() or not address.isprintable():
            raise ValueError(
                f"the {role} address {address!r} cannot be sent over SMTP: it must be printable ASCII "
                "(non-ASCII mailboxes need SMTPUTF8, which is not used)"
            )
    return envelope


def domain_of(value: str) -> str:
    return address_of(value).rpartition("@")[2] or "cartback.invalid"


def unsubscribe_headers(unsubscribe_url: str, from_email: str) -> dict[str, str]:
    """List-Unsubscribe with the one-click HTTPS URL and a mailto, and List-Unsubscribe-Post (RFC 8058).
    The mailto carries the same signed token in its subject: a token is longer than the 64 characters a
    mailbox local part may have (RFC 5321 §4.5.3.1.1)."""
    token = unsubscribe_url.rstrip("/").rpartition("/")[2]
    mailto = f"mailto:unsubscribe@{domain_of(from_email)}?subject={quote('unsubscribe ' + token)}"
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>,\r\n <{mailto}>",
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
    reply_to: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """The message as bytes with CRLF line endings, ready for SMTP DATA.

    Headers that need it go through the email package (RFC 2047 encoding, folding); the bodies are
    encoded by binascii and joined by hand, which is several times faster than the email generator on a
    20-30 KB HTML part, and the sender builds one message per send."""
    named = [("From", from_email), ("To", to_email), ("Subject", subject)]
    if reply_to:
        named.append(("Reply-To", reply_to))
    named += (extra_headers or {}).items()
    # ASCII-only headers are written directly: folding a 200-character token through the email package
    # costs milliseconds per message.
    fixed = [
        f"Date: {email.utils.format_datetime(date)}",
        f"Message-ID: {_ascii(rfc_message_id)}",
        "MIME-Version: 1.0",
        f"X-Cartback-Message-Id: {_ascii(message_id)}",
    ]
    if kind == "marketing" and unsubscribe_url:
        fixed += [
            f"{name}: {_ascii(value)}"
            for name, value in unsubscribe_headers(unsubscribe_url, from_email).items()
        ]
    # The render layer normally supplies the text part; a message stored without one gets it here.
    plain = text if text else (render.html_to_text(html) if html else "")
    # A body-less message generates as its header block and the blank line; the MIME headers follow it.
    headers = b"".join(header(name, value) for name, value in named) + "".join(
        f"{h}\r\n" for h in fixed
    ).encode("ascii")
    if not html:
        return headers + _part("plain", plain)
    boundary = f"=_cartback_{secrets.token_hex(12)}"
    sep = f"--{boundary}\r\n".encode()
    return b"".join(
        [
            headers,
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode(),
            sep,
            _part("plain", plain),
            b"\r\n",
            sep,
            _part("html", html),
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )


def _ascii(value: str) -> str:
    """A header value that must be plain ASCII on one line (ids, URLs): anything else is refused."""
    if not value.isascii() or "\n" in value.replace("\r\n ", "") or "\r" in value.replace("\r\n ", ""):
        raise ValueError(f"header value must be ASCII on one line: {value!r}")
    return value


# Printable ASCII words with single spaces, and no encoded-word look-alike (which the email package would
# decode on the way in): such a value comes out of the email package unchanged when it fits on one line.
_PLAIN_TEXT = re.compile(r"(?!.*=\?)[!-~]+( [!-~]+)*")
# A bare dot-atom address, the usual To: likewise unchanged.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*"
)
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})


def header(name: str, value: str) -> bytes:
    """`Name: value` with CRLF, RFC 2047 encoded and folded by the email package when it needs to be.

    The email package takes about 0.2 ms a header, the largest part of building a message; so a value it
    would leave as it is is written directly, and the rest (the same From for a whole workspace, the same
    Subject for a whole step) is remembered."""
    plain = _PLAIN_ADDRESS if name.lower() in _ADDRESS_HEADERS else _PLAIN_TEXT
    if len(name) + 2 + len(value) <= _MAX_HEADER_LINE and plain.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    return _folded(name, value)


@functools.lru_cache(maxsize=4096)
def _folded(name: str, value: str) -> bytes:
    head = EmailMessage(policy=POLICY)
    head[name] = value
    return head.as_bytes().removesuffix(b"\r\n")


_PART = 'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
# RFC 5322 §2.1.1: a line is at most 998 characters; shorter ones, like the email package, for 7bit.
_MAX_7BIT_LINE = 998


def _part(subtype: str, body: str) -> bytes:
    """A text part's headers and body, UTF-8 with CRLF line ends: 7bit when the body is ASCII with lines
    short enough (most rendered HTML: nothing to encode, and the cheapest to build and to send), else
    quoted-printable (lines of at most 76 characters, RFC 2045 §6.7). Either way the message stays 7-bit
    clean."""
    normal = body.replace("\r\n", "\n").replace("\r", "\n")
    if not normal.endswith("\n"):
        normal += "\n"
    if normal.isascii() and _longest_line(normal) <= _MAX_7BIT_LINE and "\0" not in normal:
        return (_PART.format(subtype=subtype, cte="7bit") + normal.replace("\n", "\r\n")).encode("ascii")
    encoded = binascii.b2a_qp(normal.encode("utf-8")).replace(b"\n", b"\r\n")
    return _PART.format(subtype=subtype, cte="quoted-printable").encode() + encoded


def _longest_line(text: str) -> int:
    return max(map(len, text.split("\n")))


def summary(raw: bytes) -> dict[str, Any]:
    """Headers of a built message (for logs and tests)."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return {k: str(v) for k, v in parsed.items()}
