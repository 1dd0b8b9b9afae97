"""Maintenance windows: daily times, days, console vs device time, DST."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import pytest

from operations.windows import EARLIEST, LATEST, Window

UTC = dt.UTC


def window(
    start: str, end: str, time_type: str = "console", days: list[str] | None = None, **extra: str
) -> Window:
    args: dict[str, object] = {"start_datetime": start, "end_datetime": end, "time_type": time_type}
    if days:
        args["days"] = days
    args.update(extra)
    return Window.from_args(args)  # type: ignore[arg-type]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_console_window_opens_daily_between_the_times_of_day() -> None:
    w = window("2030-01-07T02:00:00Z", "2030-01-10T04:00:00Z")

    assert w.next_opening("Asia/Tokyo", at("2030-01-07T00:00:00Z")) == (
        at("2030-01-07T02:00:00Z"),
        at("2030-01-07T04:00:00Z"),
    )
    # During a daily window that window is the answer: it opened already and closes later.
    assert w.next_opening("UTC", at("2030-01-08T03:00:00Z")) == (
        at("2030-01-08T02:00:00Z"),
        at("2030-01-08T04:00:00Z"),
    )
    # After the last close nothing opens again.
    assert w.next_opening("UTC", at("2030-01-10T04:00:00Z")) is None


def test_days_narrow_the_window() -> None:
    # 2030-01-07 is a Monday.
    w = window("2030-01-07T02:00:00Z", "2030-01-20T04:00:00Z", days=["Saturday", "Sunday"])

    assert w.next_opening("UTC", at("2030-01-07T00:00:00Z")) == (
        at("2030-01-12T02:00:00Z"),
        at("2030-01-12T04:00:00Z"),
    )


def test_window_crossing_midnight() -> None:
    w = window("2030-01-07T22:00:00Z", "2030-01-09T02:00:00Z")

    assert w.next_opening("UTC", at("2030-01-07T23:00:00Z")) == (
        at("2030-01-07T22:00:00Z"),
        at("2030-01-08T02:00:00Z"),
    )
    assert w.next_opening("UTC", at("2030-01-08T03:00:00Z")) == (
        at("2030-01-08T22:00:00Z"),
        at("2030-01-09T02:00:00Z"),
    )


def test_device_time_opens_at_different_instants_around_the_world() -> None:
    w = window("2030-01-07T02:00:00Z", "2030-01-09T04:00:00Z", time_type="device")
    after = at("2030-01-06T00:00:00Z")

    tokyo = w.next_opening("Asia/Tokyo", after)
    new_york = w.next_opening("America/New_York", after)

    assert tokyo == (
        at("2030-01-06T17:00:00Z"),
        at("2030-01-06T19:00:00Z"),
    )  # 02:00 JST = 17:00 UTC the day before
    assert new_york == (at("2030-01-07T07:00:00Z"), at("2030-01-07T09:00:00Z"))  # 02:00 EST = 07:00 UTC


def test_device_time_across_spring_forward_gap_shifts_forward() -> None:
    # Berlin springs forward on 2030-03-31 at 02:00 -> 03:00: 02:30 does not exist that day.
    w = window("2030-03-30T02:30:00Z", "2030-04-02T03:30:00Z", time_type="device")

    on_the_day = w.next_opening("Europe/Berlin", at("2030-03-30T23:00:00Z"))

    # On the day, 02:30 is read as 03:30 CEST (01:30 UTC), the same instant as the close 03:30 CEST:
    # that empty window is skipped. The next day (CEST, +02:00) it is open 00:30-01:30 UTC.
    assert on_the_day == (at("2030-04-01T00:30:00Z"), at("2030-04-01T01:30:00Z"))
    # The day before (CET, +01:00) it was open 01:30-02:30 UTC.
    assert w.next_opening("Europe/Berlin", at("2030-03-30T00:00:00Z")) == (
        at("2030-03-30T01:30:00Z"),
        at("2030-03-30T02:30:00Z"),
    )


def test_device_time_across_fall_back_overlap_uses_the_first_occurrence() -> None:
    # New York falls back on 2030-11-03 at 02:00 -> 01:00: 01:30 happens twice.
    w = window("2030-11-02T01:30:00Z", "2030-11-05T02:30:00Z", time_type="device")

    opening = w.next_opening("America/New_York", at("2030-11-03T00:00:00Z"))

    # The first 01:30 is EDT (-04:00) = 05:30 UTC; 02:30 that day is EST (-05:00) = 07:30 UTC.
    assert opening == (at("2030-11-03T05:30:00Z"), at("2030-11-03T07:30:00Z"))


def test_console_timezone_reads_days_in_the_creators_zone() -> None:
    # 2030-01-12 23:30 in New York is already Sunday in UTC.
    w = window("2030-01-07T04:30:00Z", "2030-01-20T05:30:00Z", days=["Saturday"], timezone="America/New_York")

    opening = w.next_opening("UTC", at("2030-01-07T00:00:00Z"))

    assert opening == (at("2030-01-13T04:30:00Z"), at("2030-01-13T05:30:00Z"))


#: Zones at both ends of the UTC offsets (Etc/GMT+12 is UTC-12; Etc/GMT-14 is UTC+14), one with
#: a 30-minute DST shift, and the edges of the calendar the API accepts, with extreme offsets.
EDGE_ZONES = ["Pacific/Kiritimati", "Etc/GMT+12", "Etc/GMT-14", "Australia/Lord_Howe", "UTC"]
EDGE_DATETIMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-12:00",
    "2030-01-07T02:00:00Z",
    "9999-12-30T10:00:00Z",
    "9999-12-31T12:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-12:00",
]


def test_a_window_to_the_end_of_year_9999_opens_in_every_zone() -> None:
    """Issue 12, item 1: ``9999-12-31T23:59:59Z`` read as a wall clock at UTC-12 is an instant in
    year 10000, and the fan-out raised ``OverflowError`` on every attempt. Its end is now the
    last instant every zone can read; each zone's daily window opens as usual."""
    w = window("2030-01-05T02:00:00Z", "9999-12-31T23:59:59Z", time_type="device")
    after = at("2030-01-06T00:00:00Z")

    assert w.next_opening("Pacific/Kiritimati", after) == (  # 02:00 and 23:59:59 at UTC+14
        at("2030-01-05T12:00:00Z"),
        at("2030-01-06T09:59:59Z"),
    )
    assert w.next_opening("Etc/GMT+12", after) == (  # 02:00 and 23:59:59 at UTC-12
        at("2030-01-05T14:00:00Z"),
        at("2030-01-06T11:59:59Z"),
    )
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        assert w.bounds(w.zone_for(zone))[1] == LATEST
    assert w.next_opening("Etc/GMT+12", LATEST) is None


def test_console_times_of_day_past_the_end_of_the_calendar() -> None:
    """23:59:59 UTC on 9999-12-31 is 13:59:59 on a day Kiritimati's calendar cannot hold."""
    w = window("2030-01-07T02:00:00Z", "9999-12-31T23:59:59Z", timezone="Pacific/Kiritimati")

    assert w.daily_times(zoneinfo.ZoneInfo("Pacific/Kiritimati")) == (dt.time(16, 0), dt.time(13, 59, 59))
    assert w.bounds(w.zone_for("UTC")) == (at("2030-01-07T02:00:00Z"), LATEST)
    assert (
        window("0001-01-01T00:00:00-12:00", "2030-01-07T02:00:00Z").bounds(w.zone_for("UTC"))[0] == EARLIEST
    )


@pytest.mark.parametrize("time_type", ["console", "device"])
@pytest.mark.parametrize("days", [None, ["Monday"]])
def test_no_window_the_api_accepts_overflows_in_any_zone(time_type: str, days: list[str] | None) -> None:
    afters = [at("2030-01-06T00:00:00Z"), EARLIEST, LATEST]
    for start, end in itertools.combinations(EDGE_DATETIMES, 2):
        for console_zone in EDGE_ZONES:
            w = window(start, end, time_type, days, timezone=console_zone)
            w.daily_times(zoneinfo.ZoneInfo(console_zone))
            for zone in EDGE_ZONES:
                opens, closes = w.bounds(w.zone_for(zone))
                assert EARLIEST <= opens <= closes <= LATEST, (start, end, zone)
                for after in afters:
                    opening = w.next_opening(zone, after)
                    assert opening is None or after < opening[1] <= closes, (start, end, zone, after)
