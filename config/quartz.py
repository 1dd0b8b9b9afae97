"""Quartz cron expressions: parsing, validation, matching and next fire times.

Why this module exists: operators enter schedules in the Quartz Scheduler / AWS dialect
(``sec min hour day-of-month month day-of-week [year]``, day-of-week 1 = Sunday, ``?``, ``L``,
``W`` and ``#``).  No maintained PyPI library covers that dialect fully (croniter and cronsim use
unix numbering and field order, the Quartz-specific packages are unmaintained or validate only),
so this is a small, dependency-free implementation written against the Quartz documentation.

Supported syntax (names and letters are case-insensitive):

* ``*`` everything, ``a`` single value, ``a-b`` range, ``a,b`` list, ``a/n`` from ``a`` every ``n``,
  ``*/n`` and ``a-b/n``.  Ranges may wrap around like in Quartz (``22-2`` hours, ``FRI-MON``);
  year ranges cannot wrap.
* Month names JAN-DEC, day-of-week names SUN-SAT (1 = SUN ... 7 = SAT).
* ``?`` in exactly one of day-of-month / day-of-week (Quartz does not support restricting both,
  nor leaving both unrestricted).
* Day-of-month: ``L`` (last day), ``L-n`` (n days before the last day), ``LW`` (last weekday),
  ``nW`` (weekday nearest to day n, never crossing the month boundary), ``L-nW``.
* Day-of-week: ``L`` alone (= 7 = Saturday), ``nL`` (last n-day of the month), ``n#k``
  (k-th n-day of the month, k in 1..5).
* Year 1970-2199; fire times are never searched beyond 2199.

Decisions where Quartz is vague or its behaviour is an accident of ``java.util.Calendar``:

* ``nW`` / ``L-n`` whose target day does not exist in a month (``31W`` in April, ``L-30`` in
  February) do not fire in that month, just like a plain ``31`` does not.
* Daylight saving time: expressions are evaluated on the wall clock of the requested zone.  A wall
  time that does not exist (spring-forward gap) does not fire at all that day - it is *not* moved to
  the next valid instant - and a wall time that occurs twice (fall-back overlap) fires once, at its
  first occurrence (``fold=0``).  :meth:`QuartzExpression.matches` agrees with this.
"""

from __future__ import annotations

import calendar
import datetime
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from cron_descriptor import ExpressionDescriptor, Options

__all__ = ["MAX_YEAR", "MIN_YEAR", "QuartzError", "QuartzExpression"]

MIN_YEAR = 1970
MAX_YEAR = 2199

_UTC = datetime.UTC

_FIELD_NAMES = ("seconds", "minutes", "hours", "day_of_month", "month", "day_of_week", "year")
_BOUNDS: dict[str, tuple[int, int]] = {
    "seconds": (0, 59),
    "minutes": (0, 59),
    "hours": (0, 23),
    "day_of_month": (1, 31),
    "month": (1, 12),
    "day_of_week": (1, 7),
    "year": (MIN_YEAR, MAX_YEAR),
}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# In messages; not calendar.month_name, which follows the process's locale.
_MONTH_FULL_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_NAMES: dict[str, dict[str, int]] = {
    "month": {name: index + 1 for index, name in enumerate(_MONTH_NAMES)},
    "day_of_week": {name: index + 1 for index, name in enumerate(_DAY_NAMES)},
}

_ALLOWED_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*,-/?#")
_ITEM_RE = re.compile(
    r"^(?:(?P<star>\*)|(?P<start>[0-9]+|[A-Z]+)(?:-(?P<end>[0-9]+|[A-Z]+))?)(?:/(?P<step>[0-9]*))?$"
)
_DOM_LAST_RE = re.compile(r"^L(?:-(?P<offset>[0-9]+))?(?P<w>W)?$")
_DOM_WEEKDAY_RE = re.compile(r"^(?P<day>[0-9]+)W$")
_DOW_LAST_RE = re.compile(r"^(?P<day>[0-9]+|[A-Z]+)L$")
_DOW_NTH_RE = re.compile(r"^(?P<day>[0-9]+|[A-Z]+)#(?P<nth>[0-9]*)$")

_SECONDS_REASON_MULTI = (
    "seconds field '{raw}' fires more than once a minute; "
    "the scheduler runs at most once per minute at second 0"
)
_SECONDS_REASON_SINGLE = (
    "seconds field '{raw}' fires at second {second}; only second 0 is supported "
    "(the scheduler runs at most once per minute at second 0)"
)
# Month lengths celery's crontab validates day_of_month against (February may have 29 days).
_CRONTAB_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class QuartzError(ValueError):
    """A Quartz cron expression is invalid.

    ``field`` names the offending part ("seconds", "minutes", "hours", "day_of_month", "month",
    "day_of_week", "year", or "expression" for problems with the whole string) so a form can attach
    the error to the right place; ``str(err)`` is ``"<field>: <message>"`` for humans.
    """

    field: str
    message: str

    def __init__(self, field: str, message: str) -> None:
        # Both parts go to ValueError so the exception pickles (celery results, multiprocessing).
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _weekday(d: datetime.date) -> int:
    """Quartz day-of-week of ``d``: 1 = Sunday ... 7 = Saturday."""
    return d.isoweekday() % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, last_day: int) -> int:
    """Quartz ``W``: the Monday-Friday closest to ``day``, staying inside the month."""
    weekday = _weekday(datetime.date(year, month, day))
    if weekday == 7:  # Saturday: Friday before, unless that is in the previous month.
        return day + 2 if day == 1 else day - 1
    if weekday == 1:  # Sunday: Monday after, unless that is in the next month.
        return day - 2 if day == last_day else day + 1
    return day


def _compact(values: frozenset[int], low: int, high: int, shift: int = 0) -> str:
    """Render a value set as a crontab list (``*``, ``a-b`` runs, commas); ``shift`` renumbers."""
    if values == frozenset(range(low, high + 1)):
        return "*"
    ordered = sorted(value + shift for value in values)
    parts: list[str] = []
    index = 0
    while index < len(ordered):
        end = index
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        if end - index >= 2:
            parts.append(f"{ordered[index]}-{ordered[end]}")
        else:
            parts.extend(str(value) for value in ordered[index : end + 1])
        index = end + 1
    return ",".join(parts)


def _parse_value(field: str, text: str, item: str) -> int:
    """One number or name of ``field``, range-checked."""
    low, high = _BOUNDS[field]
    if text.isdigit():
        value = int(text)
    else:
        names = _NAMES.get(field)
        if names is None:
            raise QuartzError(field, f"unexpected text '{text}' in '{item}'; this field only takes numbers")
        if text not in names:
            expected = ", ".join(names)
            raise QuartzError(field, f"unknown name '{text}'; expected one of {expected} (or {low}-{high})")
        value = names[text]
    if not low <= value <= high:
        raise QuartzError(field, f"value {value} out of range {low}-{high}")
    return value


def _parse_item(field: str, item: str) -> frozenset[int]:
    """One comma-separated element: ``*``, ``a``, ``a-b``, with optional ``/step``."""
    low, high = _BOUNDS[field]
    if item == "":
        raise QuartzError(field, "empty list element (check for doubled or trailing commas)")
    if "?" in item:
        if field in ("day_of_month", "day_of_week"):
            raise QuartzError(field, f"'?' must stand alone in the field, got '{item}'")
        raise QuartzError(field, "'?' is only allowed in day_of_month or day_of_week")
    match = _ITEM_RE.match(item)
    if match is None:
        raise QuartzError(
            field, f"cannot understand '{item}'; expected a value, a range a-b, a step a/n or */n, or a list"
        )
    step_text = match.group("step")
    step = 1
    if step_text is not None:
        # Quartz caps the increment at the field's maximum (59 for seconds, 7 for day-of-week, ...).
        max_step = high - low if field == "year" else high
        if step_text == "":
            raise QuartzError(field, f"'/' must be followed by a number in '{item}'")
        step = int(step_text)
        if not 1 <= step <= max_step:
            raise QuartzError(field, f"step {step} in '{item}' must be between 1 and {max_step}")
    if match.group("star"):
        return frozenset(range(low, high + 1, step))
    start = _parse_value(field, match.group("start"), item)
    end_text = match.group("end")
    if end_text is None:
        # "a/n" runs from a to the field maximum; a bare "a" is just a.
        end = high if step_text is not None else start
    else:
        end = _parse_value(field, end_text, item)
    if end >= start:
        return frozenset(range(start, end + 1, step))
    if field == "year":
        raise QuartzError(field, f"range {start}-{end} is reversed; year ranges cannot wrap around")
    # Quartz wrap-around ranges: 22-2 hours is 22,23,0,1,2; FRI-MON is 6,7,1,2.
    span = high - low + 1
    return frozenset(low + (value - low) % span for value in range(start, end + span + 1, step))


def _check_specials(field: str, text: str) -> None:
    """Explain a misplaced ``L``/``W``/``#`` precisely instead of failing with a generic message.

    Called for fields (or day fields whose special forms did not match) that must be plain lists.
    """
    for char in text:
        if char not in _ALLOWED_CHARS:
            raise QuartzError(field, f"unexpected character '{char}' in '{text}'")
    if "#" in text:
        if field == "day_of_week":
            raise QuartzError(
                field,
                f"'#' must be used alone as day#occurrence (like '6#3'), not in a list or range: '{text}'",
            )
        raise QuartzError(field, "'#' is only allowed in day_of_week (like '6#3')")
    for run in re.findall(r"[A-Z]+", text):
        if run in _NAMES.get(field, {}):
            continue
        if field == "day_of_month" and "W" in run:
            raise QuartzError(
                field,
                f"'W' must follow a single day (like '15W') or 'L' (as 'LW'), not a list or range: '{text}'",
            )
        if field == "day_of_month" and "L" in run:
            raise QuartzError(
                field, f"'L' must be used alone ('L', 'L-3', 'LW'), not with other days: '{text}'"
            )
        if field == "day_of_week" and (run == "L" or (run.endswith("L") and run[:-1] in _NAMES[field])):
            raise QuartzError(
                field, f"'L' must be used alone ('L' or like '6L'), not with other days: '{text}'"
            )
        if field not in ("day_of_month", "day_of_week") and run in ("L", "LW"):
            raise QuartzError(field, "'L' is only allowed in day_of_month or day_of_week")
        if field != "day_of_month" and run == "W":
            raise QuartzError(field, "'W' is only allowed in day_of_month")


def _parse_list(field: str, text: str) -> frozenset[int]:
    """A whole plain field: comma-separated items, union of their values."""
    _check_specials(field, text)
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(field, item)
    return frozenset(values)


@dataclass(frozen=True)
class QuartzExpression:
    """A parsed Quartz cron expression; build it with :meth:`parse`.

    Time fields are plain value sets.  The day rules keep the Quartz specials explicitly because
    they depend on the month being looked at:

    * ``days_of_month`` is ``None`` when day-of-month is ``?``; otherwise it holds the plain day set
      (``*`` = 1..31), the single day of ``nW``, or is empty for ``L``-forms.
    * ``last_day_offset`` is set for ``L`` (0) and ``L-n`` (n); ``nearest_weekday`` marks ``W``.
    * ``days_of_week`` is ``None`` when day-of-week is ``?``; otherwise the plain set (``*`` = 1..7,
      1 = Sunday) or the single day used by ``nL`` / ``n#k``.
    * ``last_weekday_in_month`` marks ``nL``; ``nth_weekday`` is ``k`` for ``n#k``.
    """

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int] | None
    days_of_month: frozenset[int] | None
    last_day_offset: int | None
    nearest_weekday: bool
    days_of_week: frozenset[int] | None
    last_weekday_in_month: bool
    nth_weekday: int | None

    # ------------------------------------------------------------------ parsing

    @classmethod
    def parse(cls, expression: str) -> QuartzExpression:
        """Parse and validate ``expression``; raise :class:`QuartzError` naming the bad field."""
        parts = expression.upper().split()
        if not parts:
            raise QuartzError("expression", "the expression is empty")
        if len(parts) not in (6, 7):
            raise QuartzError(
                "expression",
                f"expected 6 or 7 fields separated by spaces (seconds minutes hours day-of-month month "
                f"day-of-week [year]), got {len(parts)}",
            )
        fields = dict(zip(_FIELD_NAMES, parts, strict=False))  # the year is optional
        seconds = _parse_list("seconds", fields["seconds"])
        minutes = _parse_list("minutes", fields["minutes"])
        hours = _parse_list("hours", fields["hours"])
        dom_text = fields["day_of_month"]
        dom_values, last_offset, nearest = cls._parse_day_of_month(dom_text)
        months = _parse_list("month", fields["month"])
        dow_text = fields["day_of_week"]
        dow_values, last_weekday, nth = cls._parse_day_of_week(dow_text)
        years = _parse_list("year", fields["year"]) if "year" in fields else None

        dom_unspecified = dom_text == "?"
        dow_unspecified = dow_text == "?"
        if dom_unspecified and dow_unspecified:
            raise QuartzError(
                "day_of_week",
                "'?' cannot be used in both day_of_month and day_of_week; put '?' in exactly one",
            )
        if not dom_unspecified and not dow_unspecified:
            raise QuartzError(
                "day_of_week",
                f"day_of_month '{dom_text}' and day_of_week '{dow_text}' are both given; Quartz does not "
                "support restricting both, put '?' in one of them",
            )
        return cls(
            expression=expression,
            seconds=seconds,
            minutes=minutes,
            hours=hours,
            months=months,
            years=years,
            days_of_month=dom_values,
            last_day_offset=last_offset,
            nearest_weekday=nearest,
            days_of_week=dow_values,
            last_weekday_in_month=last_weekday,
            nth_weekday=nth,
        )

    @staticmethod
    def _parse_day_of_month(text: str) -> tuple[frozenset[int] | None, int | None, bool]:
        """Day-of-month field -> (day set or None for '?', L offset, W flag)."""
        field = "day_of_month"
        if text == "?":
            return None, None, False
        last = _DOM_LAST_RE.match(text)
        if last is not None:
            offset = int(last.group("offset")) if last.group("offset") is not None else 0
            if offset > 30:
                raise QuartzError(field, f"offset {offset} in '{text}' is too large; 'L-n' allows n up to 30")
            return frozenset(), offset, last.group("w") is not None
        weekday = _DOM_WEEKDAY_RE.match(text)
        if weekday is not None:
            day = int(weekday.group("day"))
            if not 1 <= day <= 31:
                raise QuartzError(field, f"value {day} out of range 1-31 in '{text}'")
            return frozenset({day}), None, True
        if text.startswith("L-") and "," not in text:
            raise QuartzError(field, f"'{text}' is not valid; use 'L-n' with n a number of days (like 'L-3')")
        return _parse_list(field, text), None, False

    @staticmethod
    def _parse_day_of_week(text: str) -> tuple[frozenset[int] | None, bool, int | None]:
        """Day-of-week field -> (day set or None for '?', last-in-month flag, #occurrence)."""
        field = "day_of_week"
        if text == "?":
            return None, False, None
        if text == "L":  # Quartz: a lone L in day-of-week is simply 7 = Saturday.
            return frozenset({7}), False, None
        last = _DOW_LAST_RE.match(text)
        if last is not None:
            day = _parse_value(field, last.group("day"), text)
            return frozenset({day}), True, None
        nth = _DOW_NTH_RE.match(text)
        if nth is not None:
            day = _parse_value(field, nth.group("day"), text)
            nth_text = nth.group("nth")
            if not nth_text or not 1 <= int(nth_text) <= 5:
                shown = nth_text or "nothing"
                raise QuartzError(
                    field, f"'#' must be followed by an occurrence 1-5 in '{text}', got {shown}"
                )
            return frozenset({day}), False, int(nth_text)
        return _parse_list(field, text), False, None

    # ------------------------------------------------------------------ matching

    def _days_in_month(self, year: int, month: int) -> list[int]:
        """Sorted days of ``year``-``month`` allowed by the day-of-month / day-of-week rule."""
        last_day = calendar.monthrange(year, month)[1]
        if self.days_of_month is not None:
            if self.last_day_offset is not None:
                target = last_day - self.last_day_offset
                if target < 1:
                    return []
                if self.nearest_weekday:
                    target = _nearest_weekday(year, month, target, last_day)
                return [target]
            if self.nearest_weekday:
                (day,) = self.days_of_month
                return [_nearest_weekday(year, month, day, last_day)] if day <= last_day else []
            return sorted(day for day in self.days_of_month if day <= last_day)
        assert self.days_of_week is not None  # parse() guarantees exactly one side is '?'
        first_weekday = _weekday(datetime.date(year, month, 1))
        if self.last_weekday_in_month:
            (weekday,) = self.days_of_week
            last_weekday = (first_weekday - 1 + last_day - 1) % 7 + 1
            return [last_day - (last_weekday - weekday) % 7]
        if self.nth_weekday is not None:
            (weekday,) = self.days_of_week
            day = 1 + (weekday - first_weekday) % 7 + 7 * (self.nth_weekday - 1)
            return [day] if day <= last_day else []
        return [
            day
            for day in range(1, last_day + 1)
            if (first_weekday - 1 + day - 1) % 7 + 1 in self.days_of_week
        ]

    def matches_date(self, d: datetime.date) -> bool:
        """Whether the year, month and day rules allow date ``d`` (time of day is not considered)."""
        if self.years is not None and d.year not in self.years:
            return False
        if d.month not in self.months:
            return False
        return d.day in self._days_in_month(d.year, d.month)

    def matches(self, t: datetime.datetime) -> bool:
        """Whether the expression fires at ``t`` (to the second), evaluated on ``t``'s own wall clock.

        Consistent with :meth:`next_fire_times`: the second occurrence of a repeated wall time and
        wall times inside a DST gap do not match.  Used as a guard when a coarser scheduler (a
        superset crontab) wakes up.
        """
        zone = t.tzinfo
        if zone is None or t.utcoffset() is None:
            raise ValueError("matches() needs an aware datetime")
        if t.second not in self.seconds or t.minute not in self.minutes or t.hour not in self.hours:
            return False
        if not self.matches_date(t.date()):
            return False
        wall = t.replace(tzinfo=None, microsecond=0, fold=0)
        fire = _resolve(wall, zone)
        return fire is not None and fire == t.replace(microsecond=0).astimezone(_UTC)

    # ------------------------------------------------------------------ fire times

    def _dates_from(self, start: datetime.date) -> Iterator[datetime.date]:
        """Matching dates from ``start`` on, month by month (non-matching months cost one check)."""
        last_year = MAX_YEAR if self.years is None else min(MAX_YEAR, max(self.years))
        months = sorted(self.months)
        for year in range(max(start.year, MIN_YEAR), last_year + 1):
            if self.years is not None and year not in self.years:
                continue
            for month in months:
                if (year, month) < (start.year, start.month):
                    continue
                for day in self._days_in_month(year, month):
                    candidate = datetime.date(year, month, day)
                    if candidate >= start:
                        yield candidate

    def _times_from(self, lower: tuple[int, int, int] | None) -> Iterator[datetime.time]:
        """Allowed times of day in order, starting at ``lower`` (h, m, s) when given."""
        minutes = sorted(self.minutes)
        seconds = sorted(self.seconds)
        low_hour, low_minute, low_second = lower if lower is not None else (-1, -1, -1)
        for hour in sorted(self.hours):
            if hour < low_hour:
                continue
            for minute in minutes:
                if hour == low_hour and minute < low_minute:
                    continue
                for second in seconds:
                    if hour == low_hour and minute == low_minute and second < low_second:
                        continue
                    yield datetime.time(hour, minute, second)

    def next_fire_times(
        self, after: datetime.datetime, count: int = 5, tz: datetime.tzinfo | None = None
    ) -> list[datetime.datetime]:
        """Up to ``count`` fire instants strictly after ``after``, as aware UTC datetimes.

        The expression is read on the wall clock of ``tz`` (default UTC), which is what a human
        means by "04:00 every day" in their zone.  The search walks matching dates month by month
        and only enumerates times of day on matching dates, so sparse schedules stay cheap; it
        stops at year 2199 (the end of the Quartz year range), so an expression that never fires
        again returns fewer results instead of looping.  DST: nonexistent wall times are skipped,
        repeated wall times fire once at their first occurrence.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("next_fire_times() needs an aware datetime for 'after'")
        if count < 0:
            raise ValueError("count must not be negative")
        zone = tz if tz is not None else _UTC
        after_utc = after.astimezone(_UTC)
        wall_after = after_utc.astimezone(zone).replace(tzinfo=None)
        start_day = wall_after.date()
        lower = (wall_after.hour, wall_after.minute, wall_after.second)
        results: list[datetime.datetime] = []
        if count == 0:
            return results
        for day in self._dates_from(start_day):
            for time_of_day in self._times_from(lower if day == start_day else None):
                fire = _resolve(datetime.datetime.combine(day, time_of_day), zone)
                # "<=" also drops first occurrences already passed when 'after' is in a repeated hour.
                if fire is None or fire <= after_utc:
                    continue
                results.append(fire)
                if len(results) == count:
                    return results
        return results

    def next_fire_time(
        self, after: datetime.datetime, tz: datetime.tzinfo | None = None
    ) -> datetime.datetime | None:
        """The first fire instant strictly after ``after`` (UTC), or ``None`` if it never fires again."""
        fires = self.next_fire_times(after, count=1, tz=tz)
        return fires[0] if fires else None

    def shortest_gap(self, after: datetime.datetime) -> datetime.timedelta | None:
        """The shortest time between two consecutive fires from ``after``'s day on (UTC), or
        ``None`` when it fires on one day only with one time of day.

        How often a schedule may run is decided by this (a full build every minute is refused),
        so it is exact rather than sampled: every day it fires has the same times of day, so
        the gaps are those between its times of day and, across midnight, ``k`` days minus the
        last time plus the first, ``k`` the fewest days between two days it fires. Those days
        are walked only when they could give the shortest gap, and only until two are adjacent.
        """
        times = sorted(
            datetime.timedelta(hours=hour, minutes=minute, seconds=second)
            for hour in self.hours
            for minute in self.minutes
            for second in self.seconds
        )
        within = min((b - a for a, b in itertools.pairwise(times)), default=None)
        overnight = datetime.timedelta(days=1) - times[-1] + times[0]
        if within is not None and within <= overnight:
            return within
        fewest_days: int | None = None
        previous: datetime.date | None = None
        for day in self._dates_from(after.astimezone(_UTC).date()):
            if previous is not None:
                days = (day - previous).days
                fewest_days = days if fewest_days is None else min(fewest_days, days)
                if fewest_days == 1:
                    break
            previous = day
        if fewest_days is None:
            return within
        across = overnight + datetime.timedelta(days=fewest_days - 1)
        return across if within is None else min(within, across)

    def never_fires_reason(self, after: datetime.datetime, tz: datetime.tzinfo | None = None) -> str | None:
        """Why the expression has no fire after ``after``, or ``None`` when it fires again.

        The search is :meth:`next_fire_time`'s, bounded by year 2199; a refusal then explains
        the likely cause: days no selected month has (``30 FEB``), or years already past.
        """
        if self.next_fire_time(after, tz) is not None:
            return None
        missing = self._missing_days()
        if missing is not None:
            return f"never fires: {missing}"
        year = after.astimezone(tz or _UTC).year
        if self.years is not None and max(self.years) < year:
            return f"never fires again: its last year, {max(self.years)}, is past"
        last_year = MAX_YEAR if self.years is None else min(MAX_YEAR, max(self.years))
        return f"never fires after {after:%Y-%m-%d}: no fire time up to the end of {last_year}"

    def _missing_days(self) -> str | None:
        """ "February has no day 30" when the day-of-month rule picks no day of any selected
        month in any year (February taken with its 29 days), else ``None``."""
        if self.days_of_month is None:
            return None
        months = sorted(self.months)
        longest = {month: _CRONTAB_MONTH_DAYS[month - 1] for month in months}
        if self.last_day_offset is not None:
            offset = self.last_day_offset
            if any(longest[month] - offset >= 1 for month in months):
                return None
            what = f"day {offset} days before its last"
        else:
            if any(day <= longest[month] for month in months for day in self.days_of_month):
                return None
            what = "day " + _english([str(day) for day in sorted(self.days_of_month)], "or")
        names = [_MONTH_FULL_NAMES[month - 1] for month in months]
        verb = "has" if len(names) == 1 else "have"
        return f"{_english(names, 'and')} {verb} no {what}"

    # ------------------------------------------------------------------ celery beat bridge

    def unsupported_reason(self) -> str | None:
        """Why a minute-resolution scheduler (celery beat) cannot honour this expression, or ``None``.

        Beat wakes at most once a minute, at second 0; anything else in the seconds field would be
        silently approximated, so it is refused instead.
        """
        if self.seconds == frozenset({0}):
            return None
        raw = self.expression.split()[0]
        if len(self.seconds) > 1:
            return _SECONDS_REASON_MULTI.format(raw=raw)
        (second,) = self.seconds
        return _SECONDS_REASON_SINGLE.format(raw=raw, second=second)

    def crontab_fields(self) -> dict[str, str] | None:
        """Fields for django-celery-beat's ``CrontabSchedule``, or ``None`` if unsupported.

        Returns ``None`` exactly when :meth:`unsupported_reason` gives a reason.  Otherwise the
        crontab fires on every true fire (minute, hour, day, month; celery day_of_week 0 = Sunday).
        It is exact for plain fields; for what a crontab cannot say (``L``, ``W``, ``nL``, years) it
        is the tightest simple superset - celery requires day_of_month AND day_of_week to match, so
        e.g. ``6L`` becomes Fridays on days 22-31 - and the caller must guard with :meth:`matches`.
        """
        if self.unsupported_reason() is not None:
            return None
        day_of_week = "*"
        dom_days = frozenset(range(1, 32))
        if self.days_of_month is not None:
            if self.last_day_offset is not None:
                offset = self.last_day_offset
                # The last day is 28..31; W may then move the target up to 2 days either way.
                slack = 2 if self.nearest_weekday else 0
                dom_days = frozenset(range(max(1, 28 - offset - slack), min(31, 31 - offset + slack) + 1))
            elif self.nearest_weekday:
                (day,) = self.days_of_month
                dom_days = frozenset(range(max(1, day - 2), min(31, day + 2) + 1))
            else:
                dom_days = self.days_of_month
            if self.nearest_weekday:
                day_of_week = "1-5"
        else:
            assert self.days_of_week is not None
            day_of_week = _compact(self.days_of_week, 1, 7, shift=-1)
            if self.last_weekday_in_month:
                dom_days = frozenset(range(22, 32))
            elif self.nth_weekday is not None:
                dom_days = frozenset(range(7 * self.nth_weekday - 6, min(31, 7 * self.nth_weekday) + 1))
        if not any(day <= _CRONTAB_MONTH_DAYS[month - 1] for month in self.months for day in dom_days):
            # Never fires (e.g. 30 FEB); celery refuses such a crontab, and any superset is correct.
            dom_days = frozenset(range(1, 32))
        return {
            "minute": _compact(self.minutes, 0, 59),
            "hour": _compact(self.hours, 0, 23),
            "day_of_week": day_of_week,
            "day_of_month": _compact(dom_days, 1, 31),
            "month_of_year": _compact(self.months, 1, 12),
        }


def _english(items: list[str], conjunction: str) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def _resolve(wall: datetime.datetime, zone: datetime.tzinfo) -> datetime.datetime | None:
    """UTC instant of naive wall time ``wall`` in ``zone``: first occurrence, ``None`` if skipped by DST."""
    fire = wall.replace(tzinfo=zone, fold=0).astimezone(_UTC)
    if fire.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return fire


_DESCRIBED_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# A Quartz day-of-week number (1 = SUN ... 7 = SAT) that is a day, not a '#' occurrence or a '/' step.
_DESCRIBED_DAY_NUMBER = re.compile(r"(?<![/#\d])([1-7])(?!\d)")


def describe(time_expression: str) -> str:
    """A human sentence for a Quartz expression, e.g. "At 00:00, only on Monday".

    cron_descriptor numbers days from 0 = Sunday unless told otherwise, and its one-based
    mode shifts digits but not names, so Quartz day numbers are rewritten as names first:
    names mean the same in every numbering. A lone ``L`` there is Saturday in Quartz.
    """
    try:
        QuartzExpression.parse(time_expression)
    except QuartzError as err:
        return f"invalid: {err}"
    parts = time_expression.upper().split()
    day_of_week = "SAT" if parts[5] == "L" else parts[5]
    parts[5] = _DESCRIBED_DAY_NUMBER.sub(
        lambda match: _DESCRIBED_DAY_NAMES[int(match.group(1)) - 1], day_of_week
    )
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        return str(ExpressionDescriptor(" ".join(parts), options).get_description())
    except Exception:  # cron_descriptor raises bare Exceptions on forms it does not know
        return time_expression
