"""Password hashing for dashboard users with scrypt (hashlib, RFC 7914), a memory-hard KDF.

Parameters: N = 2**15, r = 8, p = 1, a 16-byte random salt and a 32-byte key. That costs 32 MiB of memory
and roughly 0.1 s of one core per hash, which makes guessing expensive on GPUs while keeping sign-in
quick on a small server. They are written into each stored hash (`scrypt$15$8$1$<salt>$<key>`), so they
can be raised later without invalidating existing passwords: `needs_rehash` tells when to re-hash on
the next successful sign-in.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

LOG2_N = 15
R = 8
P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_LENGTH = 8
MAX_LENGTH = 1024


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    # hashlib refuses by default above 32 MiB; allow what these parameters need, with room to spare.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    return f"scrypt${LOG2_N}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, LOG2_N, R, P))}"


def verify(password: str, stored: str) -> bool:
    """Whether `password` matches `stored`. Compares in constant time; a malformed hash never matches."""
    try:
        scheme, log2_n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt" or len(password) > MAX_LENGTH:
            return False
        candidate = _scrypt(password, _unb64(salt), int(log2_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(candidate, _unb64(key))


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(f"scrypt${LOG2_N}${R}${P}$")


@functools.cache
def _dummy() -> str:
    return hash_password(secrets.token_urlsafe(16))


def burn_time(password: str) -> None:
    """Verify against a throwaway hash: a wrong address then costs as long as a wrong password, so
    response times do not tell which addresses have accounts."""
    verify(password, _dummy())
