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
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
UTC = dt.UTC


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
        return self.start, self.end

    def daily_times(self, zone: zoneinfo.ZoneInfo) -> tuple[dt.time, dt.time]:
        """``window_start_time`` and ``window_end_time``: the datetimes' times of day."""
        if self.time_type == "device":
            return self.start.time().replace(tzinfo=None), self.end.time().replace(tzinfo=None)
        return self.start.astimezone(zone).time(), self.end.astimezone(zone).time()

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
    """A wall-clock time in ``zone`` as an instant (fold=0: first occurrence, gaps shift forward)."""
    aware = naive.replace(tzinfo=zone, fold=0)
    return aware.astimezone(UTC).astimezone(zone)
