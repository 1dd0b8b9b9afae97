"""The API's timestamps are written in one place, ``config.timestamps``: ``format`` in Python and
``format_sql`` inside a statement. The two agree on every instant; they spell it alike except
that PostgreSQL's ``to_char`` always writes the microseconds, Python's ``isoformat`` only when
they are not 0 (kept as it was, so that no client sees a timestamp change its spelling)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from config import timestamps


def _in_sql(value: dt.datetime | None) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {timestamps.format_sql('%s::timestamptz')}", [value])
        row = cursor.fetchone()
    assert row is not None
    return row[0]


def test_format_writes_utc_with_z_and_keeps_none() -> None:
    eastern = dt.timezone(dt.timedelta(hours=-5))
    assert timestamps.format(dt.datetime(2024, 8, 8, 9, 30, 0, 120000, tzinfo=eastern)) == (
        "2024-08-08T14:30:00.120000Z"
    )
    assert timestamps.format(None) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2024, 8, 8, 14, 30, 0, 123456, tzinfo=dt.UTC),
        dt.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))),
    ],
)
def test_sql_and_python_write_the_same_text_when_there_are_microseconds(moment: dt.datetime) -> None:
    assert _in_sql(moment) == timestamps.format(moment)


@pytest.mark.django_db
def test_at_zero_microseconds_sql_writes_them_and_python_leaves_them_out() -> None:
    moment = dt.datetime(2024, 8, 8, 14, 30, tzinfo=dt.UTC)
    assert timestamps.format(moment) == "2024-08-08T14:30:00Z"
    assert _in_sql(moment) == "2024-08-08T14:30:00.000000Z"
    assert _in_sql(None) is None
