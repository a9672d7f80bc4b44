"""scrypt password hashes: verify, refuse, and recognise old parameters."""

from __future__ import annotations

from cartback.core import passwords


def test_passwords_hash_verifies_only_the_same_password():
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("scrypt$15$8$1$")
    assert "correct horse" not in stored
    assert passwords.verify("correct horse", stored)
    assert not passwords.verify("correct horsE", stored)
    # Salted: the same password hashes differently each time.
    assert passwords.hash_password("correct horse") != stored


def test_passwords_malformed_hash_never_matches():
    for stored in ("", "scrypt$", "bcrypt$15$8$1$aa$bb", "scrypt$x$8$1$aa$bb", "plain"):
        assert not passwords.verify("anything", stored)


def test_passwords_older_parameters_still_verify_and_ask_for_a_rehash():
    salt = b"0123456789abcdef"
    key = passwords._scrypt("pw-123456", salt, 14, 8, 1)
    stored = f"scrypt$14$8$1${passwords._b64(salt)}${passwords._b64(key)}"
    assert passwords.verify("pw-123456", stored)
    assert passwords.needs_rehash(stored)
    assert not passwords.needs_rehash(passwords.hash_password("pw-123456"))
