"""Timestamps a client sends: ISO 8601 with a UTC offset (contract section 1), read in one place.

An operation's window (``schedule_args``), the device query's time filters
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
from typing import Any

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
