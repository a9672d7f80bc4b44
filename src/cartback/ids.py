"""Prefixed, time-sortable identifiers (`sub_01JD...`): 48 bits of milliseconds, then 80 random bits,
written in Crockford base32 so that string order is creation order (to the millisecond)."""

from __future__ import annotations

import base64
import os
import time

# RFC 4648 base32 and Crockford's alphabet list their digits in the same order, so translating one to
# the other keeps the order of the encoded values (and Crockford's is in ASCII order).
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(prefix: str, now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    raw = ms.to_bytes(6, "big") + os.urandom(10)
    return f"{prefix}_{base64.b32encode(raw)[:26].decode().translate(_CROCKFORD)}"
