"""URLs that end up in email: the checkout link, product links and product images a store sends with its
events, and the links of a template.

A link in an email is something the shopper is invited to click, shown by the store's name: it must
open a web page. `javascript:`, `data:`, `vbscript:`, `file:` and relative URLs are refused where they
come in (a 400 naming the field); a template's links other than http(s), `mailto:`, `tel:` and in-page
or relative ones are not emitted as links when the message is built (`delivery/render.py`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_LENGTH = 4000
# Browsers drop ASCII tab and newlines inside a URL and trim controls and spaces around it, so
# `java\tscript:` is `javascript:`; the scheme is read as they would read it.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Any whitespace (str.isspace: `\s` of a str pattern is the same set), a C0 control or DEL. One regex
# search instead of a Python test per character: a checkout body carries several URLs, and the
# character loop cost about 25 µs for each.
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# What almost every URL a store sends looks like: http(s), a plain ASCII host, perhaps a port, then
# printable ASCII. Such a URL is what the checks below accept (urlsplit's netloc is the host and port,
# its hostname the host), known in one match instead of a split: a checkout carries several.
_PLAIN_WEB_URL = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9.-]+(?::[0-9]*)?(?:[/?#][!-~]*)?")


class InvalidUrl(ValueError):
    """Not an absolute http(s) URL."""


def check_web_url(value: str) -> str:
    """`value` (trimmed) if it is an absolute http or https URL with a host, else InvalidUrl."""
    text = value.strip()
    if len(text) > MAX_LENGTH:
        raise InvalidUrl(f"must be a URL of at most {MAX_LENGTH} characters")
    if _PLAIN_WEB_URL.fullmatch(text):
        return text
    return _checked_by_parts(text)


def _checked_by_parts(text: str) -> str:
    if _SPACE_OR_CONTROL.search(text):
        raise InvalidUrl("must be an absolute http(s) URL, without spaces or control characters")
    try:
        parts = urlsplit(text)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:  # a host it cannot read, as an IPv6 bracket left open
        scheme, host = "", None
    if scheme.lower() not in ("http", "https") or not host:
        raise InvalidUrl(f"must be an absolute http(s) URL, not {text[:60]!r}")
    return text


def link_scheme(href: str) -> str | None:
    """The scheme a browser would see in an href, lowercased; None for a relative or in-page link."""
    # Dropping every control and space is stricter than a browser, never looser.
    cleaned = "".join(c for c in href if ord(c) > 0x20)
    found = _SCHEME.match(cleaned)
    return found.group(1).lower() if found else None


def is_safe_link(href: str) -> bool:
    """Whether a template's href may stay a link: http(s), mailto, tel, or relative/in-page."""
    scheme = link_scheme(href)
    return scheme is None or scheme in _LINK_SCHEMES
