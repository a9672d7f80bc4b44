"""Prefixed, time-sortable identifiers (`sub_01JD...`): 48 bits of milliseconds, then 80 random bits,
written in Crockford base32 so that string order is creation order (to the millisecond)."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 and Crockford's alphabet list their digits in the same order, so translating one to
# the other keeps the order of the encoded values (and Crockford's is in ASCII order).
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Every pair of Crockford digits, indexed by the 10 bits they spell: 13 lookups make an id.
_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]


def new_id(prefix: str, now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{prefix}_{encode(ms.to_bytes(6, 'big') + os.urandom(10))}"


def encode(raw: bytes) -> str:
    """16 bytes as the first 26 characters of their base32, in Crockford's alphabet (the 128 bits and
    two zero bits). With integer arithmetic: base64.b32encode is written in Python and cost several
    microseconds per id, and a checkout makes five ids."""
    n = int.from_bytes(raw, "big") << 2
    pairs = _PAIRS
    out = [""] * 13
    for i in range(12, -1, -1):
        out[i] = pairs[n & 0x3FF]
        n >>= 10
    return "".join(out)


def encode_by_base32(raw: bytes) -> str:
    """What `encode` gives, the way it was first written (kept to test `encode` against)."""
    return base64.b32encode(raw)[:26].decode().translate(_CROCKFORD)
