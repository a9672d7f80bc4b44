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

import email_validator

# RFC 5321 §4.5.3.1.3 allows 256 characters in a path, 254 in the address; email-validator checks that.
# §4.5.3.1.1 allows 64 octets before the "@": email-validator checks that only when `strict`, which
# checks nothing else.
MAX_LENGTH = 254


class InvalidAddress(ValueError):
    """Not one email address."""


def normalise(value: str) -> str:
    """The normal form of one mailbox, or InvalidAddress saying what is wrong with it. Surrounding
    whitespace is dropped (as clients paste it); anything else outside a bare mailbox is refused."""
    text = value.strip()
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
