from __future__ import annotations

from cartback import ids


def test_new_id_is_prefixed_and_time_sortable():
    early = ids.new_id("evt", now_ms=1_700_000_000_000)
    late = ids.new_id("evt", now_ms=1_700_000_000_001)
    assert early.startswith("evt_") and len(early) == 30
    assert early < late


def test_new_id_is_unique_within_a_millisecond():
    assert len({ids.new_id("sub", now_ms=1) for _ in range(1000)}) == 1000
