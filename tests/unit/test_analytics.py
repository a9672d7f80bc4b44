"""Time buckets of analytics and metric aggregates: local days, Monday weeks and months of a zone,
daylight-saving changes, and the limits."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from cartback import errors
from cartback.core import analytics

PARIS = ZoneInfo("Europe/Paris")


def labels(start: datetime, end: datetime, interval: str, tz: ZoneInfo = PARIS) -> list[str]:
    return [b.label.isoformat() for b in analytics.buckets(start, end, interval, tz)]


def test_analytics_days_follow_daylight_saving():
    cuts = analytics.buckets(
        datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), "day", PARIS
    )
    # The first bucket starts at `start` itself, labelled with its local day.
    assert cuts[0].start == datetime(2026, 3, 28, tzinfo=UTC)
    assert [c.label.isoformat() for c in cuts] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-03-31T00:00:00+02:00",
    ]
    # The 29th is 23 hours long; buckets tile the range with no gap.
    assert (cuts[2].start - cuts[1].start).total_seconds() == 23 * 3600
    assert all(a.end == b.start for a, b in itertools.pairwise(cuts))
    assert cuts[-1].end == datetime(2026, 3, 31, tzinfo=UTC)


def test_analytics_weeks_start_on_monday_and_months_on_the_first():
    assert labels(
        datetime(2026, 11, 18, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "week", ZoneInfo("UTC")
    ) == [
        "2026-11-16T00:00:00+00:00",
        "2026-11-23T00:00:00+00:00",
        "2026-11-30T00:00:00+00:00",
    ]
    assert labels(datetime(2026, 11, 15, tzinfo=UTC), datetime(2027, 1, 31, 23, tzinfo=UTC), "month") == [
        "2026-11-01T00:00:00+01:00",
        "2026-12-01T00:00:00+01:00",
        "2027-01-01T00:00:00+01:00",
    ]


def test_analytics_hours_in_a_half_hour_zone():
    got = labels(
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 2, 0, tzinfo=UTC),
        "hour",
        ZoneInfo("Asia/Kolkata"),
    )
    assert got == ["2026-01-01T05:00:00+05:30", "2026-01-01T06:00:00+05:30", "2026-01-01T07:00:00+05:30"]


@pytest.mark.parametrize(
    ("start", "end", "interval"),
    [
        (datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "day"),
        (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC), "minute"),
        (datetime(2020, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), "hour"),
    ],
)
def test_analytics_bad_buckets_are_invalid_input(start, end, interval):
    with pytest.raises(errors.InvalidInput):
        analytics.buckets(start, end, interval, PARIS)


def test_analytics_rate_is_zero_without_a_denominator():
    assert analytics.rate(3, 0) == 0.0
    assert analytics.rate(1, 3) == 0.3333
