"""Recurring series (``schedule_type: RECURRING``, contract section 12): when they fire, and the
WINDOW each firing's run gets.

A series is a Quartz expression (``config.quartz``, the parser of maintenance schedules), read
on a wall clock: the console's (``schedule_args.timezone``, default UTC) or, with ``time_type:
device``, each device's own. Each firing makes one run, a WINDOW operation over
``[firing, firing + duration_minutes)`` that ``operations.windows`` and the fan-out already read
in each device's zone (DST included), so a device-time series needs nothing of its own per
device: its firings are wall-clock times, kept as UTC values of that wall clock (as a device
WINDOW keeps its datetimes), and the run is made before the first zone reaches that wall time.

This module only computes; ``operations.series`` makes the runs.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from config.errors import DomainError
from config.quartz import QuartzError, QuartzExpression
from operations.choices import TimeType
from operations.windows import Window

UTC = dt.UTC
DEFAULT_DURATION_MINUTES = 60
MAX_DURATION_MINUTES = 1440
#: The zone furthest ahead of UTC (UTC+14, Kiritimati) reaches a wall time this much before UTC
#: does: a device-time run is made that early, so every device's window is there in time.
AHEAD_OF_UTC = dt.timedelta(hours=14)
#: The zone furthest behind (UTC-12) reaches it this much after UTC: until then a late run of a
#: device-time firing still opens somewhere.
BEHIND_UTC = dt.timedelta(hours=12)
#: How many upcoming firings the API shows.
UPCOMING = 3


def parse_expression(text: str, field: str = "schedule_args.time_expression") -> QuartzExpression:
    """The expression, or a 400 naming ``field`` and the part at fault. An expression that
    never fires again is refused too: a series that silently never runs is a mistake."""
    try:
        expression = QuartzExpression.parse(text)
    except QuartzError as err:
        raise DomainError({field: [f"{err.field}: {err.message}"]}, code="invalid_time_expression") from None
    reason = expression.never_fires_reason(dt.datetime.now(UTC))
    if reason is not None:
        raise DomainError({field: [reason]}, code="invalid_time_expression")
    return expression


@dataclass(frozen=True)
class Series:
    """A series as its validated ``schedule_args`` say."""

    expression: QuartzExpression
    duration: dt.timedelta
    time_type: str
    console_zone: str
    start: dt.datetime | None
    end: dt.datetime | None
    max_runs: int | None

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> Series:
        """From ``schedule_args`` as the serializer stored them. A device-time series keeps its
        bounds as wall clocks, compared with firings as UTC values of the same wall clock."""
        time_type = args.get("time_type", TimeType.CONSOLE)

        def bound(name: str) -> dt.datetime | None:
            if not args.get(name):
                return None
            moment = dt.datetime.fromisoformat(str(args[name]).replace("Z", "+00:00"))
            return moment.replace(tzinfo=UTC) if time_type == TimeType.DEVICE else moment.astimezone(UTC)

        return cls(
            expression=QuartzExpression.parse(args["time_expression"]),
            duration=dt.timedelta(minutes=int(args.get("duration_minutes") or DEFAULT_DURATION_MINUTES)),
            time_type=time_type,
            console_zone=args.get("timezone") or "UTC",
            start=bound("start_datetime"),
            end=bound("end_datetime"),
            max_runs=args.get("max_runs"),
        )

    @property
    def device_time(self) -> bool:
        return self.time_type == TimeType.DEVICE

    def _zone(self) -> zoneinfo.ZoneInfo:
        # A device-time series fires on a wall clock kept as UTC: read the expression in UTC.
        return zoneinfo.ZoneInfo("UTC" if self.device_time else self.console_zone)

    def firings_after(self, after: dt.datetime, count: int, runs_made: int = 0) -> list[dt.datetime]:
        """Up to ``count`` firings strictly after ``after``, inside the bounds and ``max_runs``
        (``runs_made`` already made)."""
        if self.max_runs is not None:
            count = min(count, max(self.max_runs - runs_made, 0))
        if count <= 0:
            return []
        if self.start is not None and after < self.start:
            after = self.start - dt.timedelta(microseconds=1)
        fires = self.expression.next_fire_times(after, count=count, tz=self._zone())
        return [fire for fire in fires if self.end is None or fire <= self.end]

    def next_after(self, now: dt.datetime, runs_made: int = 0) -> dt.datetime | None:
        """The first firing no device has reached by ``now``: where a series starts, and where
        a resumed one goes on (firings missed while paused are skipped, not replayed). In device
        time that is the first wall clock the zone furthest ahead has not reached, so a first
        run never opens in some zones only."""
        if self.device_time:
            now = now + AHEAD_OF_UTC
        fires = self.firings_after(now, 1, runs_made)
        return fires[0] if fires else None

    def first_useful_after(self, now: dt.datetime, runs_made: int = 0) -> dt.datetime | None:
        """The first firing whose run would still open a window somewhere at ``now``: where the
        sweep goes on after an outage (a firing whose window closed everywhere is skipped)."""
        slack = self.duration + (BEHIND_UTC if self.device_time else dt.timedelta())
        fires = self.firings_after(now - slack, 1, runs_made)
        return fires[0] if fires else None

    def still_useful(self, fire: dt.datetime, now: dt.datetime) -> bool:
        """Whether a run of ``fire`` made at ``now`` would still open a window somewhere."""
        return now < fire + self.duration + (BEHIND_UTC if self.device_time else dt.timedelta())

    def due_at(self, fire: dt.datetime) -> dt.datetime:
        """When the run of ``fire`` is made: at the firing, or, in device time, when the zone
        furthest ahead reaches its wall clock."""
        return fire - AHEAD_OF_UTC if self.device_time else fire

    def run_window(self, fire: dt.datetime) -> dict[str, Any]:
        """The run's ``schedule_args``: a WINDOW over ``[fire, fire + duration)``, written as
        ``ScheduleArgsSerializer`` writes one (the daily times filled in from the datetimes)."""
        args: dict[str, Any] = {
            "time_type": self.time_type,
            "start_datetime": fire.isoformat(),
            "end_datetime": (fire + self.duration).isoformat(),
        }
        if not self.device_time and self.console_zone != "UTC":
            args["timezone"] = self.console_zone
        window = Window.from_args(args)
        opens, closes = window.daily_times(zoneinfo.ZoneInfo(self.console_zone))
        args["window_start_time"] = opens.isoformat(timespec="seconds")
        args["window_end_time"] = closes.isoformat(timespec="seconds")
        return args


def first_firing(schedule_args: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """A series' ``next_run_at`` and ``next_due_at`` from ``now`` (when it is created, or
    approved); 400 when it has none left (its end or ``max_runs`` already reached): a series
    that never runs is a mistake."""
    series = Series.from_args(schedule_args)
    fire = series.next_after(now or dt.datetime.now(dt.UTC))
    if fire is None:
        raise DomainError(
            {"schedule_args.end_datetime": ["the series has no firing left before its end"]},
            code="never_fires",
        )
    return {"next_run_at": fire, "next_due_at": series.due_at(fire)}
