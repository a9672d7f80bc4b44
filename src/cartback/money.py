"""Amounts arrive in minor units (cents). Currencies without a minor unit must not be divided by 100.
Currency codes are ISO 4217's, as Babel's copy of the CLDR lists them."""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal

from babel import numbers

# The largest amount, in minor units, that an API accepts: far beyond any real order, and exact both in
# a 64-bit integer column and in the float a template may compute with (below 2**53).
MAX_MINOR_UNITS = 10**15

# ISO 4217 currencies whose minor unit is not 1/100.
_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def exponent(currency: str | None) -> int:
    return _EXPONENTS.get((currency or "").upper(), 2)


def to_major(cents: int, currency: str | None) -> float:
    """8850 USD -> 88.5; 8850 JPY -> 8850.0."""
    digits: int = exponent(currency)
    major: float = round(cents / 10**digits, digits)
    return major


@functools.cache
def _codes() -> frozenset[str]:
    # CLDR's list: every ISO 4217 code, current and withdrawn (an old order may still say DEM).
    return frozenset(numbers.list_currencies())


def currency_code(value: str) -> str | None:
    """The ISO 4217 code `value` names (`usd` is USD), or None when it names none (`XYZ`)."""
    code = value.strip().upper()
    return code if len(code) == 3 and code in _codes() else None


def to_minor(amount: Decimal, currency: str | None, *, allow_negative: bool = False) -> int:
    """Major units to minor units exactly, half up: 64.5 USD -> 6450, 6450 JPY -> 6450. ValueError
    when not finite or beyond MAX_MINOR_UNITS; checked before scaling, so a huge amount such as 1e300
    is refused rather than overflowing the decimal context."""
    digits = exponent(currency)
    low = -MAX_MINOR_UNITS if allow_negative else 0
    if not amount.is_finite():
        raise ValueError("is not a finite number")
    # Bounded before scaling: scaling or rounding 1e300 would overflow the decimal context.
    if amount.copy_abs() > _largest_major(digits):
        raise _out_of_range(low)
    minor = int(amount.scaleb(digits).quantize(_ONE, rounding=ROUND_HALF_UP))
    if not low <= minor <= MAX_MINOR_UNITS:
        raise _out_of_range(low)
    return minor


_ONE = Decimal(1)


@functools.cache
def _largest_major(digits: int) -> Decimal:
    """Just beyond the largest amount in major units that fits, for a currency with `digits` decimals."""
    return Decimal(MAX_MINOR_UNITS + 1).scaleb(-digits)


def _out_of_range(low: int) -> ValueError:
    return ValueError(f"must be between {low} and {MAX_MINOR_UNITS} in minor units")
