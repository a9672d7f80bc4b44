"""UTC times on SQLite (store/types.UTCDateTime): the text written is the text SQLAlchemy's own DATETIME
writes for the same moment in UTC, so rows written before and after read and compare alike, and text
is read back as the moment it names."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from cartback.store.types import UTCDateTime

DIALECT = sqlite.dialect()
OURS = UTCDateTime().bind_processor(DIALECT)
SQLALCHEMY = sa.DateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
READ = UTCDateTime().result_processor(DIALECT, None)
SQLALCHEMY_READ = sa.DateTime().dialect_impl(DIALECT).result_processor(DIALECT, None)


def _moments(n: int) -> list[datetime]:
    rng = random.Random(7)
    zones = [UTC, ZoneInfo("UTC"), ZoneInfo("America/New_York"), timezone(timedelta(hours=5, minutes=45))]
    edges = [
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(999, 5, 5, 1, 2, 3, 4, tzinfo=UTC),
        datetime(2026, 12, 7, 11, 0, tzinfo=UTC),
        datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    ]
    return edges + [
        datetime(
            rng.randint(2, 9998),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.choice([0, rng.randint(0, 999_999)]),
            tzinfo=rng.choice(zones),
        )
        for _ in range(n)
    ]


def test_utc_times_are_written_as_sqlalchemy_writes_them():
    assert OURS is not None and SQLALCHEMY is not None
    for moment in _moments(20_000):
        text = OURS(moment)
        assert text == SQLALCHEMY(moment.astimezone(UTC).replace(tzinfo=None)), moment
        assert READ(text) == moment == SQLALCHEMY_READ(text).replace(tzinfo=UTC)


def test_text_order_is_time_order():
    moments = _moments(2_000)
    assert sorted(moments) == sorted(moments, key=OURS)


def test_text_written_elsewhere_reads_as_the_moment_it_names():
    assert READ("2026-12-07 12:00:00") == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert READ("2026-12-07T14:00:00+02:00") == datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert READ(None) is None


def test_a_naive_time_is_refused_and_none_stays_none():
    assert OURS is not None
    with pytest.raises(ValueError, match="naive"):
        OURS(datetime(2026, 12, 7, 11, 0))
    assert OURS(None) is None
