"""Tests for config.quartz (pure Python, no Django needed).

Expected fire times were worked out by hand from the calendar (reference instant REF is Wednesday
2025-01-15 10:20:30 UTC) and are written out literally; they are never produced by the module.  On top
of that, an independent brute-force oracle (plain date arithmetic, no parsing) cross-checks the day
rules and the fire-time search.
"""

from __future__ import annotations

import datetime
import itertools
import pickle
import time
import zoneinfo
from collections.abc import Callable

import pytest

from config.quartz import QuartzError, QuartzExpression

UTC = datetime.UTC
REF = datetime.datetime(2025, 1, 15, 10, 20, 30, tzinfo=UTC)  # a Wednesday
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


def utc(text: str) -> datetime.datetime:
    """'2025-01-16T04:00:00' read as UTC."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


# (expression, after (None = REF), zone (None = UTC), expected next 3 fire times in UTC)
VALID: list[tuple[str, str | None, zoneinfo.ZoneInfo | None, list[str]]] = [
    # --- plain fields
    ("0 0 4 * * ?", None, None, ["2025-01-16T04:00:00", "2025-01-17T04:00:00", "2025-01-18T04:00:00"]),
    ("0 0 4 ? * * *", None, None, ["2025-01-16T04:00:00", "2025-01-17T04:00:00", "2025-01-18T04:00:00"]),
    ("0 0 0 ? * MON", None, None, ["2025-01-20T00:00:00", "2025-01-27T00:00:00", "2025-02-03T00:00:00"]),
    ("* * * * * ?", None, None, ["2025-01-15T10:20:31", "2025-01-15T10:20:32", "2025-01-15T10:20:33"]),
    ("0 * * * * ?", None, None, ["2025-01-15T10:21:00", "2025-01-15T10:22:00", "2025-01-15T10:23:00"]),
    ("0 0 * * * ?", None, None, ["2025-01-15T11:00:00", "2025-01-15T12:00:00", "2025-01-15T13:00:00"]),
    ("0 0 12 * * ? *", None, None, ["2025-01-15T12:00:00", "2025-01-16T12:00:00", "2025-01-17T12:00:00"]),
    (
        "  0\t0   12 *  * ?  ",
        None,
        None,
        ["2025-01-15T12:00:00", "2025-01-16T12:00:00", "2025-01-17T12:00:00"],
    ),
    ("30 20 10 * * ?", None, None, ["2025-01-16T10:20:30", "2025-01-17T10:20:30", "2025-01-18T10:20:30"]),
    ("30 59 23 L 12 ?", None, None, ["2025-12-31T23:59:30", "2026-12-31T23:59:30", "2027-12-31T23:59:30"]),
    ("0 0 0 1,15 * ?", None, None, ["2025-02-01T00:00:00", "2025-02-15T00:00:00", "2025-03-01T00:00:00"]),
    (
        "0 15,45 8-9 ? * 2-6 *",
        None,
        None,
        ["2025-01-16T08:15:00", "2025-01-16T08:45:00", "2025-01-16T09:15:00"],
    ),
    # --- steps
    ("*/15 * * * * ?", None, None, ["2025-01-15T10:20:45", "2025-01-15T10:21:00", "2025-01-15T10:21:15"]),
    ("5/20 * * * * ?", None, None, ["2025-01-15T10:20:45", "2025-01-15T10:21:05", "2025-01-15T10:21:25"]),
    ("0 0/25 * * * ?", None, None, ["2025-01-15T10:25:00", "2025-01-15T10:50:00", "2025-01-15T11:00:00"]),
    ("0 10-40/15 * * * ?", None, None, ["2025-01-15T10:25:00", "2025-01-15T10:40:00", "2025-01-15T11:10:00"]),
    ("0 0 0 5-25/10 * ?", None, None, ["2025-01-25T00:00:00", "2025-02-05T00:00:00", "2025-02-15T00:00:00"]),
    ("0 0 0 1 */3 ?", None, None, ["2025-04-01T00:00:00", "2025-07-01T00:00:00", "2025-10-01T00:00:00"]),
    ("0 0 0 ? * */2", None, None, ["2025-01-16T00:00:00", "2025-01-18T00:00:00", "2025-01-19T00:00:00"]),
    # --- wrap-around ranges
    ("0 0 22-2 * * ?", None, None, ["2025-01-15T22:00:00", "2025-01-15T23:00:00", "2025-01-16T00:00:00"]),
    ("0 0 12 ? * FRI-MON", None, None, ["2025-01-17T12:00:00", "2025-01-18T12:00:00", "2025-01-19T12:00:00"]),
    ("0 0 12 ? * 6-2", None, None, ["2025-01-17T12:00:00", "2025-01-18T12:00:00", "2025-01-19T12:00:00"]),
    ("0 0 0 1 NOV-FEB ?", None, None, ["2025-02-01T00:00:00", "2025-11-01T00:00:00", "2025-12-01T00:00:00"]),
    ("0 0 0 28-3 * ?", None, None, ["2025-01-28T00:00:00", "2025-01-29T00:00:00", "2025-01-30T00:00:00"]),
    # --- names, mixed case
    ("0 0 12 ? * mon-fri", None, None, ["2025-01-15T12:00:00", "2025-01-16T12:00:00", "2025-01-17T12:00:00"]),
    ("0 0 12 ? * Mon-Fri", None, None, ["2025-01-15T12:00:00", "2025-01-16T12:00:00", "2025-01-17T12:00:00"]),
    ("0 0 12 ? * 2-6", None, None, ["2025-01-15T12:00:00", "2025-01-16T12:00:00", "2025-01-17T12:00:00"]),
    ("0 0 9 1 jan,Jul ?", None, None, ["2025-07-01T09:00:00", "2026-01-01T09:00:00", "2026-07-01T09:00:00"]),
    ("0 0 0 ? * SUN,sat", None, None, ["2025-01-18T00:00:00", "2025-01-19T00:00:00", "2025-01-25T00:00:00"]),
    ("0 0 0 ? * 1,7", None, None, ["2025-01-18T00:00:00", "2025-01-19T00:00:00", "2025-01-25T00:00:00"]),
    # --- month lengths and leap years
    ("0 0 0 29 2 ?", None, None, ["2028-02-29T00:00:00", "2032-02-29T00:00:00", "2036-02-29T00:00:00"]),
    ("0 0 0 31 * ?", None, None, ["2025-01-31T00:00:00", "2025-03-31T00:00:00", "2025-05-31T00:00:00"]),
    # --- L / L-n / LW / nW in day-of-month
    ("0 0 0 L * ?", None, None, ["2025-01-31T00:00:00", "2025-02-28T00:00:00", "2025-03-31T00:00:00"]),
    (
        "0 0 0 L * ?",
        "2024-02-01T00:00:00",
        None,
        ["2024-02-29T00:00:00", "2024-03-31T00:00:00", "2024-04-30T00:00:00"],
    ),
    ("0 0 0 l * ?", None, None, ["2025-01-31T00:00:00", "2025-02-28T00:00:00", "2025-03-31T00:00:00"]),
    ("0 0 0 L-3 * ?", None, None, ["2025-01-28T00:00:00", "2025-02-25T00:00:00", "2025-03-28T00:00:00"]),
    ("0 0 0 L-30 * ?", None, None, ["2025-03-01T00:00:00", "2025-05-01T00:00:00", "2025-07-01T00:00:00"]),
    ("0 0 0 LW * ?", None, None, ["2025-01-31T00:00:00", "2025-02-28T00:00:00", "2025-03-31T00:00:00"]),
    ("0 0 0 LW 5,8,11 ?", None, None, ["2025-05-30T00:00:00", "2025-08-29T00:00:00", "2025-11-28T00:00:00"]),
    ("0 0 0 L-1W * ?", None, None, ["2025-01-30T00:00:00", "2025-02-27T00:00:00", "2025-03-31T00:00:00"]),
    ("0 0 0 15W * ?", None, None, ["2025-02-14T00:00:00", "2025-03-14T00:00:00", "2025-04-15T00:00:00"]),
    ("0 0 0 1W * ?", None, None, ["2025-02-03T00:00:00", "2025-03-03T00:00:00", "2025-04-01T00:00:00"]),
    ("0 0 0 30W * ?", None, None, ["2025-01-30T00:00:00", "2025-03-31T00:00:00", "2025-04-30T00:00:00"]),
    ("0 0 0 30W 11 ?", None, None, ["2025-11-28T00:00:00", "2026-11-30T00:00:00", "2027-11-30T00:00:00"]),
    ("0 0 0 31W * ?", None, None, ["2025-01-31T00:00:00", "2025-03-31T00:00:00", "2025-05-30T00:00:00"]),
    # --- L / nL / n#k in day-of-week
    ("0 0 0 ? * L", None, None, ["2025-01-18T00:00:00", "2025-01-25T00:00:00", "2025-02-01T00:00:00"]),
    ("0 0 0 ? * 6L", None, None, ["2025-01-31T00:00:00", "2025-02-28T00:00:00", "2025-03-28T00:00:00"]),
    ("0 0 0 ? * 1L", None, None, ["2025-01-26T00:00:00", "2025-02-23T00:00:00", "2025-03-30T00:00:00"]),
    ("0 0 0 ? * friL", None, None, ["2025-01-31T00:00:00", "2025-02-28T00:00:00", "2025-03-28T00:00:00"]),
    ("0 0 0 ? * 2#1", None, None, ["2025-02-03T00:00:00", "2025-03-03T00:00:00", "2025-04-07T00:00:00"]),
    ("0 0 0 ? * MON#2", None, None, ["2025-02-10T00:00:00", "2025-03-10T00:00:00", "2025-04-14T00:00:00"]),
    ("0 0 12 ? * 7#1", None, None, ["2025-02-01T12:00:00", "2025-03-01T12:00:00", "2025-04-05T12:00:00"]),
    ("0 0 0 ? * 6#5", None, None, ["2025-01-31T00:00:00", "2025-05-30T00:00:00", "2025-08-29T00:00:00"]),
    ("0 0 0 ? * 2#5", None, None, ["2025-03-31T00:00:00", "2025-06-30T00:00:00", "2025-09-29T00:00:00"]),
    ("0 0 0 ? FEB 6#5", None, None, ["2036-02-29T00:00:00", "2064-02-29T00:00:00", "2092-02-29T00:00:00"]),
    # --- year field, and expressions that stop firing
    (
        "0 0 0 1 1 ? 2030-2032",
        None,
        None,
        ["2030-01-01T00:00:00", "2031-01-01T00:00:00", "2032-01-01T00:00:00"],
    ),
    ("0 0 0 1 1 ? 2026/2", None, None, ["2026-01-01T00:00:00", "2028-01-01T00:00:00", "2030-01-01T00:00:00"]),
    ("0 0 0 1 1 ? 2027", None, None, ["2027-01-01T00:00:00"]),
    ("0 0 0 1 1 ? 2199", None, None, ["2199-01-01T00:00:00"]),
    ("0 0 0 1 1 ? 2001", None, None, []),
    ("0 0 0 30 FEB ?", None, None, []),
    ("0 0 0 31 2,4,6,9,11 ?", None, None, []),
    # --- other zones and DST (results are always UTC)
    ("0 0 9 ? * MON", None, TOKYO, ["2025-01-20T00:00:00", "2025-01-27T00:00:00", "2025-02-03T00:00:00"]),
    # Berlin spring forward 2025-03-30 02:00 CET -> 03:00 CEST: 02:30 does not exist that day.
    (
        "0 30 2 * * ?",
        "2025-03-29T12:00:00",
        BERLIN,
        ["2025-03-31T00:30:00", "2025-04-01T00:30:00", "2025-04-02T00:30:00"],
    ),
    (
        "0 0/30 1-3 * * ?",
        "2025-03-30T00:10:00",
        BERLIN,
        ["2025-03-30T00:30:00", "2025-03-30T01:00:00", "2025-03-30T01:30:00"],
    ),
    # Berlin fall back 2025-10-26 03:00 CEST -> 02:00 CET: 02:30 happens twice, fires at the first.
    (
        "0 30 2 * * ?",
        "2025-10-25T12:00:00",
        BERLIN,
        ["2025-10-26T00:30:00", "2025-10-27T01:30:00", "2025-10-28T01:30:00"],
    ),
    (
        "0 0/30 1-3 * * ?",
        "2025-10-26T00:10:00",
        BERLIN,
        ["2025-10-26T00:30:00", "2025-10-26T02:00:00", "2025-10-26T02:30:00"],
    ),
    # 'after' inside the second 02:xx hour: the first 02:30 already happened, nothing repeats.
    (
        "0 30 2 * * ?",
        "2025-10-26T01:10:00",
        BERLIN,
        ["2025-10-27T01:30:00", "2025-10-28T01:30:00", "2025-10-29T01:30:00"],
    ),
    # New York spring forward 2025-03-09 02:00 EST -> 03:00 EDT.
    (
        "0 30 2 * * ?",
        "2025-03-08T12:00:00",
        NEW_YORK,
        ["2025-03-10T06:30:00", "2025-03-11T06:30:00", "2025-03-12T06:30:00"],
    ),
    (
        "0 0 * * * ?",
        "2025-03-09T05:30:00",
        NEW_YORK,
        ["2025-03-09T06:00:00", "2025-03-09T07:00:00", "2025-03-09T08:00:00"],
    ),
    # New York fall back 2025-11-02 02:00 EDT -> 01:00 EST: 01:xx happens twice.
    (
        "0 30 1 * * ?",
        "2025-11-01T12:00:00",
        NEW_YORK,
        ["2025-11-02T05:30:00", "2025-11-03T06:30:00", "2025-11-04T06:30:00"],
    ),
    (
        "0 0 * * * ?",
        "2025-11-02T04:30:00",
        NEW_YORK,
        ["2025-11-02T05:00:00", "2025-11-02T07:00:00", "2025-11-02T08:00:00"],
    ),
]


@pytest.mark.parametrize(("expression", "after", "zone", "expected"), VALID, ids=[row[0] for row in VALID])
def test_next_fire_times(
    expression: str, after: str | None, zone: zoneinfo.ZoneInfo | None, expected: list[str]
) -> None:
    start = utc(after) if after is not None else REF
    fires = QuartzExpression.parse(expression).next_fire_times(start, count=3, tz=zone)
    assert fires == [utc(text) for text in expected]
    assert all(fire.tzinfo is UTC for fire in fires)


def test_table_is_big_enough() -> None:
    assert len(VALID) + len(INVALID) >= 60


# (expression, field named in the error)
INVALID: list[tuple[str, str]] = [
    # field count and emptiness
    ("", "expression"),
    ("   ", "expression"),
    ("* * * * *", "expression"),
    ("0 0 0 * * ? 2025 1", "expression"),
    # out of range, per field
    ("60 * * * * ?", "seconds"),
    ("0 60 * * * ?", "minutes"),
    ("0 0 24 * * ?", "hours"),
    ("0 0 0 32 * ?", "day_of_month"),
    ("0 0 0 0 * ?", "day_of_month"),
    ("0 0 0 1 13 ?", "month"),
    ("0 0 0 1 0 ?", "month"),
    ("0 0 0 ? * 8", "day_of_week"),
    ("0 0 0 ? * 0", "day_of_week"),
    ("0 0 0 1 1 ? 1969", "year"),
    ("0 0 0 1 1 ? 2200", "year"),
    ("0 0-60 * * * ?", "minutes"),
    # bad names
    ("0 0 0 ? FOO *", "month"),
    ("0 0 0 ? JANUARY *", "month"),
    ("0 0 0 ? * FUN", "day_of_week"),
    ("0 0 0 ? * JAN", "day_of_week"),
    ("0 0 MON * * ?", "hours"),
    ("0 0 0 1 * ? abc", "year"),
    # '?' rules
    ("0 0 0 ? * ?", "day_of_week"),
    ("0 0 0 * * *", "day_of_week"),
    ("0 0 0 1 * MON", "day_of_week"),
    ("? 0 0 * * ?", "seconds"),
    ("0 0 0 1 ? *", "month"),
    ("0 0 0 1 1 ? ?", "year"),
    ("0 0 0 ?,1 * ?", "day_of_month"),
    # steps
    ("*/0 * * * * ?", "seconds"),
    ("0 0/0 * * * ?", "minutes"),
    ("0 0 */24 * * ?", "hours"),
    ("0 0 0 */32 * ?", "day_of_month"),
    ("0 0 0 1 */13 ?", "month"),
    ("0 0 0 ? * */8", "day_of_week"),
    ("*/ * * * * ?", "seconds"),
    ("0 0 0 1 * ? 2025/", "year"),
    # reversed year range (other fields wrap around instead)
    ("0 0 0 1 1 ? 2030-2025", "year"),
    # W / L / # misuse
    ("0 0 0 1,15W * ?", "day_of_month"),
    ("0 0 0 1-5W * ?", "day_of_month"),
    ("0 0 0 32W * ?", "day_of_month"),
    ("0 0 0 W * ?", "day_of_month"),
    ("0 0 0 L,15 * ?", "day_of_month"),
    ("0 0 0 15L * ?", "day_of_month"),
    ("0 0 0 L-31 * ?", "day_of_month"),
    ("0 0 0 L-x * ?", "day_of_month"),
    ("0 0 0 1#2 * ?", "day_of_month"),
    ("0 0 0 ? * 6#6", "day_of_week"),
    ("0 0 0 ? * 6#0", "day_of_week"),
    ("0 0 0 ? * 6#", "day_of_week"),
    ("0 0 0 ? * 8#1", "day_of_week"),
    ("0 0 0 ? * 1#1,2#2", "day_of_week"),
    ("0 0 0 ? * 5L,6", "day_of_week"),
    ("0 0 0 ? * 8L", "day_of_week"),
    ("0 0 0 ? * L-2", "day_of_week"),
    ("0 0 0 ? * 2W", "day_of_week"),
    ("L 0 0 * * ?", "seconds"),
    ("0 0 5W * * ?", "hours"),
    ("0 0 0 1 1#2 ?", "month"),
    ("0 0 0 1 1 ? L", "year"),
    # garbage
    ("0 0 0 $ * ?", "day_of_month"),
    ("0 0 0 1 * ? 20x5", "year"),
    ("0 0 1-2-3 * * ?", "hours"),
    ("0,,5 0 0 * * ?", "seconds"),
    ("5, 0 0 * * ?", "seconds"),
    ("0 0 0 ? * MON-", "day_of_week"),
    ("0 0 0 ? * -MON", "day_of_week"),
    ("0 0 0 1.5 * ?", "day_of_month"),
    ("0 0 0 1 * ? **", "year"),
]


@pytest.mark.parametrize(("expression", "field"), INVALID, ids=[row[0] or "<empty>" for row in INVALID])
def test_invalid_expressions_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(QuartzError) as info:
        QuartzExpression.parse(expression)
    assert info.value.field == field
    assert str(info.value) == f"{field}: {info.value.message}"
    assert info.value.message  # a human-readable reason, not just a field name


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("0 0 0 ? * 8", "day_of_week: value 8 out of range 1-7"),
        ("60 * * * * ?", "seconds: value 60 out of range 0-59"),
        ("0 0 0 1 1 ? 2200", "year: value 2200 out of range 1970-2199"),
        ("* * * * *", "expression: expected 6 or 7 fields"),
        ("0 0 0 ? FOO *", "month: unknown name 'FOO'"),
        ("0 0 0 ? * ?", "day_of_week: '?' cannot be used in both"),
        ("0 0 0 1 * MON", "Quartz does not support restricting both"),
        ("*/0 * * * * ?", "seconds: step 0 in '*/0' must be between 1 and 59"),
        ("0 0 0 ? * 6#6", "day_of_week: '#' must be followed by an occurrence 1-5"),
        ("0 0 0 1,15W * ?", "day_of_month: 'W' must follow a single day"),
        ("0 0 ? * * ?", "hours: '?' is only allowed in day_of_month or day_of_week"),
        ("0 0 0 $ * ?", "day_of_month: unexpected character '$'"),
        ("0 0 0 1 1 ? 2030-2025", "year: range 2030-2025 is reversed"),
    ],
)
def test_error_messages_are_readable(expression: str, text: str) -> None:
    with pytest.raises(QuartzError) as info:
        QuartzExpression.parse(expression)
    assert str(info.value).startswith(text) or text in str(info.value)


def test_quartz_error_is_a_picklable_value_error() -> None:
    err = QuartzError("month", "value 13 out of range 1-12")
    assert isinstance(err, ValueError)
    assert (err.field, err.message, str(err)) == (
        "month",
        "value 13 out of range 1-12",
        "month: value 13 out of range 1-12",
    )
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.field, clone.message, str(clone)) == (err.field, err.message, str(err))


# --------------------------------------------------------------------------- parsed representation


def test_parse_keeps_expression_and_expands_sets() -> None:
    expr = QuartzExpression.parse("0 0/20 22-2 ? jan-MAR,DEC 2-6 2025-2027")
    assert expr.expression == "0 0/20 22-2 ? jan-MAR,DEC 2-6 2025-2027"
    assert expr.seconds == frozenset({0})
    assert expr.minutes == frozenset({0, 20, 40})
    assert expr.hours == frozenset({22, 23, 0, 1, 2})
    assert expr.months == frozenset({1, 2, 3, 12})
    assert expr.years == frozenset({2025, 2026, 2027})
    assert expr.days_of_month is None
    assert expr.days_of_week == frozenset({2, 3, 4, 5, 6})
    assert QuartzExpression.parse("0 0 0 * * ?").years is None


def test_parsed_expressions_are_hashable_values() -> None:
    assert QuartzExpression.parse("0 0 4 * * ?") == QuartzExpression.parse("0 0 4 * * ?")
    assert len({QuartzExpression.parse("0 0 4 * * ?"), QuartzExpression.parse("0 0 4 * * ?")}) == 1


def test_wrapping_steps() -> None:
    assert QuartzExpression.parse("0 0 22-4/2 * * ?").hours == frozenset({22, 0, 2, 4})
    assert QuartzExpression.parse("0 0 0 ? * FRI-TUE/2").days_of_week == frozenset({6, 1, 3})
    assert QuartzExpression.parse("0 0 0 1 OCT-MAR/3 ?").months == frozenset({10, 1})


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("expression", "day", "expected"),
    [
        ("0 0 0 ? * MON", datetime.date(2025, 1, 20), True),
        ("0 0 0 ? * MON", datetime.date(2025, 1, 21), False),
        ("0 0 0 L * ?", datetime.date(2024, 2, 29), True),
        ("0 0 0 L * ?", datetime.date(2024, 2, 28), False),
        ("0 0 0 1W * ?", datetime.date(2025, 2, 3), True),
        ("0 0 0 1W * ?", datetime.date(2025, 2, 1), False),
        ("0 0 0 ? * 6#5", datetime.date(2025, 1, 31), True),
        ("0 0 0 ? * 6#5", datetime.date(2025, 2, 28), False),
        ("0 0 0 * * ? 2026", datetime.date(2025, 6, 1), False),
        ("0 0 0 * * ? 2026", datetime.date(2026, 6, 1), True),
        ("0 0 0 * 2-3 ?", datetime.date(2026, 4, 1), False),
    ],
)
def test_matches_date(expression: str, day: datetime.date, expected: bool) -> None:
    assert QuartzExpression.parse(expression).matches_date(day) is expected


def test_matches_at_second_resolution_in_own_zone() -> None:
    expr = QuartzExpression.parse("0 0 4 ? * MON")
    monday_4am_berlin = datetime.datetime(2025, 1, 20, 4, 0, 0, tzinfo=BERLIN)
    assert expr.matches(monday_4am_berlin)
    assert expr.matches(monday_4am_berlin.replace(microsecond=999_999))
    assert not expr.matches(monday_4am_berlin.replace(second=1))
    # Same instant seen in UTC is 03:00 there, which does not match.
    assert not expr.matches(monday_4am_berlin.astimezone(UTC))
    assert expr.matches(datetime.datetime(2025, 1, 20, 4, tzinfo=UTC))


def test_matches_agrees_with_dst_decisions() -> None:
    expr = QuartzExpression.parse("0 30 2 * * ?")
    first = datetime.datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=0)
    second = datetime.datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN, fold=1)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    assert expr.matches(first)
    assert not expr.matches(second)
    assert expr.matches(second.astimezone(UTC).astimezone(BERLIN)) is False
    # 02:30 on 2025-03-30 does not exist in Berlin.
    assert not expr.matches(datetime.datetime(2025, 3, 30, 2, 30, tzinfo=BERLIN))


def test_matches_and_next_fire_times_need_aware_datetimes() -> None:
    expr = QuartzExpression.parse("0 0 4 * * ?")
    naive = datetime.datetime(2025, 1, 1, 4)
    with pytest.raises(ValueError):
        expr.matches(naive)
    with pytest.raises(ValueError):
        expr.next_fire_times(naive)
    with pytest.raises(ValueError):
        expr.next_fire_times(REF, count=-1)


# --------------------------------------------------------------------------- fire time search


def test_next_fire_times_is_strictly_after() -> None:
    expr = QuartzExpression.parse("0 0 4 * * ?")
    at_fire = datetime.datetime(2025, 1, 16, 4, tzinfo=UTC)
    assert expr.next_fire_times(at_fire, count=1) == [datetime.datetime(2025, 1, 17, 4, tzinfo=UTC)]
    just_before = at_fire - datetime.timedelta(microseconds=1)
    assert expr.next_fire_times(just_before, count=1) == [at_fire]


def test_after_may_be_in_any_zone() -> None:
    expr = QuartzExpression.parse("0 0 4 * * ?")
    after = datetime.datetime(2025, 1, 16, 5, 0, tzinfo=BERLIN)  # 04:00 UTC
    assert expr.next_fire_times(after, count=1) == [datetime.datetime(2025, 1, 17, 4, tzinfo=UTC)]


def test_next_fire_time_and_count() -> None:
    expr = QuartzExpression.parse("0 0 4 * * ?")
    assert expr.next_fire_time(REF) == datetime.datetime(2025, 1, 16, 4, tzinfo=UTC)
    assert expr.next_fire_time(REF, tz=BERLIN) == datetime.datetime(2025, 1, 16, 3, tzinfo=UTC)
    assert len(expr.next_fire_times(REF)) == 5
    assert expr.next_fire_times(REF, count=0) == []
    assert QuartzExpression.parse("0 0 0 30 FEB ?").next_fire_time(REF) is None
    assert QuartzExpression.parse("0 0 0 1 1 ? 2001").next_fire_time(REF) is None


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 0 30 FEB ?",
        "0 0 0 31 2,4,6,9,11 ?",
        "0 0 0 ? 2 6#5 2093-2103",
        "0 0 0 L-30 2 ?",
        "* * * * * ? 2199",
        "0 0 0 1 1 ? 1970",
    ],
)
def test_search_is_fast_even_when_nothing_or_little_fires(expression: str) -> None:
    expr = QuartzExpression.parse(expression)
    started = time.perf_counter()
    expr.next_fire_times(datetime.datetime(1970, 1, 1, tzinfo=UTC), count=5, tz=BERLIN)
    expr.next_fire_times(REF, count=5)
    assert time.perf_counter() - started < 2.0


def test_dense_expression_across_dst_gap_stays_cheap() -> None:
    # Every second of the nonexistent hour is skipped, not fired.
    expr = QuartzExpression.parse("* * 2-3 * * ?")
    fires = expr.next_fire_times(datetime.datetime(2025, 3, 30, 0, 59, 59, tzinfo=UTC), count=2, tz=BERLIN)
    assert fires == [utc("2025-03-30T01:00:00"), utc("2025-03-30T01:00:01")]  # 03:00:00 CEST


# --------------------------------------------------------------------------- independent oracle


def _nearest_weekday_oracle(d: datetime.date, target: int) -> bool:
    """Nearest Mon-Fri to day ``target`` of d's month, searching outwards without leaving the month."""
    try:
        base = d.replace(day=target)
    except ValueError:
        return False
    for offset in (0, -1, 1, -2, 2):
        candidate = base + datetime.timedelta(days=offset)
        if candidate.month == base.month and candidate.weekday() < 5:
            return candidate == d
    raise AssertionError("unreachable")


def _is_last(d: datetime.date, days_before: int = 0) -> bool:
    return (d + datetime.timedelta(days=days_before + 1)).month != d.month and (
        d + datetime.timedelta(days=days_before)
    ).month == d.month


def _last_weekday_oracle(d: datetime.date) -> bool:
    later = [d + datetime.timedelta(days=k) for k in (1, 2, 3)]
    return d.weekday() < 5 and all(x.month != d.month or x.weekday() >= 5 for x in later)


# Python weekday(): Monday = 0 ... Sunday = 6.
ORACLE: list[tuple[str, Callable[[datetime.date], bool]]] = [
    ("0 0 0 L * ?", lambda d: _is_last(d)),
    ("0 0 0 L-3 * ?", lambda d: _is_last(d, 3)),
    ("0 0 0 LW * ?", _last_weekday_oracle),
    ("0 0 0 1W * ?", lambda d: _nearest_weekday_oracle(d, 1)),
    ("0 0 0 15W * ?", lambda d: _nearest_weekday_oracle(d, 15)),
    ("0 0 0 30W * ?", lambda d: _nearest_weekday_oracle(d, 30)),
    ("0 0 0 31W * ?", lambda d: _nearest_weekday_oracle(d, 31)),
    ("0 0 0 ? * 6L", lambda d: d.weekday() == 4 and (d + datetime.timedelta(days=7)).month != d.month),
    ("0 0 0 ? * 1L", lambda d: d.weekday() == 6 and (d + datetime.timedelta(days=7)).month != d.month),
    ("0 0 0 ? * L", lambda d: d.weekday() == 5),
    ("0 0 0 ? * 2#1", lambda d: d.weekday() == 0 and d.day <= 7),
    ("0 0 0 ? * 4#3", lambda d: d.weekday() == 2 and 15 <= d.day <= 21),
    ("0 0 0 ? * 6#5", lambda d: d.weekday() == 4 and d.day >= 29),
    ("0 0 0 ? * SUN#4", lambda d: d.weekday() == 6 and 22 <= d.day <= 28),
    ("0 0 0 ? * MON-FRI", lambda d: d.weekday() < 5),
    ("0 0 0 ? * FRI-MON", lambda d: d.weekday() in (4, 5, 6, 0)),
    ("0 0 0 29 2 ?", lambda d: (d.month, d.day) == (2, 29)),
    ("0 0 0 31 * ?", lambda d: d.day == 31),
    ("0 0 0 */10 * ?", lambda d: d.day in (1, 11, 21, 31)),
    ("0 0 0 28-2 JAN-MAR ?", lambda d: d.month <= 3 and (d.day >= 28 or d.day <= 2)),
    ("0 0 0 * * ? 2026,2028", lambda d: d.year in (2026, 2028)),
    ("0 0 0 ? * 7#5", lambda d: d.weekday() == 5 and d.day >= 29),
]


@pytest.mark.parametrize(("expression", "oracle"), ORACLE, ids=[row[0] for row in ORACLE])
def test_day_rules_against_independent_oracle(
    expression: str, oracle: Callable[[datetime.date], bool]
) -> None:
    expr = QuartzExpression.parse(expression)
    day = datetime.date(2024, 1, 1)
    while day < datetime.date(2030, 1, 1):
        assert expr.matches_date(day) is oracle(day), day
        day += datetime.timedelta(days=1)


@pytest.mark.parametrize(("expression", "oracle"), ORACLE, ids=[row[0] for row in ORACLE])
def test_fire_search_against_brute_force(expression: str, oracle: Callable[[datetime.date], bool]) -> None:
    # All oracle rows fire at midnight: the brute force walks day by day from REF.
    expected: list[datetime.datetime] = []
    day = REF.date() + datetime.timedelta(days=1)
    while len(expected) < 4 and day.year < 2050:
        if oracle(day):
            expected.append(datetime.datetime.combine(day, datetime.time(), tzinfo=UTC))
        day += datetime.timedelta(days=1)
    assert QuartzExpression.parse(expression).next_fire_times(REF, count=4) == expected


# --------------------------------------------------------------------------- celery beat bridge


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("0 0 4 * * ?", ("0", "4", "*", "*", "*")),
        ("0 0 4 ? * * *", ("0", "4", "*", "*", "*")),
        ("0 0 0 ? * MON", ("0", "0", "1", "*", "*")),
        ("0 0 0 ? * SUN,SAT", ("0", "0", "0,6", "*", "*")),
        ("0 0 12 ? * MON-FRI", ("0", "12", "1-5", "*", "*")),
        ("0 0 12 ? * FRI-MON", ("0", "12", "0,1,5,6", "*", "*")),
        ("0 */15 9-17 1,15 * ?", ("0,15,30,45", "9-17", "*", "1,15", "*")),
        ("0 0 22-2 ? JAN-MAR *", ("0", "0-2,22,23", "*", "*", "1-3")),
        ("0 0 0 29 2 ?", ("0", "0", "*", "29", "2")),
        # supersets: the caller guards with matches()
        ("0 0 0 L * ?", ("0", "0", "*", "28-31", "*")),
        ("0 0 0 L-3 * ?", ("0", "0", "*", "25-28", "*")),
        ("0 0 0 LW * ?", ("0", "0", "1-5", "26-31", "*")),
        ("0 0 0 15W * ?", ("0", "0", "1-5", "13-17", "*")),
        ("0 0 0 1W * ?", ("0", "0", "1-5", "1-3", "*")),
        ("0 0 0 ? * 6L", ("0", "0", "5", "22-31", "*")),
        ("0 0 0 ? * L", ("0", "0", "6", "*", "*")),
        ("0 0 0 ? * 2#1", ("0", "0", "1", "1-7", "*")),
        ("0 0 0 ? * 6#5", ("0", "0", "5", "29-31", "*")),
        ("0 0 4 * * ? 2030", ("0", "4", "*", "*", "*")),
        # never fires: celery rejects day 30 of February, so day_of_month widens to '*'
        ("0 0 0 30 FEB ?", ("0", "0", "*", "*", "2")),
    ],
)
def test_crontab_fields(expression: str, fields: tuple[str, str, str, str, str]) -> None:
    keys = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
    assert QuartzExpression.parse(expression).crontab_fields() == dict(zip(keys, fields, strict=True))


@pytest.mark.parametrize(
    "expression",
    ["0 0 0 L * ?", "0 0 0 LW * ?", "0 0 0 15W * ?", "0 0 0 ? * 6L", "0 0 0 ? * 6#5", "0 0 0 L-3W * ?"],
)
def test_crontab_superset_covers_every_true_fire(expression: str) -> None:
    expr = QuartzExpression.parse(expression)
    fields = expr.crontab_fields()
    assert fields is not None

    def expand(spec: str, low: int, high: int) -> set[int]:
        if spec == "*":
            return set(range(low, high + 1))
        values: set[int] = set()
        for part in spec.split(","):
            first, _, last = part.partition("-")
            values.update(range(int(first), int(last or first) + 1))
        return values

    days = expand(fields["day_of_month"], 1, 31)
    weekdays = expand(fields["day_of_week"], 0, 6)
    for fire in expr.next_fire_times(REF, count=60):
        assert fire.day in days and fire.isoweekday() % 7 in weekdays, fire


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 4 * * ?", None),
        ("0 */5 * * * ?", None),
        ("0 0 0 ? * 6L 2030", None),
        (
            "*/10 * * * * ?",
            "seconds field '*/10' fires more than once a minute; "
            "the scheduler runs at most once per minute at second 0",
        ),
        (
            "0,30 * * * * ?",
            "seconds field '0,30' fires more than once a minute; "
            "the scheduler runs at most once per minute at second 0",
        ),
        ("* * * * * ?", "seconds field '*' fires more than once a minute"),
        ("30 0 4 * * ?", "seconds field '30' fires at second 30; only second 0 is supported"),
    ],
)
def test_unsupported_reason(expression: str, reason: str | None) -> None:
    expr = QuartzExpression.parse(expression)
    got = expr.unsupported_reason()
    if reason is None:
        assert got is None
        assert expr.crontab_fields() is not None
    else:
        assert got is not None and got.startswith(reason)
        assert expr.crontab_fields() is None


@pytest.mark.parametrize(
    ("expression", "gap"),
    [
        ("0 * * * * ?", datetime.timedelta(minutes=1)),
        ("0 0/30 * ? * *", datetime.timedelta(minutes=30)),
        ("0 0 * ? * *", datetime.timedelta(hours=1)),
        ("0 0 4 ? * *", datetime.timedelta(days=1)),
        ("0 0 0 ? * MON", datetime.timedelta(days=7)),
        ("0 0 0,23 ? * MON,TUE", datetime.timedelta(hours=1)),  # Monday 23:00 to Tuesday 00:00
        ("0 0 0,23 ? * MON,WED", datetime.timedelta(hours=23)),  # no two days in a row
        ("0 59 23 L * ?", datetime.timedelta(days=28)),  # 31 January to 28 February
        ("0 0 12 1 JAN ? 2030", None),  # one fire
        ("0 0 11,12 1 JAN ? 2030", datetime.timedelta(hours=1)),
    ],
)
def test_shortest_gap_between_two_fires(expression: str, gap: datetime.timedelta | None) -> None:
    assert QuartzExpression.parse(expression).shortest_gap(REF) == gap


def test_shortest_gap_agrees_with_the_fire_search() -> None:
    for expression in (
        "0 0 0,23 ? * MON,TUE",
        "0 15,45 1,22 ? * 2#1",
        "0 0 6 LW * ?",
        "0 30 0,23 ? JAN,DEC *",
    ):
        parsed = QuartzExpression.parse(expression)
        fires = parsed.next_fire_times(REF, count=200)
        closest = min(b - a for a, b in itertools.pairwise(fires))

        assert parsed.shortest_gap(REF) == closest, expression
