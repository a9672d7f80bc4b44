"""Jinja filters for the dashboard: times, amounts and counts as a person reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jinja2
from babel import numbers

from cartback import money


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def amount(cents: int | None, currency: str | None) -> str:
    """8850, "USD" -> "$88.50"; an unknown currency keeps its code."""
    if cents is None:
        return "—"
    code = (currency or "").upper()
    major = Decimal(cents).scaleb(-money.exponent(code))
    try:
        return numbers.format_currency(major, code, locale="en_US")
    except (ValueError, KeyError):
        return f"{major} {code}".strip()


def count(value: int | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def percent(part: int, whole: int) -> str:
    return "—" if not whole else f"{100 * part / whole:.1f}%"


# Where an event came from, in the owner's words (the store's source names are API names).
SOURCES = {"sequenzy": "the API", "klaviyo": "Klaviyo's API", "segment": "Segment", "cartback": "cartback"}


def source(name: str | None) -> str:
    return SOURCES.get(name or "", name or "")


# A message status in the owner's words where the stored word would mislead: `kept` is not "kept by the
# customer" but kept here, never delivered.
MESSAGE_STATUSES = {"kept": "kept in outbox, not delivered"}


def message_status(status: str) -> str:
    return MESSAGE_STATUSES.get(status, status)


def register(env: jinja2.Environment) -> None:
    filters: dict[str, Any] = {
        "when": when,
        "amount": amount,
        "count": count,
        "source": source,
        "message_status": message_status,
    }
    env.filters.update(filters)
    env.globals["percent"] = percent
