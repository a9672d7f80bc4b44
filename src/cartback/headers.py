"""Values that become mail headers (subjects, sender and reply-to names and addresses, custom headers):
one line of text that the message builder can encode, checked where the value comes in, so that no
stored message carries a header it cannot build or one that smuggles in another header.

A CR or LF would end the header and start one of the caller's choosing (`X-Injected: 1`, a `Bcc:`); other
control characters are refused with them. A lone surrogate (JSON `"\\ud800"`) cannot be encoded at all.
Non-ASCII text is fine: the builder writes it as RFC 2047 encoded words.
"""

from __future__ import annotations

import re
from email.headerregistry import Address

from cartback import addresses

# C0 controls but TAB, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# `Name <address>`, the name optionally quoted.
_NAMED = re.compile(r"(?s)(.*?)\s*<([^<>]*)>")


class InvalidHeader(ValueError):
    """Not a value a mail header can carry."""


def check_text(value: str) -> str:
    """`value` if it is one line the builder can encode, else InvalidHeader saying why."""
    found = _CONTROL.search(value)
    if found:
        raise InvalidHeader(f"must be one line of text without control characters (found {found.group()!r})")
    if _SURROGATE.search(value):
        raise InvalidHeader("contains a lone surrogate, which cannot be encoded")
    return value


def check_name(value: str) -> str:
    """A display name (`fromName`, `replyToName`): one line of text, without the angle brackets that
    would start an address inside it."""
    check_text(value)
    if "<" in value or ">" in value:
        raise InvalidHeader("cannot contain < or >")
    return value


def mailbox(value: str) -> str:
    """A From or Reply-To value, `Name <address>` or a bare address, in the form the message is built
    with: the address in its normal form (`cartback.addresses`), the name quoted when it needs to be. Anything
    else (a second address, text after the address, a line break) is InvalidHeader."""
    text = check_text(value).strip()
    named = _NAMED.fullmatch(text)
    if named is None:
        return addresses.normalise(text)
    name, address = named.group(1).strip(), addresses.normalise(named.group(2))
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    if not name:
        return address
    check_name(name)
    return str(Address(display_name=name, addr_spec=address))


def named(name: str | None, address: str) -> str:
    """`Name <address>` from separate fields (`fromName` + `fromEmail`), checked as `mailbox` is."""
    normal = addresses.normalise(address)
    if not name:
        return normal
    return str(Address(display_name=check_name(name), addr_spec=normal))
