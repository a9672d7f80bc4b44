from __future__ import annotations

import os

from cartback import ids


def test_new_id_is_prefixed_and_time_sortable():
    early = ids.new_id("evt", now_ms=1_700_000_000_000)
    late = ids.new_id("evt", now_ms=1_700_000_000_001)
    assert early.startswith("evt_") and len(early) == 30
    assert early < late


def test_new_id_is_unique_within_a_millisecond():
    assert len({ids.new_id("sub", now_ms=1) for _ in range(1000)}) == 1000


def test_ids_encoding_is_base32_in_crockford_alphabet():
    samples = [bytes(16), b"\xff" * 16, bytes(range(16))] + [os.urandom(16) for _ in range(20_000)]
    for raw in samples:
        assert ids.encode(raw) == ids.encode_by_base32(raw)
