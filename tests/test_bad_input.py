"""Hostile and broken input: always a 4xx with a JSON body that names what is wrong, never a
500 and never the database's own words.

First /v0/devices/ and /v0/groups/; then, across the API, timestamps no calendar has
(``config.timestamps``), JSON nested past the parser's limit inside the headless ``data``
string, and values PostgreSQL cannot store (NUL, non-finite numbers) in JSON and text fields.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import DataError, connection

from commands.models import CommandStatus
from config.api.exceptions import exception_handler
from inventory.models import Device, Group
from operations.models import HeadlessOperation, Operation
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org
from tests.helpers import error

HUGE = 10**30


def assert_4xx_naming(response: Any, field: str | None, status: int = 400) -> dict[str, Any]:
    body = error(response, status)
    assert response["Content-Type"].startswith("application/json")
    if field is not None:
        assert field in body["errors"] or f"{field}:" in body["message"], body
    return body


@pytest.fixture
def group(org: Org) -> Group:
    return Group.objects.create(tenant=org.tenant, name="kiosks")


# --- bodies -------------------------------------------------------------------------------------

WRITES = [
    ("post", "/v0/devices/"),
    ("put", "/v0/devices/dev-1/"),
    ("patch", "/v0/devices/dev-1/"),
    ("post", "/v0/devices/bulk/"),
    ("post", "/v0/groups/"),
    ("put", "/v0/groups/{group}/"),
    ("patch", "/v0/groups/{group}/"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize(
    "raw",
    [
        b"{bad json",
        b'{"name": "x",}',
        b"\xff\xfe{}",
        b'{"name": "unterminated',
        b"[" * 5000,
    ],
    ids=["broken", "trailing-comma", "not-utf8", "unterminated", "deep-nesting"],
)
def test_malformed_json_is_400_naming_the_body(
    org: Org, device: DeviceActor, group: Group, method: str, path: str, raw: bytes
) -> None:
    response = getattr(org.admin, method)(path.format(group=group.pk), raw=raw)

    assert_4xx_naming(response, "body")


DEVICE_TYPE_ERRORS = [
    ({"name": 5}, "name"),
    ({"name": HUGE}, "name"),
    ({"name": ["x"]}, "name"),
    ({"name": {"a": 1}}, "name"),
    ({"serial": True}, "serial"),
    ({"os": 1.5}, "os"),
    ({"model": "m" * 129}, "model"),
    ({"state": 1}, "state"),
    ({"state": "ACTIVE"}, "state"),
    ({"state": None}, "state"),
    ({"timezone": 0}, "timezone"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": "utc\x00"}, "timezone"),
    ({"tags": "a,b"}, "tags"),
    ({"tags": [1, 2]}, "tags"),
    ({"tags": [""]}, "tags"),
    ({"tags": ["x" * 65]}, "tags"),
    ({"tags": [str(i) for i in range(51)]}, "tags"),
    ({"tags": [["nested"]]}, "tags"),
    ({"groups": "kiosks"}, "groups"),
    ({"groups": [HUGE]}, "groups"),
    ({"name": "nul\x00byte"}, "name"),
    ({"tags": ["nul\x00"]}, "tags"),
    ({"name": "lone \ud800 surrogate"}, None),
    ({"tags": ["\udfff"]}, None),
]


@pytest.mark.parametrize(("body", "field"), DEVICE_TYPE_ERRORS)
def test_wrong_device_field_types_are_400_naming_the_field(
    org: Org, device: DeviceActor, body: dict[str, Any], field: str | None
) -> None:
    created = org.admin.post("/v0/devices/", {"id": "new-device", **body})
    patched = org.admin.patch("/v0/devices/dev-1/", body)
    bulk = org.admin.post("/v0/devices/bulk/", [{"id": "bulk-device", **body}])

    assert_4xx_naming(created, field)
    assert_4xx_naming(patched, field)
    errors = assert_4xx_naming(bulk, None)["errors"]
    if field is not None:
        assert field in errors["rows[0]"]
    assert list(Device.objects.values_list("device_id", flat=True)) == ["dev-1"]
    assert Device.objects.get(device_id="dev-1").name == "dev-1"


@pytest.mark.parametrize(
    "device_id",
    [5, HUGE, "", " ", "has space", "slash/inside", "-leading-dash", "x" * 129, "nul\x00", "é", ["a"]],
)
def test_bad_device_ids_are_400_naming_id(org: Org, device_id: Any) -> None:
    response = org.admin.post("/v0/devices/", {"id": device_id})

    assert_4xx_naming(response, "id")
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "name"),
        ({"name": HUGE}, "name"),
        ({"name": True}, "name"),
        ({"name": None}, "name"),
        ({"name": ["a"]}, "name"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "ok", "description": "nul\x00"}, "description"),
        ({"name": "ok", "description": 5}, "description"),
        ({"name": "lone \ud800"}, None),
    ],
)
def test_wrong_group_field_types_are_400_naming_the_field(
    org: Org, group: Group, body: dict[str, Any], field: str | None
) -> None:
    assert_4xx_naming(org.admin.post("/v0/groups/", body), field)
    assert_4xx_naming(org.admin.patch(f"/v0/groups/{group.pk}/", body), field)
    assert list(Group.objects.values_list("name", flat=True)) == ["kiosks"]


@pytest.mark.parametrize("body", [[], [{"id": "a"}], "a string", 42, HUGE, None, True])
def test_a_body_that_is_not_an_object_is_400(org: Org, device: DeviceActor, group: Group, body: Any) -> None:
    for method, path in WRITES:
        if path == "/v0/devices/bulk/":
            continue
        response = getattr(org.admin, method)(path.format(group=group.pk), body)
        assert_4xx_naming(response, None)
        assert "non_field_errors" in response.json()["errors"], (method, path, response.json())


def test_unicode_that_is_valid_is_accepted(org: Org) -> None:
    name = "Кіоск 🚀 مرحبا \u200b 終端"

    response = org.admin.post("/v0/devices/", {"id": "unicode-ok", "name": name, "tags": ["ü", "🏷"]})

    assert response.status_code == 201, response.content
    assert org.admin.get("/v0/devices/unicode-ok/").json()["content"]["name"] == name
    assert org.admin.post("/v0/groups/", {"name": name}).status_code == 201


# --- query strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": str(HUGE)}, "limit"),
        ({"offset": "99999999999999999999"}, "offset"),
        ({"limit": "1e3"}, "limit"),
        ({"limit": "\x00"}, "limit"),
        ({"offset": "0x10"}, "offset"),
        ({"name": "a\x00b"}, "name"),
        ({"os": "\x00"}, "os"),
        ({"model": "\x00"}, "model"),
        ({"tag": "\x00"}, "tag"),
        ({"group": "\x00"}, "group"),
        ({"state": "\x00"}, "state"),
        ({"state": "sleeping"}, "state"),
        ({"last_seen_after": "yesterday"}, "last_seen_after"),
        ({"last_seen_before": "\x00"}, "last_seen_before"),
        ({"last_seen_after": "99999-01-01T00:00:00Z"}, "last_seen_after"),
    ],
)
def test_bad_query_params_on_the_device_list_are_400(
    org: Org, device: DeviceActor, params: dict[str, str], field: str
) -> None:
    assert_4xx_naming(org.viewer.get("/v0/devices/", params), field)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"name": "\x00"}, "name"), ({"limit": str(HUGE)}, "limit"), ({"offset": "-1"}, "offset")],
)
def test_bad_query_params_on_the_group_list_are_400(org: Org, params: dict[str, str], field: str) -> None:
    assert_4xx_naming(org.viewer.get("/v0/groups/", params), field)


def test_bad_on_conflict_with_nul_is_400(org: Org) -> None:
    assert_4xx_naming(org.admin.post("/v0/devices/bulk/?on_conflict=%00", [{"id": "a"}]), "on_conflict")


def test_odd_but_harmless_filters_are_answered(org: Org, device: DeviceActor) -> None:
    for params in [
        {"tag": "🏷"},
        {"group": str(uuid.uuid4())},
        {"name": "%"},
        {"name": "_"},
        {"os": "' OR 1=1 --"},
    ]:
        response = org.viewer.get("/v0/devices/", params)
        assert response.status_code == 200, (params, response.content)
        assert response.json()["content"]["count"] == 0, params


# --- paths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "group_ref",
    ["not-a-uuid", "123", "%00", "00000000-0000-0000-0000-00000000000g", str(uuid.uuid4()), "%F0%9F%92%A9"],
)
def test_bad_or_unknown_group_ids_in_paths_are_404(org: Org, group: Group, group_ref: str) -> None:
    path = f"/v0/groups/{group_ref}/"

    assert_4xx_naming(org.admin.get(path), None, status=404)
    assert_4xx_naming(org.admin.patch(path, {"name": "x"}), None, status=404)
    assert_4xx_naming(org.admin.delete(path), None, status=404)
    assert Group.objects.get().name == "kiosks"


@pytest.mark.parametrize("device_ref", ["%00", "a%00b", "%F0%9F%92%A9", "x" * 300, "%ED%A0%80"])
def test_odd_device_ids_in_paths_are_404(org: Org, device: DeviceActor, device_ref: str) -> None:
    path = f"/v0/devices/{device_ref}/"

    assert_4xx_naming(org.admin.get(path), None, status=404)
    assert_4xx_naming(org.admin.patch(path, {"name": "x"}), None, status=404)
    assert_4xx_naming(org.admin.post(f"{path}rotate-token/"), None, status=404)


def test_a_body_too_large_is_413(org: Org, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = org.admin.post("/v0/devices/bulk/", [{"id": f"device-{i}"} for i in range(100)])

    assert_4xx_naming(response, None, status=413)
    assert not Device.objects.exists()


def test_a_device_id_with_a_trailing_newline_is_refused(org: Org) -> None:
    response = org.admin.post("/v0/devices/", {"id": "dev-1\n"})

    assert response.status_code == 400
    assert "id" in response.json()["errors"]


# --- timestamps (issue 12, item 2) --------------------------------------------------------------

NOT_A_DATE = "is not a valid date/time"
NAIVE = "must include a UTC offset"
OUT_OF_RANGE = "is out of range"

#: Each with the reason every place that reads a timestamp gives for it (config.timestamps).
IMPOSSIBLE_TIMESTAMPS = [
    ("2024-13-45T25:61:61Z", NOT_A_DATE),
    ("2024-02-30T00:00:00Z", NOT_A_DATE),
    ("2024-01-01T24:00:00Z", NOT_A_DATE),
    ("2030-01-01T00:00:00+24:00", NOT_A_DATE),
    ("2030-01-01T00:00:00+99:00", NOT_A_DATE),
    ("0001-01-01T00:00:00+14:00", OUT_OF_RANGE),
    ("9999-12-31T23:00:00-05:00", OUT_OF_RANGE),
    ("2030-01-01T00:00:00Z\x00junk", NOT_A_DATE),
    ("2030-01-01T00:00:00", NAIVE),
    ("tomorrow", NOT_A_DATE),
]
# In schedule_args and operation_device_query (JSON objects) a NUL is refused as such first.
IMPOSSIBLE_TIMESTAMPS_IN_JSON = [case for case in IMPOSSIBLE_TIMESTAMPS if "\x00" not in case[0]]
HEADLESS = "/api/v1/inventory_device_headless_operation/"
LEAKS = ("LINE 1", "DETAIL", "CONTEXT", "::jsonb", "Traceback", "timedelta", "OverflowError")


def assert_refused(response: Any, field: str, reason: str) -> None:
    """A 400 naming ``field`` with ``reason`` and nothing of Python's or PostgreSQL's words."""
    body = assert_4xx_naming(response, field)
    assert field in body["errors"], body
    assert any(reason in str(text) for text in body["errors"][field]), body
    assert not any(leak in response.content.decode() for leak in LEAKS), body


def window(start: str, end: str = "2999-01-01T00:00:00Z", **args: Any) -> dict[str, Any]:
    return {
        "operation_type": "REBOOT",
        "schedule_type": "WINDOW",
        "schedule_args": {"start_datetime": start, "end_datetime": end, **args},
        "operation_device_query": {"all": True},
    }


@pytest.mark.parametrize(("value", "reason"), IMPOSSIBLE_TIMESTAMPS_IN_JSON)
@pytest.mark.parametrize("time_type", ["console", "device"])
def test_impossible_window_datetimes_are_400_naming_the_field(
    org: Org, device: DeviceActor, value: str, reason: str, time_type: str
) -> None:
    starts = org.admin.post("/v0/operations/", window(value, time_type=time_type))
    ends = org.admin.post("/v0/operations/", window("2030-01-01T00:00:00Z", value, time_type=time_type))

    assert_refused(starts, "schedule_args.start_datetime", reason)
    assert_refused(ends, "schedule_args.end_datetime", reason)
    assert not Operation.objects.exists()


@pytest.mark.parametrize(("value", "reason"), IMPOSSIBLE_TIMESTAMPS_IN_JSON)
@pytest.mark.parametrize("lookup", ["last_seen__gte", "created_at__lt"])
def test_impossible_datetimes_in_device_query_filters_are_400(
    org: Org, device: DeviceActor, value: str, reason: str, lookup: str
) -> None:
    query = {"operation_type": "REBOOT", "operation_device_query": {"filters": {lookup: value}}}

    assert_refused(
        org.admin.post("/v0/operations/preview/", query), f"operation_device_query.filters.{lookup}", reason
    )
    assert_refused(
        org.admin.post("/v0/operations/", query), f"operation_device_query.filters.{lookup}", reason
    )
    assert not Operation.objects.exists()


@pytest.mark.parametrize(("value", "reason"), IMPOSSIBLE_TIMESTAMPS)
def test_impossible_headless_scheduled_at_is_400(
    org: Org, device: DeviceActor, value: str, reason: str
) -> None:
    made = {"device_id": "dev-1", "operation_type": "reboot", "scheduled_at": value}

    assert_refused(org.admin.post(HEADLESS, made), "scheduled_at", reason)
    assert_refused(org.admin.post(HEADLESS, {"data": json.dumps(made)}), "scheduled_at", reason)
    assert not HeadlessOperation.objects.exists()


@pytest.mark.parametrize(("value", "reason"), IMPOSSIBLE_TIMESTAMPS)
@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v0/devices/", "last_seen_after"),
        ("/v0/devices/", "last_seen_before"),
        ("/v0/operations/", "created_after"),
        ("/v0/operations/", "created_before"),
    ],
)
def test_impossible_datetimes_in_list_filters_are_400(
    org: Org, path: str, param: str, value: str, reason: str
) -> None:
    assert_refused(org.viewer.get(path, {param: value}), param, reason)


def test_timestamps_with_an_offset_are_read_alike_everywhere(org: Org, device: DeviceActor) -> None:
    """The one parser keeps what worked: any offset under a day, ``Z``, a space for ``T``."""
    for value in ("2030-06-01T12:00:00+13:45", "2030-06-01 12:00:00Z", "2030-06-01T12:00:00.5-0930"):
        created = org.admin.post("/v0/operations/", window(value))
        assert created.status_code == 201, created.content
        query = {"operation_type": "REBOOT", "operation_device_query": {"filters": {"last_seen__lt": value}}}
        assert org.admin.post("/v0/operations/preview/", query).status_code == 200
        made = {"device_id": "dev-1", "operation_type": "reboot", "scheduled_at": value}
        assert org.admin.post(HEADLESS, made).status_code == 201
        assert org.viewer.get("/v0/devices/", {"last_seen_before": value}).status_code == 200


# --- JSON inside the headless ``data`` string (issue 12, item 4) --------------------------------

DEEP = 100_000


@pytest.mark.parametrize(
    "inner",
    ["[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP, "[" * DEEP],
    ids=["lists", "objects", "unclosed"],
)
def test_json_nested_too_deeply_in_headless_data_is_400_naming_data(
    org: Org, device: DeviceActor, inner: str
) -> None:
    response = org.admin.post(HEADLESS, {"data": inner})

    assert_refused(response, "data", "is not valid JSON")
    assert not HeadlessOperation.objects.exists()


def test_headless_data_refuses_what_the_body_parser_refuses(org: Org, device: DeviceActor) -> None:
    made = '{"device_id": "dev-1", "operation_type": "reboot", "parameters": {"level": %s}}'

    assert_refused(
        org.admin.post(HEADLESS, {"data": made % "NaN"}), "data.parameters.level", "NaN is not valid"
    )
    assert_refused(org.admin.post(HEADLESS, {"data": made % "-Infinity"}), "data.parameters.level", "finite")
    assert_refused(org.admin.post(HEADLESS, {"data": made % "1e99999"}), "data.parameters.level", "finite")
    assert_refused(
        org.admin.post(HEADLESS, {"data": made % '"\\udc00"'}), "data.parameters.level", "surrogate"
    )
    assert not HeadlessOperation.objects.exists()


# --- numbers that are not finite (issue 12, item 7) ---------------------------------------------

FINITE_REASON = "numbers must be finite"


def with_huge_number(body: Any) -> str:
    """``body`` as JSON text with each ``"HUGE"`` written as ``1e99999``: valid JSON, which
    Python reads as infinity and PostgreSQL's jsonb refuses."""
    return json.dumps(body).replace('"HUGE"', "1e99999")


def operation(**fields: Any) -> dict[str, Any]:
    return {"operation_type": "REBOOT", "operation_device_query": {"all": True}, **fields}


def headless(**fields: Any) -> dict[str, Any]:
    return {"device_id": "dev-1", "operation_type": "reboot", **fields}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v0/operations/", operation(arguments={"level": "HUGE"}), "arguments.level"),
        ("/v0/operations/", operation(arguments={"a": [1, {"b": "HUGE"}]}), "arguments.a[1].b"),
        ("/v0/operations/preview/", operation(arguments={"level": "HUGE"}), "arguments.level"),
        (HEADLESS, headless(parameters={"level": "HUGE"}), "parameters.level"),
        ("/v0/devices/", {"id": "d-2", "name": "HUGE"}, "name"),
        ("/v0/devices/bulk/", [{"id": "d-2", "name": "HUGE"}], "body[0].name"),
        ("/v0/groups/", {"name": "HUGE"}, "name"),
    ],
)
@pytest.mark.parametrize("literal", ["1e99999", "-1E+400", "NaN", "Infinity", "-Infinity"])
def test_numbers_that_are_not_finite_are_400_naming_the_field(
    org: Org, device: DeviceActor, path: str, body: Any, field: str, literal: str
) -> None:
    response = org.admin.post(path, raw=json.dumps(body).replace('"HUGE"', literal))

    assert_refused(response, field, FINITE_REASON)
    assert literal in response.json()["errors"][field][0]
    assert not Operation.objects.exists() and not HeadlessOperation.objects.exists()
    assert Device.objects.count() == 1 and not Group.objects.exists()


# --- NUL, and the database's own words (issue 12, item 7) ---------------------------------------

NUL_REASON = "must not contain the NUL character (\\u0000)"


NUL_IN_JSON_FIELDS = [
    ("/v0/operations/", operation(arguments={"url": "x\x00y"}), "arguments", "(at url)"),
    ("/v0/operations/", operation(arguments={"k\x00": 1}), "arguments", "(at k\\u0000)"),
    ("/v0/operations/", operation(arguments={"a": [{"b": ["\x00"]}]}), "arguments", "(at a[0].b[0])"),
    (
        "/v0/operations/",
        {**operation(), "operation_device_query": {"devices": ["a\x00"]}},
        "operation_device_query",
        "devices[0]",
    ),
    ("/v0/operations/", operation(schedule_args={"timezone": "UTC\x00"}), "schedule_args", "timezone"),
    (HEADLESS, headless(parameters={"path": "/tmp/\x00"}), "parameters", "(at path)"),
    (HEADLESS, {"data": json.dumps(headless(parameters={"\x00": 1}))}, "parameters", "(at \\u0000)"),
]


@pytest.mark.parametrize(("path", "body", "field", "where"), NUL_IN_JSON_FIELDS)
def test_nul_in_json_fields_is_400_naming_the_field_not_the_database(
    org: Org, device: DeviceActor, path: str, body: dict[str, Any], field: str, where: str
) -> None:
    response = org.admin.post(path, body)

    assert_refused(response, field, NUL_REASON)
    assert where in response.json()["errors"][field][0]
    assert not Operation.objects.exists() and not HeadlessOperation.objects.exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"devices": ["dev-1", "a\x00"]}, "operation_device_query.devices"),
        ({"groups": ["\x00"]}, "operation_device_query.groups"),
        ({"filters": {"name": "\x00"}}, "operation_device_query.filters.name"),
        ({"filters": {"tags__contains": ["ok", "\x00"]}}, "operation_device_query.filters.tags__contains"),
    ],
)
def test_nul_in_a_previewed_device_query_is_400_naming_the_key(
    org: Org, device: DeviceActor, query: dict[str, Any], field: str
) -> None:
    """Preview reads only the query (no serializer field): the query's own checks refuse it."""
    response = org.admin.post("/v0/operations/preview/", {"operation_device_query": query})

    assert_refused(response, field, "NUL character")


@pytest.fixture
def command(org: Org, device: DeviceActor) -> CommandStatus:
    return command_of(dispatched_operation(org.tenant, [device]), device)


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (json.dumps({"state": "Command Failure", "details": {"log": "a\x00b"}}), "details", NUL_REASON),
        (json.dumps({"state": "Command Failure", "details": "\x00"}), "details", NUL_REASON),
        (json.dumps({"state": "Command Failure", "details": ["\x00"]}), "details", NUL_REASON),
        (json.dumps({"state": "Command Failure", "details": {"\x00": 1}}), "details", NUL_REASON),
        (
            with_huge_number({"state": "Command Failure", "details": {"t": "HUGE"}}),
            "details.t",
            FINITE_REASON,
        ),
        (with_huge_number({"state": "Command Failure", "details": "HUGE"}), "details", FINITE_REASON),
        (
            json.dumps({"state": "Command Failure", "reason": "disk\x00full"}),
            "reason",
            "Null characters are not allowed",
        ),
        ('{"state": "Command Failure", "details": {"t": NaN}}', "details.t", "NaN is not valid JSON"),
        ('{"state": "Command Failure", "details": [1, -Infinity]}', "details[1]", "Infinity is not valid"),
    ],
)
@pytest.mark.parametrize("who", ["device", "admin"])
def test_unstorable_status_reports_are_400_and_change_nothing(
    org: Org, device: DeviceActor, command: CommandStatus, raw: str, field: str, reason: str, who: str
) -> None:
    client = device.api if who == "device" else org.admin
    before = (command.state, command.details, command.version)

    response = client.put(f"/commands/v0/status/{command.pk}/", raw=raw)

    assert_refused(response, field, reason)
    command.refresh_from_db()
    assert (command.state, command.details, command.version) == before


def test_nul_in_text_fields_of_operations_and_headless_writes_is_400(org: Org, device: DeviceActor) -> None:
    created = org.admin.post("/v0/operations/", operation()).json()["content"]
    made = org.admin.post(HEADLESS, headless()).json()

    cancelled = org.admin.put(f"/v0/operations/{created['id']}/", {"state": "CANCELLED", "reason": "\x00"})
    stopped = org.admin.post(f"{HEADLESS}{made['id']}/cancel/", {"reason": "no\x00"})

    assert_refused(cancelled, "reason", "Null characters are not allowed")
    assert_refused(stopped, "reason", "Null characters are not allowed")
    assert Operation.objects.get().state_name == "CREATED"


def test_a_data_error_the_validators_missed_answers_without_the_databases_words(db: None) -> None:
    """The net under the validators (config/api/exceptions.py): a real DataError, generic 400."""
    with pytest.raises(DataError) as caught, connection.cursor() as cursor:
        cursor.execute("SELECT %s::jsonb", ['{"a": "\\u0000"}'])

    response = exception_handler(caught.value, {})

    assert response is not None and response.status_code == 400
    text = json.dumps(response.data)
    assert "out of range or cannot be stored" in text
    assert not any(leak in text for leak in (*LEAKS, "u0000", "jsonb", "converted"))


#: Each enum or timestamp filter of the lists: the schema says one of the enum's values or a
#: ``date-time``, so an empty value is refused, not read as "no filter" (schemathesis).
EMPTY_FILTERS = [
    ("/v0/devices/", "state"),
    ("/v0/devices/", "last_seen_after"),
    ("/v0/devices/", "last_seen_before"),
    ("/v0/operations/", "state"),
    ("/v0/operations/", "operation_type"),
    ("/v0/operations/", "created_after"),
    ("/v0/operations/", "created_before"),
    ("/commands/v0/status/", "state"),
    ("/api/v1/inventory_device_headless_operation/", "status"),
]


@pytest.mark.parametrize(("path", "name"), EMPTY_FILTERS, ids=[f"{p}?{n}" for p, n in EMPTY_FILTERS])
@pytest.mark.parametrize("value", ["", " "], ids=["empty", "blank"])
def test_an_empty_enum_or_timestamp_filter_is_400_naming_it(
    org: Org, path: str, name: str, value: str
) -> None:
    response = org.viewer.client.get(f"{path}?{name}={value}", **org.viewer._headers())

    assert_4xx_naming(response, name)
    assert response.status_code == 400
    assert "leave the parameter out" in response.json()["errors"][name][0]


@pytest.mark.parametrize(("path", "name"), EMPTY_FILTERS, ids=[f"{p}?{n}" for p, n in EMPTY_FILTERS])
def test_an_absent_filter_is_no_filter(org: Org, path: str, name: str) -> None:
    assert org.viewer.get(path).status_code == 200


# --- invalid choices name the valid values (issue 26) -----------------------------------------


def test_an_invalid_choice_names_the_valid_values(org: Org) -> None:
    """A short list is written out; a long one (90 operation types) gives the closest and where
    the rest are listed; a list filter says the same. ``error_code`` stays ``invalid``."""
    created = org.admin.post(
        "/v0/operations/",
        {"operation_type": "REBOOT", "schedule_type": "NOW", "operation_device_query": {"all": True}},
    )
    body = assert_4xx_naming(created, "schedule_type")
    assert body["error_code"] == "invalid"
    assert body["errors"]["schedule_type"] == [
        '"NOW" is not a valid choice; valid values: IMMEDIATE, WINDOW, RECURRING.'
    ], body

    typo = org.admin.post(
        "/v0/operations/", {"operation_type": "install_ota", "operation_device_query": {"all": True}}
    )
    body = assert_4xx_naming(typo, "operation_type")
    [message] = body["errors"]["operation_type"]
    assert message.startswith('"install_ota" is not a valid choice; closest: INSTALL_OTA')
    assert "/api/schema/" in message and "values" in message

    nested = org.admin.post("/v0/webhooks/", {"url": "https://93.184.216.34/h", "events": ["device.creatd"]})
    text = json.dumps(assert_4xx_naming(nested, "events")["errors"])
    assert '\\"device.creatd\\" is not a valid choice;' in text and "device.created" in text, text

    listed = org.admin.get("/v0/operations/", {"operation_type": "REBOTO"})
    body = assert_4xx_naming(listed, "operation_type")
    assert "closest: REBOOT" in body["errors"]["operation_type"][0], body


def _serializer_classes() -> list[type]:
    """Every serializer class of the project's API modules."""
    import importlib
    import inspect
    import pkgutil

    from rest_framework import serializers

    found = []
    for package in ("inventory.api", "commands.api", "operations.api", "maintenance.api"):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            loaded = importlib.import_module(f"{package}.{info.name}")
            found += [
                value
                for value in vars(loaded).values()
                if inspect.isclass(value)
                and issubclass(value, serializers.BaseSerializer)
                and value.__module__ == loaded.__name__
            ]
    return found


def test_every_choice_field_of_the_api_names_the_valid_values() -> None:
    """No DRF ``ChoiceField`` that reads input left in a serializer (declared, or made by a
    ModelSerializer from a model's choices): each is ``config.api.fields.ChoiceField``."""
    from rest_framework import serializers

    from config.api.fields import ChoiceField

    def walk(fields: Any, where: str) -> list[str]:
        wrong = []
        for name, field in fields.items():
            here = f"{where}.{name}"
            if field.read_only:
                continue  # never reads input, so never refuses a value
            if isinstance(field, serializers.ChoiceField) and not isinstance(field, ChoiceField):
                wrong.append(here)
            child = getattr(field, "child", None)
            if isinstance(child, serializers.ChoiceField) and not isinstance(child, ChoiceField):
                wrong.append(f"{here}[]")
            if isinstance(field, serializers.BaseSerializer) and hasattr(field, "fields"):
                wrong += walk(field.fields, here)
        return wrong

    classes = _serializer_classes()
    assert len(classes) > 10
    wrong = []
    for cls in classes:
        try:
            instance = cls()
        except Exception:
            continue  # a serializer that needs its context: its declared fields are checked below
        if hasattr(instance, "fields"):
            wrong += walk(instance.fields, cls.__name__)
        wrong += walk(getattr(cls, "_declared_fields", {}), cls.__name__)
    assert wrong == []
