"""Paging that stays fast over millions of rows (issue 17, ``config/api/pagination.py``):
keyset pages by ``cursor``, a documented maximum ``offset``, counts estimated beyond a
threshold with the answer saying so."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from commands.models import CommandStatus
from config.api.pagination import decode_cursor, encode_cursor
from inventory.services import bulk_import_devices
from operations.fanout import fan_out
from operations.models import Operation
from operations.services import create_operation
from tests.conftest import Org
from tests.helpers import content, error

LIST = "/commands/v0/status/"


def operation_on(org: Org, count: int, prefix: str = "p") -> Operation:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"{prefix}{i:04d}"} for i in range(count)])
    payload = {"operation_type": "REBOOT", "operation_device_query": {"all": True}}
    operation = create_operation(org.tenant.pk, payload, "tester")
    fan_out(operation.pk)
    return operation


def test_cursor_pages_skip_and_repeat_nothing_while_rows_are_added(org: Org) -> None:
    # given an operation's 45 command statuses
    operation = operation_on(org, 45)
    before = set(CommandStatus.objects.filter(tenant=org.tenant).values_list("pk", flat=True))

    # when a client walks the list by next_cursor, 10 at a time, while another operation
    # adds 30 rows after its second page
    seen: list[int] = []
    page = content(org.viewer.get(LIST, {"limit": 10}))
    pages = 1
    while True:
        seen += [int(item["id"]) for item in page["results"]]
        if pages == 2:
            operation_on(org, 30, prefix="q")
        if page["next_cursor"] is None:
            assert page["next"] is None
            break
        if pages > 1:
            assert "cursor=" in page["next"] and page["previous"] is None
        page = content(org.viewer.get(LIST, {"limit": 10, "cursor": page["next_cursor"]}))
        pages += 1

    # then no row was given twice, every row that was there is given, and so are the new ones
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    assert set(seen) == set(CommandStatus.objects.filter(tenant=org.tenant).values_list("pk", flat=True))
    assert seen == sorted(seen)
    assert operation.pk


def test_a_cursor_gives_the_same_page_as_the_offset(org: Org) -> None:
    operation_on(org, 5)
    first = content(org.viewer.get(LIST, {"limit": 2}))

    by_cursor = content(org.viewer.get(LIST, {"limit": 2, "cursor": first["next_cursor"]}))
    by_offset = content(org.viewer.get(LIST, {"limit": 2, "offset": 2}))

    assert "offset=2" in first["next"]  # within the maximum, next keeps the seeds' offset
    assert by_cursor["results"] == by_offset["results"]


def test_past_the_maximum_offset_next_carries_the_cursor(org: Org, settings: Any) -> None:
    settings.API_MAX_OFFSET = 4
    operation_on(org, 9)

    page = content(org.viewer.get(LIST, {"limit": 2, "offset": 4}))

    assert page["next"] is not None and "cursor=" in page["next"] and "offset=" not in page["next"]
    deeper = content(org.viewer.get(LIST, {"limit": 2, "cursor": page["next_cursor"]}))
    expected = CommandStatus.objects.order_by("id").values_list("id", flat=True)[6:8]
    assert [int(item["id"]) for item in deeper["results"]] == list(expected)


def test_an_offset_past_the_maximum_is_400_naming_offset(org: Org, settings: Any) -> None:
    settings.API_MAX_OFFSET = 100

    for path in (LIST, "/v0/devices/", "/v0/operations/"):
        body = error(org.viewer.get(path, {"offset": 101}), 400)
        assert "offset" in body["errors"] and "100" in body["errors"]["offset"][0]
    assert org.viewer.get(LIST, {"offset": 100}).status_code == 200


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"cursor": "not-a-cursor"}, "is not a cursor"),
        ({"cursor": encode_cursor(3)[:-2] + "!!"}, "is not a cursor"),
        ({"cursor": encode_cursor(3), "offset": 2}, "not both"),
        ({"cursor": "x" * 5000}, "is not a cursor"),
    ],
)
def test_a_bad_cursor_is_400_naming_cursor(org: Org, params: dict[str, Any], why: str) -> None:
    body = error(org.viewer.get(LIST, params), 400)

    assert why in body["errors"]["cursor"][0]


def test_a_list_not_in_key_order_refuses_a_cursor(org: Org) -> None:
    body = error(org.viewer.get("/v0/operations/", {"cursor": encode_cursor(1)}), 400)

    assert "offset" in body["errors"]["cursor"][0]


def test_cursors_round_trip() -> None:
    assert decode_cursor(encode_cursor(123456789)) == 123456789


def test_devices_page_by_cursor_too(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"c{i:03d}"} for i in range(7)])

    first = content(org.viewer.get("/v0/devices/", {"limit": 4}))
    second = content(org.viewer.get("/v0/devices/", {"limit": 4, "cursor": first["next_cursor"]}))

    assert [d["id"] for d in first["results"] + second["results"]] == [f"c{i:03d}" for i in range(7)]
    assert second["next_cursor"] is None and second["next"] is None


def test_a_count_beyond_the_threshold_is_estimated_and_says_so(org: Org, settings: Any) -> None:
    # given 60 rows whose statistics are known
    operation = operation_on(org, 60)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {CommandStatus._meta.db_table}")

    # when the threshold is below them, the count is the planner's estimate, flagged
    settings.COUNT_ESTIMATE_THRESHOLD = 10
    estimated = content(org.viewer.get(LIST, {"request": str(operation.pk)}))
    assert estimated["count_estimated"] is True and estimated["count"] > 10

    # and above them, the count is exact and says so
    settings.COUNT_ESTIMATE_THRESHOLD = 1000
    exact = content(org.viewer.get(LIST, {"request": str(operation.pk)}))
    assert exact["count_estimated"] is False and exact["count"] == 60


def test_the_filters_still_pick_the_right_rows(org: Org, other_org: Org) -> None:
    mine = operation_on(org, 3)
    operation_on(other_org, 3)

    by_request = content(org.viewer.get(LIST, {"request": f"{mine.pk},headless:nothing"}))
    by_device = content(org.viewer.get(LIST, {"device": "p0001,p0002"}))

    assert by_request["count"] == 3 and {r["request"] for r in by_request["results"]} == {str(mine.pk)}
    assert sorted(r["device"] for r in by_device["results"]) == ["p0001", "p0002"]
    assert all(r["request"] == str(mine.pk) for r in by_device["results"])


def test_the_schema_documents_the_new_keys(org: Org) -> None:
    schema = org.admin.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/commands/v0/status/"]["get"]["parameters"]}

    assert "cursor" in parameters
    assert parameters["offset"]["schema"]["maximum"] == 1_000_000
    operation = schema["components"]["schemas"]["Operation"]["properties"]
    assert "in_progress" in str(operation["commands_stop"]) and "done" in str(operation["commands_stop"])
    paged = schema["components"]["schemas"]["PaginatedCommandStatusList"]["properties"]
    assert {"count_estimated", "next_cursor"} <= set(paged)


@pytest.mark.django_db(transaction=True)
def test_a_big_fan_out_leaves_fresh_statistics_and_an_all_visible_table(org: Org, settings: Any) -> None:
    """Right after a fan-out the planner knows the rows (ANALYZE) and the new pages are
    all-visible (VACUUM), so deep pages and counts are index-only scans (commands.planner)."""
    settings.FANOUT_ANALYZE_ROWS = 20

    operation_on(org, 40)

    with connection.cursor() as cursor:
        # the table is partitioned (commands.partitions): its rows and pages are its partitions'
        cursor.execute(
            "SELECT sum(c.reltuples), sum(c.relallvisible) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [CommandStatus._meta.db_table],
        )
        tuples, all_visible = cursor.fetchone()
    assert tuples >= 40 and all_visible > 0


def test_one_operations_list_pages_by_cursor_in_its_own_index_order(org: Org) -> None:
    """``request`` of one operation orders by (operation, id) so the planner walks that
    operation's index; it is still the key order, so cursors work and agree with offsets."""
    mine = operation_on(org, 7)
    operation_on(org, 5, prefix="o")  # another operation's rows interleave by key

    first = content(org.viewer.get(LIST, {"request": str(mine.pk), "limit": 4}))
    second = content(
        org.viewer.get(LIST, {"request": str(mine.pk), "limit": 4, "cursor": first["next_cursor"]})
    )
    by_offset = content(org.viewer.get(LIST, {"request": str(mine.pk), "limit": 4, "offset": 4}))

    ids = [int(item["id"]) for item in first["results"] + second["results"]]
    assert ids == sorted(CommandStatus.objects.filter(operation=mine).values_list("id", flat=True))
    assert second["results"] == by_offset["results"] and second["next_cursor"] is None


def test_filtered_device_pages_by_cursor_are_exactly_the_offset_pages(org: Org, other_org: Org) -> None:
    """The cursor that deep device pages are pointed to (issue 26) gives the offset pages' rows,
    page after page, with a filter on and another tenant's devices of the same ids around; the
    list is in primary key order, so rows cannot tie."""
    systems = ["android", "ios", "linux"]
    bulk_import_devices(org.tenant.pk, [{"device_id": f"f{i:03d}", "os": systems[i % 3]} for i in range(23)])
    bulk_import_devices(other_org.tenant.pk, [{"device_id": f"f{i:03d}", "os": "android"} for i in range(23)])
    query = {"os": "android", "limit": 3}

    by_offset: list[list[str]] = []
    while True:
        page = content(org.viewer.get("/v0/devices/", {**query, "offset": 3 * len(by_offset)}))
        by_offset.append([d["id"] for d in page["results"]])
        if page["next"] is None:
            break
    by_cursor: list[list[str]] = []
    cursor: dict[str, str] = {}
    while True:
        page = content(org.viewer.get("/v0/devices/", {**query, **cursor}))
        by_cursor.append([d["id"] for d in page["results"]])
        if page["next_cursor"] is None:
            break
        cursor = {"cursor": page["next_cursor"]}

    assert by_cursor == by_offset
    assert [device for page in by_cursor for device in page] == [f"f{i:03d}" for i in range(0, 23, 3)]


def test_the_device_lists_schema_points_deep_pages_to_the_cursor(org: Org) -> None:
    schema = org.admin.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    devices = {p["name"]: p for p in schema["paths"]["/v0/devices/"]["get"]["parameters"]}
    operations = {p["name"]: p for p in schema["paths"]["/v0/operations/"]["get"]["parameters"]}

    assert "cursor" in devices and "next_cursor as cursor" in devices["offset"]["description"]
    assert "cursor" not in operations and "next_cursor" not in operations["offset"]["description"]
