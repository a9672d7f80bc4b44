"""Liquid templates for subject, preheader, HTML and text, and what turns rendered HTML into the message
that is sent: CSS inlined, a hidden preheader, a text part when the step has none, click-tracked links and
an open pixel.

HTML output is auto-escaped; a variable that is missing renders empty; a template that does not parse, or
that exceeds the resource limits on a sample context, is refused when it is saved, with its position.
docs/templates.md describes what templates see and the limits.
"""

from __future__ import annotations

import functools
import html as htmllib
import pickle
import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import css_inline
from babel import Locale, UnknownLocaleError, numbers
from liquid import BoundTemplate, Environment, Token, Undefined
from liquid.context import RenderContext
from liquid.exceptions import (
    LiquidError,
    LocalNamespaceLimitError,
    LoopIterationLimitError,
    OutputStreamLimitError,
    ResourceLimitError,
)

from cartback import money, processes, urls
from cartback.delivery import render_budget
from cartback.delivery.links import LinkSigner


class TemplateError(ValueError):
    """A template that does not parse; the message names the field, line and column."""


class RenderError(TemplateError):
    """A template that parses but fails when rendered (a filter given an impossible argument, a resource
    limit); the message names the field and, where Liquid knows it, the line and column."""


# -- filters -----------------------------------------------------------------------------------------

DEFAULT_LOCALE = "en_US"


@functools.lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LOCALE)


@functools.lru_cache(maxsize=4096)
def _format_money(minor: int, currency: str, locale: str) -> str:
    # Babel's CLDR pattern gives the symbol, its side and the separators of the locale; the number of
    # decimals comes from cartback/money.py (the unit amounts are stored in), not from CLDR, so 1234 IQD
    # minor units show as 1.234 and never round away. Cached: babel takes ~35 µs per call.
    digits = money.exponent(currency)
    loc = _locale(locale)
    pattern = numbers.parse_pattern(loc.currency_formats["standard"].pattern)
    pattern.frac_prec = (digits, digits)
    text: str = pattern.apply(Decimal(minor).scaleb(-digits), loc, currency=currency, currency_digits=False)
    symbol = numbers.get_currency_symbol(currency, loc)
    # An alphabetic symbol (CHF, IQD) right against the digits reads badly: CLDR's currency spacing.
    if (
        symbol.isalpha()
        and text.startswith(symbol)
        and text[len(symbol) : len(symbol) + 1] not in (" ", "\xa0")
    ):
        text = f"{symbol}\xa0{text[len(symbol) :]}"
    return text


def _money(cents: Any, currency: Any = None, locale: Any = None) -> str:
    """`{{ 8850 | money: "USD" }}` -> "$88.50"; `{{ 8850 | money: "JPY" }}` -> "¥8,850";
    `{{ 8850 | money: "EUR", "de_DE" }}` -> "88,50 €". Amounts are minor units; a missing or non-numeric
    amount renders empty."""
    if isinstance(cents, Undefined) or cents is None or isinstance(cents, bool):
        return ""
    try:
        minor = int(Decimal(str(cents)).to_integral_value())
    except (InvalidOperation, ValueError, TypeError):
        return ""
    code = currency.strip().upper() if isinstance(currency, str) and currency.strip() else "USD"
    if not code.isascii() or not code.isalpha() or len(code) != 3:
        return ""
    where = locale if isinstance(locale, str) and locale else DEFAULT_LOCALE
    return _format_money(minor, code, where)


# -- resource limits -----------------------------------------------------------------------------------
#
# Templates are written by tenants and rendered on a shared server, so one render must not be able to
# take seconds of CPU or hundreds of MB: python-liquid's own limits, plus three it lacks. Each applies to
# one render of one field (subject, preview text, HTML or text). docs/templates.md ("Limits") lists them
# for template authors.

# Loop iterations: python-liquid counts nested loops as the product of their lengths; _LimitedContext
# also counts all the loops of a render together (fifty loops of 9,999 one after the other are 500,000
# iterations) and refuses a range longer than this before a loop or a filter walks it.
LOOP_ITERATION_LIMIT = 10_000
# Bytes written by a render (the output, and every `capture`): an email over ~100 KB is clipped by Gmail.
OUTPUT_LIMIT = 500_000
# Bytes (sys.getsizeof) of the variables a template assigns or captures.
LOCAL_NAMESPACE_LIMIT = 500_000
# Nested render contexts (python-liquid's default; no `include`/`render` loader is configured anyway).
CONTEXT_DEPTH_LIMIT = 30
# Characters (of strings) and items (of arrays, hashes and ranges) handed to filters, summed over a
# render: a filter costs about as much as what it is given, and a loop of filters over the largest
# string the other limits allow would otherwise still take minutes.
FILTER_WORK_LIMIT = 2_000_000
# CPU time of one render, for what the counts above do not weigh: a loop body of a hundred small filters
# or assignments stays under every count and still takes seconds. Measured as the rendering thread's own
# CPU time, so a busy machine does not make a template fail; a real email takes about a millisecond.
RENDER_CPU_SECONDS = 0.25


class FilterWorkLimitError(ResourceLimitError):
    """Filters were handed more than FILTER_WORK_LIMIT characters and items in one render."""


class RenderTimeLimitError(ResourceLimitError):
    """A render used more than RENDER_CPU_SECONDS of CPU time."""


_SIZED = (str, list, tuple, dict, range)


def _size(value: object) -> int:
    return len(value) if isinstance(value, _SIZED) else 1


class _LimitedContext(RenderContext):
    """python-liquid's render context with the two limits it lacks (see LOOP_ITERATION_LIMIT and
    FILTER_WORK_LIMIT), through the hooks it offers for them."""

    __slots__ = ("cpu_deadline", "filter_work", "iterations", "ticks")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iterations = 0
        self.filter_work = 0
        self.ticks = 0
        self.cpu_deadline = time.thread_time() + RENDER_CPU_SECONDS

    def _check_time(self) -> None:
        # Called at every loop, filter and assignment: whatever a template repeats goes through one. The
        # clock (a system call) is read every 16th time; between two reads the other limits bound the work.
        self.ticks += 1
        if not self.ticks & 15 and time.thread_time() > self.cpu_deadline:
            raise RenderTimeLimitError("render time limit reached", token=None)

    def raise_for_loop_limit(self, length: int = 1) -> None:
        super().raise_for_loop_limit(length)
        self._check_time()
        self.iterations += length
        if self.iterations > LOOP_ITERATION_LIMIT:
            raise LoopIterationLimitError("loop iteration limit reached", token=None)

    def assign(self, key: str, val: Any) -> None:
        self._check_time()
        super().assign(key, val)

    def stopindex(self, key: str, index: int | None = None) -> int:
        # Called with the end of a loop's slice before the loop reverses or skips into it: a range of a
        # hundred million would be walked (or listed) before the loop limit is checked.
        if index is not None and index > LOOP_ITERATION_LIMIT:
            raise LoopIterationLimitError("loop iteration limit reached", token=None)
        return super().stopindex(key, index)

    def filter(self, name: str, token: Token | None) -> Any:
        func = super().filter(name, token)

        def limited(left: object, *args: object, **kwargs: object) -> object:
            self._check_time()
            self.filter_work += _size(left) + sum(map(_size, args)) + sum(map(_size, kwargs.values()))
            if self.filter_work > FILTER_WORK_LIMIT:
                raise FilterWorkLimitError("filter work limit reached", token=None)
            return func(left, *args, **kwargs)

        return limited


class _LimitedTemplate(BoundTemplate):
    context_class = _LimitedContext


class LimitedEnvironment(Environment):
    """The Liquid environment of every template cartback parses or renders."""

    loop_iteration_limit = LOOP_ITERATION_LIMIT
    output_stream_limit = OUTPUT_LIMIT
    local_namespace_limit = LOCAL_NAMESPACE_LIMIT
    context_depth_limit = CONTEXT_DEPTH_LIMIT
    template_class = _LimitedTemplate


def _environment(autoescape: bool) -> Environment:
    env = LimitedEnvironment(autoescape=autoescape)
    env.filters["money"] = _money
    return env


_HTML = _environment(autoescape=True)
_PLAIN = _environment(autoescape=False)


@functools.lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> BoundTemplate:
    # Parsing costs more than rendering (~2 ms for a full email); a step's template is the same string
    # for every message it sends.
    return (_HTML if html else _PLAIN).from_string(source)


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
    # Some expression errors carry a token with no place in the template (index -1, empty source).
    if not isinstance(source, str) or not source or not isinstance(index, int) or index < 0:
        return ""
    return _line_and_column(source, index)


def _line_and_column(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return f" at line {line}, column {column}"


_MARKUP = re.compile(r"\{\{.*?\}\}|\{%-?\s*(\w+).*?%\}", re.DOTALL)
_BLOCK_TAGS = frozenset({"for", "if", "unless", "case", "capture", "tablerow", "comment", "raw", "ifchanged"})
_INNER_TAGS = frozenset({"else", "elsif", "when", "break", "continue"})


def _failing_markup(source: str, html: bool) -> str:
    """The position of the first tag or output that fails on its own, for errors the parser reports
    without one (a block tag is tried closed at once, so only its own expression is judged); else of the
    block left open or closed by the wrong end tag."""
    opened: list[tuple[str, int]] = []
    for found in _MARKUP.finditer(source):
        name = found.group(1)
        if name is not None and name.startswith("end"):
            if opened and opened[-1][0] == name[3:]:
                opened.pop()
            elif name[3:] in _BLOCK_TAGS:
                return _line_and_column(source, found.start())
            continue
        if name in _BLOCK_TAGS:
            opened.append((name, found.start()))
        if name in _INNER_TAGS:
            continue
        snippet = found.group(0) + (f"{{% end{name} %}}" if name in _BLOCK_TAGS else "")
        try:
            (_HTML if html else _PLAIN).from_string(snippet)
        except LiquidError:
            return _line_and_column(source, found.start())
    return _line_and_column(source, opened[-1][1]) if opened else ""


def _parsed(field: str, source: str, html: bool) -> BoundTemplate:
    """The compiled template; TemplateError naming the field, line and column if it does not parse."""
    try:
        return _compiled(source, html)
    except LiquidError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = _position(exc) or _failing_markup(source, html)
        raise TemplateError(f"{field}: template error{where}: {message}") from exc


def check(field: str, source: str | None, *, html: bool = False) -> None:
    """Raise TemplateError if `source` does not parse, or RenderError if rendering it against a sample
    context (SAMPLE_CONTEXT) exceeds the resource limits: refused at save, so that such a template is
    not found out one message at a time. Other errors on the sample data are not refusals: a template
    may well expect data the sample does not have."""
    if not source:
        return
    _parsed(field, source, html)
    limit = _checked(source, html)
    if limit is not None:
        raise RenderError(f"{field}: {limit}")


@functools.lru_cache(maxsize=512)
def _checked(source: str, html: bool) -> str | None:
    return _elsewhere(_trial, source, html)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=512)
def _trial(source: str, html: bool) -> str | None:
    """The resource limit rendering `source` against SAMPLE_CONTEXT exceeds, described, or None."""
    try:
        _compiled(source, html).render(**SAMPLE_CONTEXT)
    except ResourceLimitError as exc:
        return _limit_message(exc)
    except LiquidError:
        return None
    return None


def _limit_message(exc: LiquidError) -> str:
    """Which limit, in the words of docs/templates.md, and where the template was when it hit it."""
    if isinstance(exc, LoopIterationLimitError):
        what = f"more than {LOOP_ITERATION_LIMIT:,} loop iterations"
    elif isinstance(exc, OutputStreamLimitError):
        what = f"more than {OUTPUT_LIMIT:,} bytes of output"
    elif isinstance(exc, LocalNamespaceLimitError):
        what = f"more than {LOCAL_NAMESPACE_LIMIT:,} bytes of assigned variables"
    elif isinstance(exc, FilterWorkLimitError):
        what = f"more than {FILTER_WORK_LIMIT:,} characters and items handed to filters"
    elif isinstance(exc, RenderTimeLimitError):
        what = f"more than {RENDER_CPU_SECONDS:g} s of CPU time"
    else:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"template exceeds the resource limits: {what}{_position(exc)}"


# -- the sample context ----------------------------------------------------------------------------

# A checkout as the preview shows it when a workspace has none yet, and what save-time checks render
# against: every variable of docs/templates.md, with a two-item cart.
SAMPLE_EVENT: dict[str, Any] = {
    "name": "ecommerce.checkout_started",
    "checkoutId": "sample-checkout",
    "checkoutUrl": "https://shop.example.com/checkout/sample",
    "totalCents": 8850,
    "currency": "USD",
    "value": 88.5,
    "items": [
        {"title": "Protein Powder", "quantity": 1, "priceCents": 5900, "imageUrl": None},
        {"title": "Shaker Bottle", "quantity": 2, "priceCents": 1475, "imageUrl": None},
    ],
    "properties": {},
    "occurredAt": "2026-11-23T10:00:00Z",
}
SAMPLE_SUBSCRIBER: dict[str, Any] = {
    "email": "jane@example.com",
    "firstName": "Jane",
    "lastName": "Doe",
    "status": "active",
    "tags": [],
    "attributes": {},
}
SAMPLE_CONTEXT: dict[str, Any] = {
    "subscriber": SAMPLE_SUBSCRIBER,
    "event": SAMPLE_EVENT,
    "checkout": {k: v for k, v in SAMPLE_EVENT.items() if k not in ("name", "value", "occurredAt")},
    "workspace": {"id": "ws_sample", "name": "Sample shop"},
    "shop": {"name": "Sample shop", "address": "1 Sample Street, Springfield"},
    "sequence": {"id": "seq_sample", "name": "Sample sequence"},
    "unsubscribe_url": "https://shop.example.com/u/sample",
    "unsubscribeUrl": "https://shop.example.com/u/sample",
    "email": "jane@example.com",
    "firstName": "Jane",
    "lastName": "Doe",
}


# -- shipped templates -------------------------------------------------------------------------------

_SHIPPED: dict[str, dict[str, str]] = {
    "abandoned_cart": {
        "subject": "{{ subscriber.firstName | default: 'Hi' }}, you left something in your cart",
        "previewText": "Your cart is saved. Pick up where you left off in one click.",
        "file": "abandoned_cart.html.liquid",
    },
}
TEMPLATES = tuple(_SHIPPED)


@functools.cache
def _template_file(name: str) -> str:
    return resources.files("cartback.delivery").joinpath("templates", name).read_text(encoding="utf-8")


def default_template(name: str) -> dict[str, str]:
    """The content of a shipped template (`subject`, `previewText`, `html`), to use as an email step's
    defaults. KeyError for an unknown name (TEMPLATES lists them)."""
    spec = _SHIPPED[name]
    return {
        "subject": spec["subject"],
        "previewText": spec["previewText"],
        "html": _template_file(spec["file"]),
    }


# -- one pass over the HTML: its text, and where links, preheader and pixel go ----------------------

_SKIP = frozenset({"head", "style", "script", "title", "template"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "ul", "ol", "pre"})
_BLOCK = _PARAGRAPH | {
    "address", "article", "aside", "center", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
    "form", "header", "li", "main", "nav", "section", "tbody", "tfoot", "thead", "tr",
}  # fmt: skip

# Filler after the preheader so that mail clients do not pull body text into the inbox preview.
_PREHEADER_FILLER = "&#847;&zwnj;&nbsp;" * 60
_PREHEADER_STYLE = (
    "display:none !important;visibility:hidden;mso-hide:all;font-size:1px;line-height:1px;"
    "max-height:0;max-width:0;opacity:0;overflow:hidden;color:transparent"
)
_PIXEL_STYLE = "display:block;border:0;width:1px;height:1px;overflow:hidden"


def _hidden(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "hidden":
            return True
        if name == "style" and value and "display:none" in value.replace(" ", "").lower():
            return True
    return False


def _attribute(name: str, value: str | None) -> str:
    return f" {name}" if value is None else f' {name}="{htmllib.escape(value, quote=True)}"'


class _Walker(HTMLParser):
    """Reads email HTML once (stdlib parser, positions kept) for two things:

    - its text: blocks on their own lines, table cells side by side, links as `text (url)`, images in
      links by their alt text, hidden things (head, style, `display:none`, the preheader) left out;
    - with a signer, the <a> start tags to send through the click tracker, by position, and where the
      body starts and ends, so that everything else is kept byte for byte (MSO conditionals included).
    """

    def __init__(self, signer: LinkSigner | None = None, unsubscribe_url: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[tuple[str, bool, str | None, int]] = []  # tag, hides, href, parts mark
        self._hidden = 0
        self._pre = 0
        self._links = 0
        self._newlines = 0
        self._sep = ""
        self._line = False  # the current output line has text
        self._lists: list[int] = []  # per open list: 0 for <ul>, else the next <ol> number
        self._signer = signer
        self._unsubscribe = unsubscribe_url
        base = signer.public_url.rstrip("/") if signer is not None else ""
        # Links already pointing at our own public pages (unsubscribe, tracking) are left alone.
        self._own = (f"{base}/u/", f"{base}/t/")
        self.edits: list[tuple[int, int, int, str]] = []  # line, column, length replaced, new text
        self.body_open: tuple[int, int] | None = None  # line, column just past <body ...>
        self.body_close: tuple[int, int] | None = None

    # -- text output

    def _emit(self, text: str) -> None:
        if self._newlines and self.parts:
            self.parts.append("\n" * self._newlines)
            self._line = False
        elif self._sep and self._line:
            self.parts.append(self._sep)
        self._newlines = 0
        self._sep = ""
        self.parts.append(text)
        self._line = True

    def _break(self, count: int) -> None:
        if self._line or self._newlines:
            self._newlines = max(self._newlines, count)
        self._sep = ""

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            for i, line in enumerate(data.split("\n")):
                if i:
                    self._newlines = max(self._newlines, 1)
                if line:
                    self._emit(line)
            return
        words = data.split()
        if not words:
            if data and self._line and not self._sep:
                self._sep = " "
            return
        if data[0].isspace() and not self._sep:
            self._sep = " "
        self._emit(" ".join(words))
        if data[-1].isspace():
            self._sep = " "

    # -- tags

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            self._rewrite(tag, attrs)
        elif tag == "body" and self.body_open is None:
            line, column = self.getpos()
            self.body_open = (line, column + len(self.get_starttag_text() or ""))
        hides = tag in _SKIP or _hidden(attrs)
        if tag not in _VOID:
            href = None
            if tag == "a":
                href = next((v for n, v in attrs if n == "href"), None)
                self._links += 1
            self._stack.append((tag, hides, href, len(self.parts)))
            if hides:
                self._hidden += 1
        if self._hidden or hides:
            return
        if tag == "br":
            self._newlines = min(self._newlines + 1, 2) if self._newlines else 1
            self._line = self._line or bool(self.parts)
        elif tag == "img":
            # Alt text stands for an image only where it is what a link says (a logo, an image button).
            alt = next((v for n, v in attrs if n == "alt"), None)
            if alt and alt.strip() and self._links:
                self._emit(alt.strip())
        elif tag in ("td", "th"):
            if self._line:
                self._sep = "  "
        elif tag == "hr":
            self._break(2)
            self._emit("-" * 20)
            self._break(2)
        elif tag in _BLOCK:
            self._break(2 if tag in _PARAGRAPH else 1)
            if tag == "pre":
                self._pre += 1
            elif tag in ("ul", "ol"):
                self._lists.append(0 if tag == "ul" else 1)
            elif tag == "li":
                if self._lists and self._lists[-1]:
                    self._emit(f"{self._lists[-1]}.")
                    self._lists[-1] += 1
                else:
                    self._emit("-")
                self._sep = " "

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_close = self.getpos()
        if not any(entry[0] == tag for entry in self._stack):
            return  # a stray end tag
        while self._stack:
            name, hides, href, mark = self._stack.pop()
            if name == "a":
                self._links -= 1
            if hides:
                self._hidden -= 1
            elif not self._hidden:
                self._close(name, href, mark)
            if name == tag:
                break

    def _close(self, tag: str, href: str | None, mark: int) -> None:
        if tag == "a":
            if href:
                self._link(href.strip(), "".join(self.parts[mark:]).strip())
        elif tag in _BLOCK:
            if tag == "pre":
                self._pre = max(self._pre - 1, 0)
            elif tag in ("ul", "ol") and self._lists:
                self._lists.pop()
            self._break(2 if tag in _PARAGRAPH else 1)

    def _link(self, href: str, label: str) -> None:
        lowered = href.lower()
        if lowered.startswith("mailto:"):
            shown = href[7:].split("?", 1)[0]
        elif lowered.startswith(("http://", "https://")):
            shown = href
        else:
            return
        if not label:
            self._emit(shown)
        elif shown not in label:
            self.parts.append(f" ({shown})")
            self._line = True

    # -- tracking

    def _tracked(self, url: str) -> bool:
        return (
            url.lower().startswith(("http://", "https://"))
            and url != self._unsubscribe
            and not url.startswith(self._own)
        )

    def _rewrite(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """A link's start tag as sent: an href that is not http(s), mailto, tel or relative (`javascript:`,
        `data:`, ...) is dropped, so its text stays but is no link; with a signer, the first http(s) href
        goes through the click tracker."""
        rewritten, changed, tracked = [], False, False
        for name, value in attrs:
            if name == "href" and value is not None:
                if not urls.is_safe_link(value):
                    changed = True
                    continue
                if self._signer is not None and not tracked and self._tracked(value.strip()):
                    value, changed, tracked = self._signer.click_url(value.strip()), True, True
            rewritten.append((name, value))
        if changed:
            raw = self.get_starttag_text() or ""
            closing = "/>" if raw.endswith("/>") else ">"
            new = f"<{tag}" + "".join(_attribute(n, v) for n, v in rewritten) + closing
            line, column = self.getpos()
            self.edits.append((line, column, len(raw), new))

    def text(self) -> str:
        lines = "".join(self.parts).split("\n")
        return "\n".join(line.rstrip() for line in lines).strip()


def html_to_text(html: str) -> str:
    """A plain-text alternative of an email's HTML: what a text-only client shows, and what spam filters
    expect beside the HTML part. Links keep their URLs, so the text part still works."""
    walker = _Walker()
    walker.feed(html)
    walker.close()
    return walker.text()


def preheader_html(preheader: str) -> str:
    """The usual hidden span: mail clients show it in the inbox preview, readers never see it."""
    text = htmllib.escape(preheader)
    return f'<span class="preheader" style="{_PREHEADER_STYLE}">{text}{_PREHEADER_FILLER}</span>'


def _apply(html: str, walker: _Walker, preheader: str | None, signer: LinkSigner | None) -> str:
    starts = [0]  # HTMLParser reports (line, column), counting lines by "\n" only
    for line in html.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    edits = [(starts[line - 1] + column, length, new) for line, column, length, new in walker.edits]
    body_start = 0 if walker.body_open is None else starts[walker.body_open[0] - 1] + walker.body_open[1]
    body_end = (
        len(html) if walker.body_close is None else starts[walker.body_close[0] - 1] + walker.body_close[1]
    )
    if preheader:
        edits.append((body_start, 0, preheader_html(preheader)))
    if signer is not None:
        src = htmllib.escape(signer.open_pixel_url(), quote=True)
        edits.append((body_end, 0, f'<img src="{src}" width="1" height="1" alt="" style="{_PIXEL_STYLE}" />'))
    edits.sort(key=lambda edit: edit[0])
    out, cursor = [], 0
    for start, length, replacement in edits:
        out.append(html[cursor:start])
        out.append(replacement)
        cursor = max(cursor, start + length)
    out.append(html[cursor:])
    return "".join(out)


def decorate(
    html: str, *, preheader: str | None, signer: LinkSigner | None, unsubscribe_url: str | None = None
) -> tuple[str, str]:
    """(HTML, its text): the hidden preheader put first in the body; with a signer, every http(s) link but
    the unsubscribe link routed through the click tracker and the open pixel put last in the body. A link
    whose href is not http(s), mailto, tel or relative (`javascript:`, `data:`, ...) loses its href, with
    or without a signer: its text stays, as no link. The text is read from the HTML as it was given
    (original URLs, no preheader)."""
    walker = _Walker(signer, unsubscribe_url)
    walker.feed(html)
    walker.close()
    if preheader or signer is not None or walker.edits:
        html = _apply(html, walker, preheader, signer)
    return html, walker.text()


# The inliner is reused: building one per message costs more than inlining a small email. Remote
# stylesheets are never fetched (a template must not make the server call out); @media rules stay in a
# <style> block so that the mobile layout survives.
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)


def inline_css(html: str) -> str:
    """Move <style> rules onto the elements (Gmail and Outlook drop or ignore style blocks); @media rules
    stay behind in a <style> block. HTML without a style block or stylesheet link is left as it is."""
    lowered = html.lower()
    if "<style" not in lowered and "<link" not in lowered:
        return html
    return _INLINER.inline(html)


# -- rendering ------------------------------------------------------------------------------------


def _render(field: str, source: str, context: dict[str, Any], *, html: bool) -> str:
    """One field rendered; TemplateError when it does not parse, RenderError when it fails while
    rendering (a resource limit included), each naming the field."""
    template = _parsed(field, source, html)
    try:
        return template.render(**context)
    except ResourceLimitError as exc:
        raise RenderError(f"{field}: {_limit_message(exc)}") from exc
    except LiquidError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RenderError(f"{field}: {message}{_position(exc)}") from exc


def render_message(
    content: dict[str, Any], context: dict[str, Any], signer: LinkSigner | None = None
) -> Rendered:
    """The message as it will be sent. `signer` builds the message's own tracking links."""
    return render_email(content, context, signer)


# -- in processes of their own ---------------------------------------------------------------------

# Renders run here (cartback/processes.py): a template that takes its whole CPU budget holds no lock the
# server's requests need. Sized by the app (CARTBACK_RENDER_PROCESSES); 0 renders in the calling thread.
PROCESSES = processes.Pool("render", niceness=10)


def _elsewhere(fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a render process; here when there is none or the arguments cannot be sent there (a
    context holding something pickle cannot copy). Asked for while handling a request, the render spends
    that request's workspace's budget (delivery/render_budget.py), and is refused when it is spent."""
    workspace_id = render_budget.payer()
    if workspace_id is not None:
        render_budget.BUDGET.check(workspace_id)
    cpu: list[float] = []
    try:
        if not PROCESSES.size:
            return _timed(cpu, fn, *args)
        try:
            payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return _timed(cpu, fn, *args)
        done, value, seconds = PROCESSES.run(_unpacked, payload)
        cpu.append(seconds)
        if not done:
            raise value
        return value
    finally:
        if workspace_id is not None and cpu:
            render_budget.BUDGET.charge(workspace_id, cpu[0])


def _timed(cpu: list[float], fn: Any, *args: Any) -> Any:
    """`fn(*args)`, the CPU time it took appended to `cpu`, whether it returned or raised."""
    started = time.thread_time()
    try:
        return fn(*args)
    finally:
        cpu.append(time.thread_time() - started)


def _unpacked(payload: bytes) -> tuple[bool, Any, float]:
    """In the render process: run the call, and answer whether it returned, what it returned or raised,
    and the CPU time it took (a render that hits a limit costs the most, and is charged too). An error
    that could not travel back becomes a RenderError."""
    fn, args = pickle.loads(payload)
    started = time.thread_time()
    try:
        return True, fn(*args), time.thread_time() - started
    except TemplateError as exc:
        return False, exc, time.thread_time() - started
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            return False, RenderError(f"{type(exc).__name__}: {exc}"), time.thread_time() - started
        return False, exc, time.thread_time() - started


def render_email(
    content: dict[str, Any], context: dict[str, Any], signer: LinkSigner | None = None
) -> Rendered:
    """Render an email step's content against `context`, in a render process (`_rendered_email`)."""
    return _elsewhere(_rendered_email, content, context, signer)  # type: ignore[no-any-return]


def _rendered_email(
    content: dict[str, Any], context: dict[str, Any], signer: LinkSigner | None = None
) -> Rendered:
    """Render an email step's content (`subject`, `previewText`, `html`, `text`, or `template` naming a
    shipped template for what is missing) against `context`. Without a signer (previews, simulate)
    links are left as written and no pixel is added. A TemplateError (RenderError when the template
    parses) names the field that failed."""
    template = content.get("template")
    if isinstance(template, str) and template in _SHIPPED:
        content = {**default_template(template), **{k: v for k, v in content.items() if v}}

    def plain(field: str) -> str | None:
        source = content.get(field)
        return _render(field, source, context, html=False) if source else None

    preheader = plain("previewText")
    preheader = " ".join(preheader.split()) if preheader else None
    source = content.get("html")
    text = plain("text")
    html = None
    if source:
        unsubscribe = context.get("unsubscribe_url")
        # Inlined first, so that the text leaves out what a stylesheet hides, and the tracked links and
        # the pixel come out of the inliner untouched.
        html, derived = decorate(
            inline_css(_render("html", source, context, html=True)),
            preheader=preheader,
            signer=signer,
            unsubscribe_url=unsubscribe if isinstance(unsubscribe, str) else None,
        )
        text = text or derived
    return Rendered(
        subject=" ".join((plain("subject") or "").split()),
        preheader=preheader or None,
        html=html,
        text=text,
    )
