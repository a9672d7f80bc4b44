from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cartback.core import schedule
from cartback.core.schedule import SendingWindow

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = frozenset(range(7))
MON_FRI = frozenset(range(5))
FRIDAY = 4


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def local(
    zone: ZoneInfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold)


def wall(instant: datetime, zone: ZoneInfo) -> tuple[str, str]:
    """Local wall time and abbreviation, to assert what a reader in that zone would see."""
    shown = instant.astimezone(zone)
    return shown.strftime("%a %Y-%m-%d %H:%M"), shown.strftime("%Z")


def window(
    start: str, end: str, zone: str = "Europe/Berlin", days: frozenset[int] = EVERY_DAY
) -> SendingWindow:
    return SendingWindow(
        days,
        schedule.parse_time_of_day(start),
        schedule.parse_time_of_day(end, allow_24=True),
        zone,
    )


# --- add_delay -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        pytest.param({"hours": 1}, utc(2026, 6, 10, 13), id="one-hour"),
        pytest.param({"minutes": 0.02}, utc(2026, 6, 10, 12, 0, 1, 200000), id="fractional-minutes"),
        pytest.param({"days": 1.5}, utc(2026, 6, 12, 0), id="fractional-days"),
        pytest.param({"days": 1, "hours": 2, "minutes": 30}, utc(2026, 6, 11, 14, 30), id="combined"),
        pytest.param({}, utc(2026, 6, 10, 12), id="zero"),
    ],
)
def test_add_delay_durations(delay: dict[str, float], expected: datetime) -> None:
    assert schedule.add_delay(utc(2026, 6, 10, 12), **delay) == expected


def test_add_delay_day_is_24_hours_across_spring_forward() -> None:
    due = schedule.add_delay(local(BERLIN, 2026, 3, 28, 12), days=1)
    assert due == utc(2026, 3, 29, 11)
    assert wall(due, BERLIN) == ("Sun 2026-03-29 13:00", "CEST")


def test_add_delay_returns_utc_for_any_aware_input() -> None:
    due = schedule.add_delay(local(NEW_YORK, 2026, 6, 10, 8), hours=1)
    assert (due, due.tzinfo) == (utc(2026, 6, 10, 13), UTC)


@pytest.mark.parametrize(
    "delay",
    [{"hours": -1}, {"days": -0.01}, {"minutes": float("nan")}, {"days": float("inf")}],
    ids=["negative-hours", "negative-days", "nan", "infinite"],
)
def test_add_delay_rejects_bad_amounts(delay: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        schedule.add_delay(utc(2026, 6, 10), **delay)


def test_add_delay_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        schedule.add_delay(datetime(2026, 6, 10), hours=1)


# --- SendingWindow.next_opening: Berlin 09:00-18:00 ----------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "days", "expected_utc", "expected_wall"),
    [
        pytest.param(
            local(BERLIN, 2026, 6, 10, 23),
            EVERY_DAY,
            utc(2026, 6, 11, 7),
            ("Thu 2026-06-11 09:00", "CEST"),
            id="ordinary-night",
        ),
        pytest.param(
            local(BERLIN, 2026, 3, 28, 23),
            EVERY_DAY,
            utc(2026, 3, 29, 7),
            ("Sun 2026-03-29 09:00", "CEST"),
            id="eve-of-spring-forward",
        ),
        pytest.param(
            local(BERLIN, 2026, 3, 29, 1, 30),
            EVERY_DAY,
            utc(2026, 3, 29, 7),
            ("Sun 2026-03-29 09:00", "CEST"),
            id="night-of-spring-forward",
        ),
        pytest.param(
            local(BERLIN, 2026, 10, 24, 23),
            EVERY_DAY,
            utc(2026, 10, 25, 8),
            ("Sun 2026-10-25 09:00", "CET"),
            id="eve-of-fall-back",
        ),
        pytest.param(
            local(BERLIN, 2026, 10, 25, 2, 30, fold=1),
            EVERY_DAY,
            utc(2026, 10, 25, 8),
            ("Sun 2026-10-25 09:00", "CET"),
            id="second-pass-of-fall-back-hour",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 12, 19),
            MON_FRI,
            utc(2026, 6, 15, 7),
            ("Mon 2026-06-15 09:00", "CEST"),
            id="friday-evening-to-monday",
        ),
        pytest.param(
            local(BERLIN, 2026, 10, 23, 19),
            MON_FRI,
            utc(2026, 10, 26, 8),
            ("Mon 2026-10-26 09:00", "CET"),
            id="friday-evening-over-fall-back-weekend",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 13, 10),
            MON_FRI,
            utc(2026, 6, 15, 7),
            ("Mon 2026-06-15 09:00", "CEST"),
            id="saturday-inside-hours-but-not-days",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 10, 8, 59, 59),
            EVERY_DAY,
            utc(2026, 6, 10, 7),
            ("Wed 2026-06-10 09:00", "CEST"),
            id="a-second-before-opening",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 10, 18),
            EVERY_DAY,
            utc(2026, 6, 11, 7),
            ("Thu 2026-06-11 09:00", "CEST"),
            id="end-is-exclusive",
        ),
    ],
)
def test_next_opening_berlin_office_hours(
    moment: datetime, days: frozenset[int], expected_utc: datetime, expected_wall: tuple[str, str]
) -> None:
    opening = window("09:00", "18:00", days=days).next_opening(moment)
    assert opening == expected_utc
    assert opening.tzinfo is UTC
    assert wall(opening, BERLIN) == expected_wall


@pytest.mark.parametrize(
    "moment",
    [local(BERLIN, 2026, 6, 10, 9), local(BERLIN, 2026, 6, 10, 17, 59, 59), local(BERLIN, 2026, 3, 29, 12)],
    ids=["at-opening", "last-second", "spring-forward-afternoon"],
)
def test_next_opening_inside_is_the_moment_itself(moment: datetime) -> None:
    assert window("09:00", "18:00").next_opening(moment) == moment


def test_next_opening_start_in_spring_forward_gap_moves_to_end_of_gap() -> None:
    opening = window("02:30", "18:00").next_opening(local(BERLIN, 2026, 3, 28, 23))
    assert opening == utc(2026, 3, 29, 1)
    assert wall(opening, BERLIN) == ("Sun 2026-03-29 03:00", "CEST")


def test_next_opening_start_in_fall_back_hour_uses_first_occurrence() -> None:
    opening = window("02:30", "18:00").next_opening(local(BERLIN, 2026, 10, 24, 23))
    assert opening == utc(2026, 10, 25, 0, 30)
    assert wall(opening, BERLIN) == ("Sun 2026-10-25 02:30", "CEST")


def test_next_opening_window_wholly_inside_gap_is_skipped_that_day() -> None:
    sundays = window("02:10", "02:40", days=frozenset({6}))
    opening = sundays.next_opening(local(BERLIN, 2026, 3, 28, 12))
    assert wall(opening, BERLIN) == ("Sun 2026-04-05 02:10", "CEST")


def test_next_opening_clock_set_back_into_window_reopens_it() -> None:
    # 01:00-02:30 on fall-back night: the clock reads 02:45 CEST (outside), then 02:00 CET (inside again).
    opening = window("01:00", "02:30").next_opening(local(BERLIN, 2026, 10, 25, 2, 45))
    assert opening == utc(2026, 10, 25, 1)
    assert wall(opening, BERLIN) == ("Sun 2026-10-25 02:00", "CET")


# --- crossing midnight, 24:00, other zones ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected_wall"),
    [
        pytest.param(local(BERLIN, 2026, 6, 12, 12), ("Fri 2026-06-12 22:00", "CEST"), id="friday-noon"),
        pytest.param(local(BERLIN, 2026, 6, 12, 23, 30), ("Fri 2026-06-12 23:30", "CEST"), id="friday-late"),
        pytest.param(
            local(BERLIN, 2026, 6, 13, 3), ("Sat 2026-06-13 03:00", "CEST"), id="saturday-small-hours"
        ),
        pytest.param(local(BERLIN, 2026, 6, 13, 6), ("Fri 2026-06-19 22:00", "CEST"), id="saturday-at-end"),
        pytest.param(
            local(BERLIN, 2026, 6, 12, 3), ("Fri 2026-06-12 22:00", "CEST"), id="friday-small-hours"
        ),
        pytest.param(local(BERLIN, 2026, 6, 11, 23), ("Fri 2026-06-12 22:00", "CEST"), id="thursday-late"),
    ],
)
def test_next_opening_window_crossing_midnight_belongs_to_opening_day(
    moment: datetime, expected_wall: tuple[str, str]
) -> None:
    friday_nights = window("22:00", "06:00", days=frozenset({FRIDAY}))
    assert wall(friday_nights.next_opening(moment), BERLIN) == expected_wall


@pytest.mark.parametrize(
    ("moment", "expected_wall"),
    [
        pytest.param(local(BERLIN, 2026, 6, 10, 23, 59), ("Wed 2026-06-10 23:59", "CEST"), id="last-minute"),
        pytest.param(local(BERLIN, 2026, 6, 11, 0), ("Thu 2026-06-11 18:00", "CEST"), id="midnight-is-out"),
        pytest.param(local(BERLIN, 2026, 6, 11, 17), ("Thu 2026-06-11 18:00", "CEST"), id="afternoon"),
    ],
)
def test_next_opening_end_of_day_24_00(moment: datetime, expected_wall: tuple[str, str]) -> None:
    evenings = SendingWindow.from_wire(
        {"startTime": "18:00", "endTime": "24:00", "timezone": "Europe/Berlin"}
    )
    assert evenings is not None
    assert wall(evenings.next_opening(moment), BERLIN) == expected_wall


def test_next_opening_whole_day_window_00_00_to_24_00() -> None:
    mondays = window("00:00", "24:00", days=frozenset({0}))
    assert wall(mondays.next_opening(local(BERLIN, 2026, 6, 14, 23)), BERLIN) == (
        "Mon 2026-06-15 00:00",
        "CEST",
    )
    assert mondays.contains(local(BERLIN, 2026, 6, 15, 23, 59, 59))
    assert wall(mondays.next_opening(local(BERLIN, 2026, 6, 16)), BERLIN) == ("Mon 2026-06-22 00:00", "CEST")


@pytest.mark.parametrize(
    ("moment", "expected_utc", "expected_wall"),
    [
        pytest.param(
            local(NEW_YORK, 2026, 6, 10, 20),
            utc(2026, 6, 11, 13),
            ("Thu 2026-06-11 09:00", "EDT"),
            id="summer",
        ),
        pytest.param(
            local(NEW_YORK, 2026, 3, 7, 23),
            utc(2026, 3, 8, 13),
            ("Sun 2026-03-08 09:00", "EDT"),
            id="spring-fwd",
        ),
        pytest.param(
            local(NEW_YORK, 2026, 10, 31, 23),
            utc(2026, 11, 1, 14),
            ("Sun 2026-11-01 09:00", "EST"),
            id="fall-back",
        ),
    ],
)
def test_next_opening_new_york(
    moment: datetime, expected_utc: datetime, expected_wall: tuple[str, str]
) -> None:
    opening = window("09:00", "17:00", "America/New_York").next_opening(moment)
    assert (opening, wall(opening, NEW_YORK)) == (expected_utc, expected_wall)


# --- subscriber time zone ----------------------------------------------------------------------------------


def test_next_opening_uses_subscriber_timezone_override() -> None:
    office = window("09:00", "18:00")
    moment = utc(2026, 6, 10, 12)  # 14:00 in Berlin, 08:00 in New York
    assert office.next_opening(moment) == moment
    opening = office.next_opening(moment, tz_override="America/New_York")
    assert (opening, wall(opening, NEW_YORK)) == (utc(2026, 6, 10, 13), ("Wed 2026-06-10 09:00", "EDT"))
    assert not office.contains(moment, tz_override="America/New_York")


@pytest.mark.parametrize(
    "override",
    [None, "", "Mars/Olympus_Mons", "not a zone", "../../etc/passwd", "/etc/localtime", "Europe", "Europe/"],
    ids=["none", "empty", "unknown", "spaces", "traversal", "absolute-path", "directory", "trailing-slash"],
)
def test_next_opening_invalid_override_falls_back_to_window_timezone(override: Any) -> None:
    office = window("09:00", "18:00")
    assert office.next_opening(local(BERLIN, 2026, 6, 10, 23), tz_override=override) == utc(2026, 6, 11, 7)


def test_next_opening_rejects_naive_moment() -> None:
    with pytest.raises(ValueError, match="aware"):
        window("09:00", "18:00").next_opening(datetime(2026, 6, 10, 12))


# --- wire ----------------------------------------------------------------------------------------------


def test_sending_window_from_wire_sequenzy_shape() -> None:
    parsed = SendingWindow.from_wire(
        {
            "enabled": True,
            "days": ["Monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "09:00",
            "endTime": "17:30",
            "timezone": "America/New_York",
        }
    )
    assert parsed == SendingWindow(MON_FRI, time(9), time(17, 30), "America/New_York")


def test_sending_window_from_wire_disabled_is_none() -> None:
    assert SendingWindow.from_wire({"enabled": False, "timezone": "Not/AZone"}) is None


def test_sending_window_from_wire_defaults_to_always_open_in_utc() -> None:
    assert SendingWindow.from_wire({}) == SendingWindow(EVERY_DAY, time(0), schedule.END_OF_DAY, "UTC")


@pytest.mark.parametrize(
    "wire",
    [
        {
            "enabled": True,
            "days": ["sunday", "saturday"],
            "startTime": "22:00",
            "endTime": "06:00",
            "timezone": "UTC",
        },
        {
            "enabled": True,
            "days": ["sunday", "monday"],
            "startTime": "18:00",
            "endTime": "24:00",
            "timezone": "UTC",
        },
        {
            "enabled": True,
            "days": ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"],
            "startTime": "09:05",
            "endTime": "17:00",
            "timezone": "Asia/Kolkata",
        },
    ],
    ids=["crossing-midnight", "end-of-day", "every-day"],
)
def test_sending_window_wire_round_trip(wire: dict[str, Any]) -> None:
    parsed = SendingWindow.from_wire(wire)
    assert parsed is not None
    assert parsed.to_wire() == wire


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        pytest.param({"timezone": "Europe/Berlinn"}, "timezone: unknown IANA", id="unknown-zone"),
        pytest.param({"timezone": ""}, "timezone: unknown IANA", id="empty-zone"),
        pytest.param({"timezone": 1}, "timezone: unknown IANA", id="zone-not-a-string"),
        pytest.param({"days": []}, "days must be a non-empty list", id="no-days"),
        pytest.param({"days": ["funday"]}, "unknown day 'funday'", id="unknown-day"),
        pytest.param({"days": "monday"}, "days must be a non-empty list", id="days-not-a-list"),
        pytest.param({"startTime": "9am"}, 'startTime must be "HH:mm"', id="bad-start"),
        pytest.param({"startTime": "24:00"}, 'startTime must be "HH:mm"', id="start-24"),
        pytest.param({"endTime": "24:01"}, "endTime must be", id="end-past-24"),
        pytest.param({"endTime": "12:60"}, "endTime must be", id="bad-minute"),
        pytest.param({"enabled": "yes"}, "enabled must be true or false", id="enabled-not-bool"),
    ],
)
def test_sending_window_from_wire_rejects(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SendingWindow.from_wire(wire)


@pytest.mark.parametrize(
    ("days", "start", "zone"),
    [
        pytest.param(frozenset(), time(9), "UTC", id="no-days"),
        pytest.param(frozenset({7}), time(9), "UTC", id="day-out-of-range"),
        pytest.param(EVERY_DAY, time(9, 0, 30), "UTC", id="seconds"),
        pytest.param(EVERY_DAY, time(9), "Nowhere/Special", id="zone"),
    ],
)
def test_sending_window_constructor_validates(days: frozenset[int], start: time, zone: str) -> None:
    with pytest.raises(ValueError):
        SendingWindow(days, start, time(18), zone)


# --- next_weekday_slot / next_time_of_day -------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "days", "minimum_wait", "expected_wall"),
    [
        pytest.param(
            local(BERLIN, 2026, 6, 11, 10),
            MON_FRI,
            timedelta(days=1),
            ("Fri 2026-06-12 10:00", "CEST"),
            id="wait-a-day",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 12, 10),
            MON_FRI,
            timedelta(days=1),
            ("Mon 2026-06-15 09:00", "CEST"),
            id="weekend",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 11, 10),
            frozenset({0}),
            timedelta(0),
            ("Mon 2026-06-15 09:00", "CEST"),
            id="monday",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 15, 10),
            frozenset({0}),
            timedelta(0),
            ("Mon 2026-06-15 10:00", "CEST"),
            id="now",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 15, 16, 30),
            frozenset({0}),
            timedelta(hours=1),
            ("Mon 2026-06-22 09:00", "CEST"),
            id="minimum-wait-runs-past-the-end",
        ),
    ],
)
def test_next_weekday_slot(
    moment: datetime, days: frozenset[int], minimum_wait: timedelta, expected_wall: tuple[str, str]
) -> None:
    slot = schedule.next_weekday_slot(
        moment, days=days, start=time(9), end=time(17), timezone="Europe/Berlin", minimum_wait=minimum_wait
    )
    assert wall(slot, BERLIN) == expected_wall


def test_next_weekday_slot_in_subscriber_timezone() -> None:
    slot = schedule.next_weekday_slot(
        utc(2026, 6, 12, 22),
        days=MON_FRI,
        start=time(9),
        end=time(17),
        timezone="Europe/Berlin",
        tz_override="America/New_York",
    )
    assert wall(slot, NEW_YORK) == ("Mon 2026-06-15 09:00", "EDT")


def test_next_weekday_slot_rejects_negative_minimum_wait() -> None:
    with pytest.raises(ValueError, match="negative"):
        schedule.next_weekday_slot(
            utc(2026, 6, 12),
            days=MON_FRI,
            start=time(9),
            end=time(17),
            timezone="UTC",
            minimum_wait=timedelta(-1),
        )


@pytest.mark.parametrize(
    ("moment", "at", "expected_utc", "expected_wall"),
    [
        pytest.param(
            local(BERLIN, 2026, 6, 10, 10),
            time(10),
            utc(2026, 6, 10, 8),
            ("Wed 2026-06-10 10:00", "CEST"),
            id="exact",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 10, 9, 59),
            time(10),
            utc(2026, 6, 10, 8),
            ("Wed 2026-06-10 10:00", "CEST"),
            id="before",
        ),
        pytest.param(
            local(BERLIN, 2026, 6, 10, 10, 0, 1),
            time(10),
            utc(2026, 6, 11, 8),
            ("Thu 2026-06-11 10:00", "CEST"),
            id="just-after",
        ),
        pytest.param(
            local(BERLIN, 2026, 3, 28, 12),
            time(10),
            utc(2026, 3, 29, 8),
            ("Sun 2026-03-29 10:00", "CEST"),
            id="spring",
        ),
        pytest.param(
            local(BERLIN, 2026, 10, 24, 12),
            time(10),
            utc(2026, 10, 25, 9),
            ("Sun 2026-10-25 10:00", "CET"),
            id="fall",
        ),
        pytest.param(
            local(BERLIN, 2026, 3, 29, 1),
            time(2, 30),
            utc(2026, 3, 29, 1),
            ("Sun 2026-03-29 03:00", "CEST"),
            id="gap",
        ),
        pytest.param(
            local(BERLIN, 2026, 10, 25, 1),
            time(2, 30),
            utc(2026, 10, 25, 0, 30),
            ("Sun 2026-10-25 02:30", "CEST"),
            id="ambiguous-first",
        ),
        pytest.param(
            local(BERLIN, 2026, 10, 25, 2, 45),
            time(2, 30),
            utc(2026, 10, 26, 1, 30),
            ("Mon 2026-10-26 02:30", "CET"),
            id="ambiguous-after-first-is-next-day",
        ),
    ],
)
def test_next_time_of_day(
    moment: datetime, at: time, expected_utc: datetime, expected_wall: tuple[str, str]
) -> None:
    due = schedule.next_time_of_day(moment, at, "Europe/Berlin")
    assert (due, wall(due, BERLIN)) == (expected_utc, expected_wall)


def test_next_time_of_day_subscriber_override_and_fallback() -> None:
    moment = utc(2026, 6, 10, 12)
    assert schedule.next_time_of_day(
        moment, time(10), "Europe/Berlin", tz_override="America/New_York"
    ) == utc(2026, 6, 10, 14)
    assert schedule.next_time_of_day(moment, time(10), "Europe/Berlin", tz_override="Bogus/Zone") == utc(
        2026, 6, 11, 8
    )


def test_next_time_of_day_rejects_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        schedule.next_time_of_day(utc(2026, 6, 10), time(10), "Europe/Atlantis")


# --- property: next_opening is the first instant inside ------------------------------------------------

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Europe/Dublin",  # negative DST in tzdata
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # changes at midnight
    "America/Havana",  # falls back across midnight
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kolkata",
    "Pacific/Apia",  # skipped Friday 2011-12-30 entirely
]


def reference_inside(instant: datetime, days: frozenset[int], start: time, end: time, zone: ZoneInfo) -> bool:
    """An independent statement of the window: each allowed day covers the stretch of wall-clock readings
    from its start time lasting (end - start) mod 24h, a whole day when that is zero."""
    reading = instant.astimezone(zone)
    minute = reading.hour * 60 + reading.minute + (reading.second + reading.microsecond / 1e6) / 60
    start_minute = start.hour * 60 + start.minute
    length = ((end.hour * 60 + end.minute - start_minute) % 1440) or 1440
    for back in (0, 1):  # opened today, or yesterday and still running
        since_opening = minute + back * 1440 - start_minute
        if (reading.weekday() - back) % 7 in days and 0 <= since_opening < length:
            return True
    return False


minutes_of_day = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59))
anywhere = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31))


@st.composite
def near_changes(draw: st.DrawFn) -> datetime:
    """Small hours in the months clocks change in, north and south, where the edge cases live."""
    year, month = draw(st.integers(2000, 2037)), draw(st.sampled_from([3, 4, 9, 10, 11, 12]))
    day = min(draw(st.integers(1, 31)), calendar.monthrange(year, month)[1])
    return datetime(year, month, day, draw(st.integers(0, 4)), draw(st.integers(0, 59)))


def moments(zone_name: str) -> st.SearchStrategy[datetime]:
    zone = ZoneInfo(zone_name)
    return (near_changes() | anywhere).map(lambda naive: naive.replace(tzinfo=zone).astimezone(UTC))


@st.composite
def cases(draw: st.DrawFn) -> tuple[datetime, frozenset[int], time, time, str]:
    zone_name = draw(st.sampled_from(ZONES))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    return draw(moments(zone_name)), days, draw(minutes_of_day), draw(minutes_of_day), zone_name


@settings(max_examples=200, deadline=None)
@given(case=cases())
@example(case=(utc(2026, 10, 25, 0, 45), EVERY_DAY, time(1), time(2, 30), "Europe/Berlin"))
@example(case=(utc(2011, 12, 29, 12), frozenset({4}), time(9), time(17), "Pacific/Apia"))
@example(case=(utc(2026, 3, 28, 22), frozenset({6}), time(2, 10), time(2, 40), "Europe/Berlin"))
def test_next_opening_is_first_instant_inside_window(
    case: tuple[datetime, frozenset[int], time, time, str],
) -> None:
    moment, days, start, end, zone_name = case
    zone = ZoneInfo(zone_name)
    opening = SendingWindow(days, start, end, zone_name).next_opening(moment)

    assert opening >= moment
    assert reference_inside(opening, days, start, end, zone)
    if opening == moment:
        return
    assert not reference_inside(moment, days, start, end, zone)
    probe = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < opening:
        assert not reference_inside(probe, days, start, end, zone), probe
        probe += timedelta(minutes=1)


@given(case=cases())
@settings(max_examples=200, deadline=None)
def test_sending_window_contains_agrees_with_reference(
    case: tuple[datetime, frozenset[int], time, time, str],
) -> None:
    moment, days, start, end, zone_name = case
    inside = SendingWindow(days, start, end, zone_name).contains(moment)
    assert inside is reference_inside(moment, days, start, end, ZoneInfo(zone_name))


@given(moment=moments("Europe/Berlin"), at=minutes_of_day)
def test_next_time_of_day_is_at_or_after_moment_and_reads_at(moment: datetime, at: time) -> None:
    due = schedule.next_time_of_day(moment, at, "Europe/Berlin")
    assert moment <= due < moment + timedelta(days=1, hours=1)
    reading = due.astimezone(BERLIN).time()
    assert reading == at or (time(2) <= at < time(3) and reading == time(3))  # spring-forward gap


def test_reference_inside_sanity() -> None:
    assert reference_inside(local(BERLIN, 2026, 6, 13, 3), frozenset({FRIDAY}), time(22), time(6), BERLIN)
    assert not reference_inside(local(BERLIN, 2026, 6, 12, 3), frozenset({FRIDAY}), time(22), time(6), BERLIN)
    assert reference_inside(local(BERLIN, 2026, 6, 12, 3), frozenset({FRIDAY}), time(3), time(3), BERLIN)
    assert date(2026, 6, 12).weekday() == FRIDAY
