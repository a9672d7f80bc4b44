"""Email addresses: one RFC 5321 mailbox, parsed by email-validator rather than pattern-matched, in one
normal form that every surface stores, every suppression is keyed by and the SMTP envelope carries.

The normal form is the local part as written, "@", and the domain lowercased in its ASCII (IDNA A-label)
form: `Jane@Shop.Example` -> `Jane@shop.example`, `jane@bücher.example` -> `jane@xn--bcher-kva.example`.
A string that is not exactly one bare mailbox (`a@x.example;b@y.example`, `a@x.example,b@y.example`,
`a@x.example<b@y.example>`, a display name, a quoted or bracketed part, whitespace inside, a domain
without a dot or a special-use one such as `.local`) is refused: an SMTP library that takes the first
address it can find in such a string would otherwise mail someone the checks never saw.

Local parts must be ASCII. A non-ASCII one needs SMTPUTF8 from every relay on the way and an
internationalised To header, which cartback does not write; such an address is refused at the edge, and one
stored before this check fails at send time with that reason.

The lookup key (`key`) is the normal form lowercased. RFC 5321 lets a server treat local parts as
case-sensitive, but no mailbox provider does, and subscribers have always been unique by their lowercased
address; so `Jane@x.example` and `jane@X.example` are one person and one suppression.
"""

from __future__ import annotations

import re

import email_validator

# RFC 5321 §4.5.3.1.3 allows 256 characters in a path, 254 in the address; email-validator checks that.
# §4.5.3.1.1 allows 64 octets before the "@": email-validator checks that only when `strict`, which
# checks nothing else.
MAX_LENGTH = 254


class InvalidAddress(ValueError):
    """Not one email address."""


# The addresses nearly every request carries, which email-validator accepts as they are but for the
# domain's case: a dot-atom local part of letters, digits and `_+-`, a domain of letters, digits and
# single hyphens in labels of at most 63 characters ending in a letters-only top-level label. No label
# holds `--` (Punycode and its look-alikes stay with email-validator). Parsing one with email-validator
# cost about a tenth of a checkout's CPU; anything else still goes through it.
_PLAIN = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?P<tld>[A-Za-z]{2,63}))"
)
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain(text: str) -> str | None:
    """`text`'s normal form when it is a plain address (see `_PLAIN`), without email-validator; None to
    leave it to email-validator."""
    found = _PLAIN.fullmatch(text)
    if (
        found is None
        or len(text) > MAX_LENGTH
        or len(found["local"]) > 64
        or len(found["domain"]) > 253
        or "--" in found["domain"]
        or found["tld"].lower() in _SPECIAL_USE
    ):
        return None
    return f"{found['local']}@{found['domain'].lower()}"


def normalise(value: str) -> str:
    """The normal form of one mailbox, or InvalidAddress saying what is wrong with it. Surrounding
    whitespace is dropped (as clients paste it); anything else outside a bare mailbox is refused."""
    text = value.strip()
    if (plain := _plain(text)) is not None:
        return plain
    try:
        parsed = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=False, allow_display_name=False, strict=True
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidAddress(f"{text[:100]!r} is not an email address: {exc}") from None
    if parsed.ascii_email is None:  # pragma: no cover - allow_smtputf8=False guarantees it
        raise InvalidAddress(f"{text[:100]!r} is not an ASCII email address")
    return parsed.ascii_email


def key(value: str) -> str:
    """The lookup key of an address (subscribers and suppressions are unique by it): the normal form
    lowercased. An ASCII string's key is computed without parsing (the same result for every valid
    address, and what rows stored before the normal form were keyed by); a non-ASCII domain is keyed by
    its A-label form, so `bücher.example` and `xn--bcher-kva.example` find the same rows."""
    text = value.strip()
    if text.isascii():
        return text.lower()
    local, at, domain = text.rpartition("@")
    if not at:
        return text.lower()
    try:
        parsed = email_validator.validate_email(
            f"x@{domain}", check_deliverability=False, allow_smtputf8=False
        )
    except email_validator.EmailNotValidError:
        return text.lower()
    return f"{local}@{parsed.ascii_domain}".lower()
