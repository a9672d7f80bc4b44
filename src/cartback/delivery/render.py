"""Liquid templates for subject, preheader, HTML and text. HTML output is auto-escaped; a variable that is
missing renders empty; a template that does not parse is refused when it is saved, with its position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from liquid import Environment
from liquid.exceptions import LiquidError

from cartback.core import money
from cartback.delivery.links import LinkSigner


class TemplateError(ValueError):
    """A template that does not parse; the message names the field, line and column."""


def _money(cents: Any, currency: Any = "USD") -> str:
    try:
        amount = money.to_major(int(cents), str(currency or "USD"))
    except (TypeError, ValueError):
        return ""
    digits = money.exponent(str(currency or "USD"))
    return f"{amount:,.{digits}f} {str(currency or 'USD').upper()}"


def _environment(autoescape: bool) -> Environment:
    env = Environment(autoescape=autoescape)
    env.filters["money"] = _money
    return env


_HTML = _environment(autoescape=True)
_PLAIN = _environment(autoescape=False)


@dataclass(frozen=True)
class Rendered:
    subject: str
    preheader: str | None
    html: str | None
    text: str | None


def _position(exc: LiquidError) -> str:
    token = getattr(exc, "token", None)
    source = getattr(token, "source", None)
    index = getattr(token, "start_index", None)
    if not isinstance(source, str) or not isinstance(index, int):
        return ""
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return f" at line {line}, column {column}"


def check(field: str, source: str | None, *, html: bool = False) -> None:
    """Raise TemplateError if `source` does not parse."""
    if not source:
        return
    try:
        (_HTML if html else _PLAIN).from_string(source)
    except LiquidError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TemplateError(f"{field}: template error{_position(exc)}: {message}") from exc


def render_message(
    content: dict[str, Any], context: dict[str, Any], signer: LinkSigner | None = None
) -> Rendered:
    """The message as it will be sent. `signer` builds the message's own tracking links."""
    return render_email(content, context)


def render_email(content: dict[str, Any], context: dict[str, Any]) -> Rendered:
    """Render an email step's content (`subject`, `previewText`, `html`, `text`) against `context`."""

    def plain(source: str | None) -> str | None:
        return _PLAIN.from_string(source).render(**context) if source else None

    html = content.get("html")
    return Rendered(
        subject=(plain(content.get("subject")) or "").strip(),
        preheader=plain(content.get("previewText")),
        html=_HTML.from_string(html).render(**context) if html else None,
        text=plain(content.get("text")),
    )
