"""Maintenance windows of WINDOW operations, read in the console's or each device's zone.

A window runs from ``start_datetime`` to ``end_datetime``. Within it, commands may run
each day (of ``days``, when given) between ``window_start_time`` and ``window_end_time``,
the times of day of the two datetimes. A daily window whose end is before its start
crosses midnight; equal times mean the whole day.

``time_type`` ``console`` reads everything in UTC, or in ``schedule_args.timezone`` when
the creator gives one; ``device`` reads the datetimes' wall-clock values in each device's
own zone, so one operation opens at different instants around the world. Wall times are
resolved with zoneinfo: a time in a spring-forward gap is shifted forward by the gap, and
a time that occurs twice in a fall-back overlap means its first occurrence.

Any datetime the API accepts can be read: ``9999-12-31T23:59:59Z`` is a common "no end",
and in a zone west of UTC its wall clock is an instant after year 9999, which Python's
``datetime`` cannot hold (``OverflowError``). The overall start and end are therefore kept
between :data:`EARLIEST` and :data:`LATEST`, two days inside ``datetime``'s range: every zone
can read such an instant, and a day either side of it, without overflow.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
UTC = dt.UTC
#: The first and last instants a window's bounds take: two days inside ``datetime``'s range,
#: more than any UTC offset (under 24 h) plus the day before and after that ``next_opening`` reads.
EARLIEST = dt.datetime.min.replace(tzinfo=UTC) + dt.timedelta(days=2)
LATEST = dt.datetime.max.replace(tzinfo=UTC) - dt.timedelta(days=2)


@dataclass(frozen=True)
class Window:
    start: dt.datetime  # aware, as given
    end: dt.datetime
    days: frozenset[int]  # weekday() numbers; empty = every day
    time_type: str
    console_zone: str = "UTC"

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Window:
        """From validated ``schedule_args`` (see the operation serializer)."""
        start = dt.datetime.fromisoformat(args["start_datetime"].replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(args["end_datetime"].replace("Z", "+00:00"))
        days = frozenset(DAYS.index(day) for day in args.get("days") or ())
        return cls(start, end, days, args.get("time_type", "console"), args.get("timezone") or "UTC")

    def zone_for(self, device_zone: str) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(device_zone if self.time_type == "device" else self.console_zone)

    def bounds(self, zone: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """The overall start and end as instants for a reader in ``zone``."""
        if self.time_type == "device":
            return _wall(self.start.replace(tzinfo=None), zone), _wall(self.end.replace(tzinfo=None), zone)
        return _within_range(self.start), _within_range(self.end)

    def daily_times(self, zone: zoneinfo.ZoneInfo) -> tuple[dt.time, dt.time]:
        """``window_start_time`` and ``window_end_time``: the datetimes' times of day."""
        if self.time_type == "device":
            return self.start.time().replace(tzinfo=None), self.end.time().replace(tzinfo=None)
        return _time_of_day(self.start, zone), _time_of_day(self.end, zone)

    def next_opening(self, zone_name: str, after: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        """The first daily window that has not closed by ``after``: (opens, closes) in UTC."""
        zone = self.zone_for(zone_name)
        start, end = self.bounds(zone)
        if end <= after:
            return None
        opens_at, closes_at = self.daily_times(zone)
        day = max(start, after).astimezone(zone).date() - dt.timedelta(days=1)
        last_day = end.astimezone(zone).date()
        while day <= last_day:
            if not self.days or day.weekday() in self.days:
                opening = _wall(dt.datetime.combine(day, opens_at), zone)
                close_day = day if opens_at < closes_at else day + dt.timedelta(days=1)
                closing = _wall(dt.datetime.combine(close_day, closes_at), zone)
                opening, closing = max(opening, start), min(closing, end)
                if closing > after and opening < closing:
                    return opening.astimezone(UTC), closing.astimezone(UTC)
            day += dt.timedelta(days=1)
        return None


def _wall(naive: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A wall-clock time in ``zone`` as an instant (fold=0: first occurrence, gaps shift forward),
    kept between :data:`EARLIEST` and :data:`LATEST`.

    A wall clock within a day of year 1 or year 9999 may be an instant outside them
    (``9999-12-31 23:59:59`` at UTC-12 is in year 10000 in UTC): that is past the range's end.
    """
    aware = naive.replace(tzinfo=zone, fold=0)
    try:
        instant = aware.astimezone(UTC)
    except OverflowError:
        instant = LATEST if naive.year == dt.MAXYEAR else EARLIEST
    return _within_range(instant).astimezone(zone)


def _within_range(instant: dt.datetime) -> dt.datetime:
    """``instant`` moved into [:data:`EARLIEST`, :data:`LATEST`] (comparing aware datetimes
    never overflows; converting them may)."""
    return min(max(instant, EARLIEST), LATEST).astimezone(UTC)


def _time_of_day(instant: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.time:
    """The time of day of ``instant`` in ``zone``, also where that day is after year 9999 or
    before year 1 (``9999-12-31T23:59:59Z`` in Kiritimati, UTC+14): read two days nearer the
    middle of the calendar (two offsets, the instant's own and ``zone``'s, are each under a
    day), the same time of day unless ``zone`` changes its offset in those days."""
    try:
        return instant.astimezone(zone).time()
    except OverflowError:
        step = dt.timedelta(days=-2 if instant > EARLIEST else 2)
        return (instant + step).astimezone(zone).time()
