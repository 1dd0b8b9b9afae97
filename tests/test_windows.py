"""Maintenance windows: daily times, days, console vs device time, DST."""

from __future__ import annotations

import datetime as dt

from operations.windows import Window

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
