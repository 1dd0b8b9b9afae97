"""The API's timestamps: the ones a client sends, read in one place (:func:`parse_aware`), and
the ones the API shows, written in one place (:func:`format` in Python, :func:`format_sql`
inside a statement).

A timestamp the API shows is ISO 8601 in UTC with ``Z``, with microseconds as Python's
``isoformat`` writes them: ``2024-08-08T14:30:00.123456Z``. The two writers differ on one
point, kept as it has always been: ``isoformat`` leaves out ``.000000`` when the microseconds
are 0, ``to_char`` always writes them. Both spell the same instant; a client that reads them
with any ISO 8601 parser sees no difference (``tests/test_webhook_events.py`` compares a
command built in SQL with the same one built in Python as instants for this reason).

Timestamps a client sends are ISO 8601 with a UTC offset (contract section 1). An
operation's window (``schedule_args``), the device query's time filters
(``last_seen__gte``), a headless operation's ``scheduled_at`` and the list filters
(``created_after``) all read them here, so that each gives the same answer to the same
text. ``parse_datetime`` alone is not enough: on a string shaped like a timestamp it
raises ``ValueError`` for values no calendar has (``2024-02-30``, hour 24, an offset of a
day or more), and an aware datetime near the ends of the calendar raises
``OverflowError`` the moment it is converted to UTC (``0001-01-01T00:00:00+14:00``).

The accepted range is Python's whole calendar, for the instant and for its wall-clock
reading alike (``9999-12-31T23:59:59Z`` is a common way of saying "no end"). A window of
``time_type`` ``device`` is read as wall clock in every device's zone, which near the ends
of the calendar leaves it: ``operations.windows`` keeps its bounds inside for that.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, overload

from django.utils.dateparse import parse_datetime

EXAMPLE = "2024-08-08T14:30:00Z"

NOT_A_TIMESTAMP = f"is not a valid date/time; use ISO 8601 with a UTC offset, e.g. {EXAMPLE}"
NAIVE = f"must include a UTC offset, e.g. {EXAMPLE}"
OUT_OF_RANGE = (
    f"is out of range: as an instant in UTC a timestamp must lie between "
    f"{dt.datetime.min.date()} and {dt.datetime.max.date()}"
)


class TimestampError(ValueError):
    """A refused timestamp; ``str()`` is the reason, written to follow the field's name."""


def parse_aware(value: Any) -> dt.datetime:
    """The aware datetime ``value`` spells, with its offset kept (a window of ``time_type``
    ``device`` reads the wall clock); :class:`TimestampError` says why it is refused."""
    # CPython's fromisoformat() stops reading at a NUL: "2024-01-01T00:00:00Z\x00junk" would pass.
    if not isinstance(value, str) or "\x00" in value:
        raise TimestampError(NOT_A_TIMESTAMP)
    try:
        parsed = parse_datetime(value)
    except ValueError as error:  # the shape of a timestamp, with values no calendar has
        if "offset" in str(error):  # +24:00 or more: no zone is a day or more away from UTC
            raise TimestampError("is not a valid date/time: a UTC offset must be under 24:00") from None
        raise TimestampError(f"is not a valid date/time ({error})") from None
    if parsed is None:
        raise TimestampError(NOT_A_TIMESTAMP)
    if parsed.utcoffset() is None:
        raise TimestampError(NAIVE)
    try:  # its wall clock is in the calendar once parsed; its instant may not be
        parsed.astimezone(dt.UTC)
    except OverflowError:
        raise TimestampError(OUT_OF_RANGE) from None
    return parsed


@overload
def format(value: dt.datetime) -> str: ...
@overload
def format(value: None) -> None: ...
@overload
def format(value: dt.datetime | None) -> str | None: ...


def format(value: dt.datetime | None) -> str | None:
    """A timestamp as the API shows it: ISO 8601 in UTC with ``Z`` (None stays None, for
    nullable fields). Every response, event and export writes its timestamps here, so that
    no two of them can drift apart."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def format_sql(expr: str) -> str:
    """SQL of the timestamp expression ``expr`` as the API shows it (UTC, ``Z``), for JSON built
    inside a statement (an event's data, a command's payload) so the hot paths stay one round
    trip. NULL stays NULL. Unlike :func:`format` it always writes the microseconds."""
    return f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
