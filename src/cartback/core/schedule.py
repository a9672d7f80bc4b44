"""When a step is due: delays, sending windows, weekday waits and "until 10:00 local", in real time zones.

Everything takes and returns aware datetimes; results are in UTC. Two kinds of time meet here and are kept
apart on purpose:

* A delay ("wait 1 hour", Sequenzy `delay{days,hours,minutes}` / `delayMs`) is elapsed time: one day is 24
  hours even across a DST change, exactly like Sequenzy's `delayMs`.
* A window ("Mon-Fri 09:00-18:00 Europe/Berlin") is a set of local wall-clock readings. An instant is inside
  it when the clock on a wall in that zone reads a time inside it, on an allowed day. The day named is the
  day the window opens: 22:00-06:00 on Friday covers Friday 22:00 to Saturday 06:00. An end at or before the
  start crosses midnight, so an end of "24:00" (stored as 00:00) means end of day and start == end means a
  24-hour window.

Local times are turned into instants with `zoneinfo` and `fold`, never by adding days in UTC. A wall time
that does not exist (02:30 on spring-forward day) becomes the first instant after it, the moment of the
change (03:00); an ambiguous one (02:30 on fall-back day) becomes its first occurrence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Sequenzy's day names, in Python's weekday() numbering (0 = Monday).
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ALL_DAYS = frozenset(range(7))
END_OF_DAY = time(0)  # an end time of 00:00 is midnight at the end of the day, what the wire spells "24:00"

_CLOCK = re.compile(r"^(?P<hour>\d{1,2}):(?P<minute>\d{2})$")
# No zone has gone two weeks without an allowed day coming round; a full week plus a skipped day is enough.
_HORIZON_DAYS = 16
# Offsets change at most a couple of times a year, never twice within this step.
_OFFSET_PROBE = timedelta(hours=6)


@dataclass(frozen=True)
class SendingWindow:
    """Sequenzy's `sendingWindow`: steps due outside it wait for it to open."""

    days: frozenset[int]
    start: time
    end: time
    timezone: str

    def __post_init__(self) -> None:
        _check_window(self.days, self.start, self.end, self.timezone)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> SendingWindow | None:
        """Parse `{enabled, days, startTime, endTime, timezone}`; a disabled window is no window (None).
        Absent keys mean: enabled, every day, 00:00, 24:00, UTC. Raises ValueError with the offending key."""
        if not isinstance(wire, Mapping):
            raise ValueError(f"sendingWindow must be an object, got {type(wire).__name__}")
        enabled = wire.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"sendingWindow.enabled must be true or false, got {enabled!r}")
        if not enabled:
            return None
        names = wire.get("days")
        days = ALL_DAYS if names is None else parse_weekdays(names, key="sendingWindow.days")
        start = parse_time_of_day(wire.get("startTime", "00:00"), key="sendingWindow.startTime")
        end = parse_time_of_day(wire.get("endTime", "24:00"), key="sendingWindow.endTime", allow_24=True)
        timezone = wire.get("timezone", "UTC")
        if not isinstance(timezone, str) or _zone(timezone) is None:
            raise ValueError(f"sendingWindow.timezone: unknown IANA time zone {timezone!r}")
        return cls(days, start, end, timezone)

    def to_wire(self) -> dict[str, Any]:
        # Sequenzy lists days Sunday first.
        ordered = [day for day in (6, 0, 1, 2, 3, 4, 5) if day in self.days]
        return {
            "enabled": True,
            "days": [WEEKDAYS[day] for day in ordered],
            "startTime": self.start.strftime("%H:%M"),
            "endTime": "24:00" if self.end == END_OF_DAY else self.end.strftime("%H:%M"),
            "timezone": self.timezone,
        }

    def contains(self, moment: datetime, tz_override: str | None = None) -> bool:
        """Whether a wall clock in the window's zone (or the subscriber's) reads inside the window."""
        local = _require_aware(moment).astimezone(self._zone(tz_override))
        return _inside(self, local.date(), local.time().replace(tzinfo=None))

    def next_opening(self, moment: datetime, tz_override: str | None = None) -> datetime:
        """`moment` if it is inside the window, else the first instant after it that is, in UTC.

        `tz_override` is the subscriber's own `timezone` attribute, for sequences that send in the
        subscriber's time; a missing or unknown one falls back to the window's zone, since subscriber data
        must never make a step fail."""
        moment = _require_aware(moment).astimezone(UTC)
        zone = self._zone(tz_override)
        if self.contains(moment, tz_override):
            return moment
        # The first instant inside is either the window's start on an allowed day (resolved through any DST
        # gap), or a UTC-offset change that sets the clock back into the window.
        today = moment.astimezone(zone).date()
        candidates = [
            _resolve_local(today + timedelta(days=offset), self.start, zone)
            for offset in range(-1, _HORIZON_DAYS)
            if (today + timedelta(days=offset)).weekday() in self.days
        ]
        candidates += _offset_changes(zone, moment, moment + timedelta(days=_HORIZON_DAYS))
        for candidate in sorted(candidates):
            if candidate > moment and self.contains(candidate, tz_override):
                return candidate
        raise RuntimeError(f"{self!r} did not open within {_HORIZON_DAYS} days of {moment.isoformat()}")

    def _zone(self, tz_override: str | None) -> ZoneInfo:
        zone = _zone(tz_override) if tz_override else None
        return zone or _zone_or_raise(self.timezone)


def add_delay(now: datetime, *, days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """`now` plus an elapsed-time delay, in UTC. Fractions are fine (0.02 minutes); a negative or
    non-finite part is a definition error, so it raises ValueError rather than firing early."""
    for name, amount in (("days", days), ("hours", hours), ("minutes", minutes)):
        if isinstance(amount, bool) or not math.isfinite(amount) or amount < 0:
            raise ValueError(f"delay {name} must be a non-negative number, got {amount!r}")
    return _require_aware(now).astimezone(UTC) + timedelta(days=days, hours=hours, minutes=minutes)


def next_weekday_slot(
    moment: datetime,
    *,
    days: Iterable[int],
    start: time,
    end: time,
    timezone: str,
    minimum_wait: timedelta = timedelta(0),
    tz_override: str | None = None,
) -> datetime:
    """Sequenzy's `waitUntilWeekday`: wait at least `minimum_wait`, then until the clock reads between
    `start` and `end` on one of `days` (0 = Monday; `end` of 00:00 means 24:00). `tz_override` is the
    subscriber's zone when `timezoneSource` is "subscriber", with the same fallback as a sending window."""
    if minimum_wait < timedelta(0):
        raise ValueError(f"minimum wait must not be negative, got {minimum_wait}")
    window = SendingWindow(frozenset(days), start, end, timezone)
    return window.next_opening(_require_aware(moment) + minimum_wait, tz_override)


def next_time_of_day(
    moment: datetime, at: time, timezone: str, *, tz_override: str | None = None
) -> datetime:
    """The first instant at or after `moment` when the local clock reads `at` ("until 10:00 local"), in
    UTC. At exactly 10:00 that is `moment` itself, so a step never waits a whole day for a clock it has
    already reached. Nonexistent times move to the end of the gap; ambiguous ones use the first occurrence,
    so once that has passed the answer is the next day's."""
    if at.tzinfo is not None:
        raise ValueError("time of day must be a local (naive) time")
    moment = _require_aware(moment).astimezone(UTC)
    zone = (_zone(tz_override) if tz_override else None) or _zone_or_raise(timezone)
    today = moment.astimezone(zone).date()
    return min(
        instant
        for offset in range(-1, 3)
        if (instant := _resolve_local(today + timedelta(days=offset), at, zone)) >= moment
    )


def parse_weekdays(names: Any, *, key: str = "days") -> frozenset[int]:
    """Sequenzy day names ("monday", any case) as weekday numbers; an empty or unknown list is an error."""
    if not isinstance(names, list) or not names:
        raise ValueError(f"{key} must be a non-empty list of day names, got {names!r}")
    days: set[int] = set()
    for name in names:
        day = name.strip().lower() if isinstance(name, str) else None
        if day not in WEEKDAYS:
            raise ValueError(f"{key}: unknown day {name!r} (use {', '.join(WEEKDAYS)})")
        days.add(WEEKDAYS.index(day))
    return frozenset(days)


def parse_time_of_day(text: Any, *, key: str = "time", allow_24: bool = False) -> time:
    """ "HH:mm" as a time; "24:00" (end times only) becomes END_OF_DAY."""
    parsed = _CLOCK.match(text) if isinstance(text, str) else None
    if parsed is not None:
        hour, minute = int(parsed["hour"]), int(parsed["minute"])
        if allow_24 and (hour, minute) == (24, 0):
            return END_OF_DAY
        if hour < 24 and minute < 60:
            return time(hour, minute)
    allowed = '"HH:mm" or "24:00"' if allow_24 else '"HH:mm"'
    raise ValueError(f"{key} must be {allowed}, got {text!r}")


def _inside(window: SendingWindow, day: date, clock: time) -> bool:
    if window.start < window.end:
        return day.weekday() in window.days and window.start <= clock < window.end
    # Crosses midnight (or lasts 24 hours): the early-morning part belongs to the previous day's window.
    if clock >= window.start:
        return day.weekday() in window.days
    return clock < window.end and (day - timedelta(days=1)).weekday() in window.days


def _resolve_local(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The first instant at which the clock in `zone` reads at least `clock` on `day`, in UTC."""
    wall = datetime.combine(day, clock)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second or first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # unique, or ambiguous and fold=0 is the first occurrence
    # In a gap the two folds land either side of the change; the change itself is the answer.
    return _find_offset_change(zone, min(first, second), max(first, second))


def _offset_changes(zone: ZoneInfo, begin: datetime, until: datetime) -> list[datetime]:
    changes = []
    probe = begin
    while probe < until:
        after = probe + _OFFSET_PROBE
        if probe.astimezone(zone).utcoffset() != after.astimezone(zone).utcoffset():
            changes.append(_find_offset_change(zone, probe, after))
        probe = after
    return changes


def _find_offset_change(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in (before, after] whose UTC offset differs from `before`'s; zones change
    offset on whole seconds."""
    offset = before.astimezone(zone).utcoffset()
    low, high = 0, math.ceil((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return (before + timedelta(seconds=high)).replace(microsecond=0)


def _check_window(days: frozenset[int], start: time, end: time, timezone: str) -> None:
    if not days or not days <= ALL_DAYS:
        raise ValueError(f"window days must be a non-empty set of 0 (Monday) to 6 (Sunday), got {days!r}")
    for name, clock in (("start", start), ("end", end)):
        if clock.tzinfo is not None or clock.second or clock.microsecond:
            raise ValueError(f"window {name} must be a naive time in whole minutes, got {clock!r}")
    _zone_or_raise(timezone)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {moment.isoformat()}")
    return moment


def _zone_or_raise(name: str) -> ZoneInfo:
    zone = _zone(name)
    if zone is None:
        raise ValueError(f"unknown IANA time zone {name!r}")
    return zone


def _zone(name: object) -> ZoneInfo | None:
    """The zone called `name`, or None for anything that is not one (subscriber data can hold anything)."""
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
