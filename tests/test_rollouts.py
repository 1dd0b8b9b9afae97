"""Rollouts (contract section 9): waves, rate, abort rules, retries, the in-progress timeout,
pause and resume, through the API and the inbox, on PostgreSQL and the configured cache."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from typing import Any

import jsonschema
import pytest
from django.db.models import Count
from django.utils import timezone

from commands import counting
from commands import sweeps as delivery
from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus
from commands.services import report
from config.errors import DomainError
from inventory.models import Device
from inventory.services import bulk_import_devices
from operations import rollouts
from operations.choices import OperationState
from operations.fanout import fan_out
from operations.models import Operation, OperationActivity
from operations.services import create_operation
from operations.stopping import stop_commands
from operations.sweeps import open_windows, run_all
from tests.command_factories import command_of, dispatched_operation, run_in_threads
from tests.conftest import DeviceActor, Org, add_device, add_devices
from tests.helpers import INBOX, content, error, openapi_document, poll, stored_counts

C = CommandState
S = OperationState
OPS = "/v0/operations/"


def put(actor: DeviceActor, command: CommandStatus, state: str, **body: Any) -> Any:
    return actor.api.put(f"/commands/v0/status/{command.pk}/", {"state": state, **body})


def spread_order(actors: list[DeviceActor]) -> list[DeviceActor]:
    """The wave order the contract asks for: by a hash of the device id."""
    return sorted(actors, key=lambda a: (hashlib.md5(a.device.device_id.encode()).hexdigest(), a.device.pk))


def detail(org: Org, operation: Operation) -> dict[str, Any]:
    return dict(content(org.admin.get(f"{OPS}{operation.pk}/")))


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rollout", "field"),
    [
        ("fast", "rollout"),
        ({"waves": [10, 5, 100]}, "rollout.waves"),
        ({"waves": [10, 50]}, "rollout.waves"),
        ({"waves": []}, "rollout.waves"),
        ({"waves": [0, 100]}, "rollout.waves[0]"),
        ({"waves": ["10", 100]}, "rollout.waves[0]"),
        ({"waves": [10**400, 100]}, "rollout.waves[0]"),
        ({"wave_success_percent": -(10**400)}, "rollout.wave_success_percent"),
        ({"waves": [*range(1, 21), 100]}, "rollout.waves"),
        ({"wave_success_percent": 101}, "rollout.wave_success_percent"),
        ({"max_per_minute": 0}, "rollout.max_per_minute"),
        ({"max_per_minute": 100_001}, "rollout.max_per_minute"),
        ({"max_per_minute": 1.5}, "rollout.max_per_minute"),
        ({"abort": [{"failure_type": "BROKEN", "threshold_percent": 10}]}, "rollout.abort[0].failure_type"),
        (
            {"abort": [{"failure_type": "FAILED", "threshold_percent": 0}]},
            "rollout.abort[0].threshold_percent",
        ),
        ({"abort": [{"failure_type": "FAILED"}]}, "rollout.abort[0].threshold_percent"),
        (
            {"abort": [{"failure_type": "ALL", "threshold_percent": 5, "min_executed": 0}]},
            "rollout.abort[0].min_executed",
        ),
        ({"abort": {"failure_type": "FAILED"}}, "rollout.abort"),
        ({"retries": [{"failure_type": "FAILED", "max_attempts": 11}]}, "rollout.retries[0].max_attempts"),
        ({"retries": [{"failure_type": "TIMED_OUT"}]}, "rollout.retries[0].max_attempts"),
        ({"retries": ["FAILED"]}, "rollout.retries[0]"),
        ({"in_progress_timeout_minutes": 0}, "rollout.in_progress_timeout_minutes"),
        ({"speed": 3}, "rollout.speed"),
    ],
)
def test_a_bad_rollout_is_a_400_naming_the_field(
    org: Org, device: DeviceActor, rollout: Any, field: str
) -> None:
    response = org.admin.post(
        OPS,
        {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "rollout": rollout},
    )
    body = error(response, 400)
    assert field in body["errors"], body
    assert not Operation.objects.exists()


# --- the parser and the published schema: the same edge values through both ------------------------

RULE = {"failure_type": "FAILED", "threshold_percent": 10}
RETRY = {"failure_type": "TIMED_OUT", "max_attempts": 3}

#: Rollouts at the edges of every range and key, each with the field the parser refuses (None:
#: taken). The published schema must refuse the same ones, naming the same field.
EDGES: list[tuple[Any, str | None]] = [
    ({}, None),
    ("fast", "rollout"),
    ([], "rollout"),
    ({"speed": 3}, "rollout.speed"),
    # waves: 0 < p <= 100, 1 to MAX_WAVES of them
    ({"waves": None}, None),
    ({"waves": [100]}, None),
    ({"waves": [0.001, 100]}, None),
    ({"waves": list(range(5, 101, 5))}, None),
    ({"waves": [*range(1, 21), 100]}, "rollout.waves"),
    ({"waves": []}, "rollout.waves"),
    ({"waves": "10"}, "rollout.waves"),
    ({"waves": [0, 100]}, "rollout.waves[0]"),
    ({"waves": [100.001]}, "rollout.waves[0]"),
    ({"waves": ["10", 100]}, "rollout.waves[0]"),
    ({"waves": [True, 100]}, "rollout.waves[0]"),
    ({"waves": [10**400, 100]}, "rollout.waves[0]"),
    # wave_success_percent: 0 <= p <= 100
    ({"wave_success_percent": None}, None),
    ({"wave_success_percent": 0}, None),
    ({"wave_success_percent": 100}, None),
    ({"wave_success_percent": -0.001}, "rollout.wave_success_percent"),
    ({"wave_success_percent": 100.001}, "rollout.wave_success_percent"),
    ({"wave_success_percent": "90"}, "rollout.wave_success_percent"),
    ({"wave_success_percent": True}, "rollout.wave_success_percent"),
    # max_per_minute: an integer, 1 to MAX_PER_MINUTE
    ({"max_per_minute": None}, None),
    ({"max_per_minute": 1}, None),
    ({"max_per_minute": rollouts.MAX_PER_MINUTE}, None),
    ({"max_per_minute": 0}, "rollout.max_per_minute"),
    ({"max_per_minute": rollouts.MAX_PER_MINUTE + 1}, "rollout.max_per_minute"),
    ({"max_per_minute": 1.5}, "rollout.max_per_minute"),
    ({"max_per_minute": True}, "rollout.max_per_minute"),
    # abort: at most MAX_RULES rules; 0 < threshold_percent <= 100; min_executed 1 to MAX_MIN_EXECUTED
    ({"abort": None}, None),
    ({"abort": []}, None),
    ({"abort": [RULE] * rollouts.MAX_RULES}, None),
    ({"abort": [RULE] * (rollouts.MAX_RULES + 1)}, "rollout.abort"),
    ({"abort": RULE}, "rollout.abort"),
    ({"abort": ["FAILED"]}, "rollout.abort[0]"),
    ({"abort": [{**RULE, "failure_type": "ALL"}]}, None),
    ({"abort": [{**RULE, "failure_type": "TIMED_OUT"}]}, None),
    ({"abort": [{**RULE, "failure_type": "BROKEN"}]}, "rollout.abort[0].failure_type"),
    ({"abort": [{"threshold_percent": 10}]}, "rollout.abort[0].failure_type"),
    ({"abort": [{**RULE, "threshold_percent": 0.001}]}, None),
    ({"abort": [{**RULE, "threshold_percent": 100}]}, None),
    ({"abort": [{**RULE, "threshold_percent": 0}]}, "rollout.abort[0].threshold_percent"),
    ({"abort": [{**RULE, "threshold_percent": 100.001}]}, "rollout.abort[0].threshold_percent"),
    ({"abort": [{**RULE, "threshold_percent": "10"}]}, "rollout.abort[0].threshold_percent"),
    ({"abort": [{"failure_type": "FAILED"}]}, "rollout.abort[0].threshold_percent"),
    ({"abort": [{**RULE, "min_executed": 1}]}, None),
    ({"abort": [{**RULE, "min_executed": rollouts.MAX_MIN_EXECUTED}]}, None),
    ({"abort": [{**RULE, "min_executed": 0}]}, "rollout.abort[0].min_executed"),
    ({"abort": [{**RULE, "min_executed": rollouts.MAX_MIN_EXECUTED + 1}]}, "rollout.abort[0].min_executed"),
    ({"abort": [{**RULE, "min_executed": 1.0}]}, "rollout.abort[0].min_executed"),
    ({"abort": [{**RULE, "min_executed": None}]}, "rollout.abort[0].min_executed"),
    ({"abort": [{**RULE, "speed": 3}]}, "rollout.abort[0].speed"),
    # retries: at most one rule per failure type; max_attempts 1 to MAX_ATTEMPTS
    ({"retries": None}, None),
    ({"retries": [{**RETRY, "failure_type": kind} for kind in rollouts.FAILURE_TYPES]}, None),
    ({"retries": [RETRY] * (rollouts.MAX_RETRY_RULES + 1)}, "rollout.retries"),
    ({"retries": [{**RETRY, "max_attempts": 1}]}, None),
    ({"retries": [{**RETRY, "max_attempts": rollouts.MAX_ATTEMPTS}]}, None),
    ({"retries": [{**RETRY, "max_attempts": 0}]}, "rollout.retries[0].max_attempts"),
    ({"retries": [{**RETRY, "max_attempts": rollouts.MAX_ATTEMPTS + 1}]}, "rollout.retries[0].max_attempts"),
    ({"retries": [{"failure_type": "FAILED"}]}, "rollout.retries[0].max_attempts"),
    ({"retries": [{**RETRY, "failure_type": "BROKEN"}]}, "rollout.retries[0].failure_type"),
    ({"retries": [{**RETRY, "speed": 3}]}, "rollout.retries[0].speed"),
    # in_progress_timeout_minutes: an integer, 1 to MAX_TIMEOUT_MINUTES
    ({"in_progress_timeout_minutes": None}, None),
    ({"in_progress_timeout_minutes": 1}, None),
    ({"in_progress_timeout_minutes": rollouts.MAX_TIMEOUT_MINUTES}, None),
    ({"in_progress_timeout_minutes": 0}, "rollout.in_progress_timeout_minutes"),
    (
        {"in_progress_timeout_minutes": rollouts.MAX_TIMEOUT_MINUTES + 1},
        "rollout.in_progress_timeout_minutes",
    ),
]


def _json_schema(node: Any, components: dict[str, Any]) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema draft 4 (which reads ``exclusiveMinimum`` as 3.0
    writes it): references inlined, ``nullable`` as a ``null`` type."""
    if isinstance(node, list):
        return [_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].rsplit("/", 1)[1]], components)
    out = {key: _json_schema(value, components) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _published_rollout() -> jsonschema.Draft4Validator:
    """What the published document says a request's ``rollout`` is."""
    components = openapi_document()["components"]["schemas"]
    return jsonschema.Draft4Validator(_json_schema(components["RolloutRequest"], components))


def _field(path: Any, message: str = "", validator: str = "") -> str:
    name = "rollout" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    if validator in ("required", "additionalProperties"):  # the key at fault is in the message
        name += "." + re.findall(r"'([^']+)'", message)[0]
    return name


def _refused_by_schema(rollout: Any) -> str | None:
    fields = {
        _field(e.absolute_path, e.message, str(e.validator))
        for e in _published_rollout().iter_errors(rollout)
    }
    assert len(fields) <= 1, fields
    return fields.pop() if fields else None


def _refused_by_parser(rollout: Any) -> str | None:
    try:
        rollouts.parse(rollout)
    except DomainError as refused:
        [field] = refused.errors
        return field
    return None


@pytest.mark.parametrize(("rollout", "field"), EDGES)
def test_the_parser_and_the_published_schema_refuse_the_same_rollouts(
    org: Org, rollout: Any, field: str | None
) -> None:
    assert _refused_by_parser(rollout) == field
    assert _refused_by_schema(rollout) == field

    response = org.admin.post(
        OPS, {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "rollout": rollout}
    )
    if field is None:
        assert response.status_code == 201, response.content
    else:
        assert field in error(response, 400, "invalid_rollout")["errors"]


@pytest.mark.parametrize(
    ("rollout", "field"),
    [
        # What a schema cannot say (it is in the description): the order of the waves.
        ({"waves": [10, 5, 100]}, "rollout.waves"),
        ({"waves": [10, 50]}, "rollout.waves"),
        # An empty value of another type than a list is taken as no rules: kept as it was.
        ({"abort": False}, None),
        ({"abort": {}}, None),
        ({"retries": 0}, None),
        ({"retries": ""}, None),
        # Two retry rules of one type (in the description: a schema has no "unique by key").
        (
            {
                "retries": [
                    {"failure_type": "FAILED", "max_attempts": 2},
                    {"failure_type": "FAILED", "max_attempts": 5},
                ]
            },
            "rollout.retries[1].failure_type",
        ),
        ({"retries": [{"failure_type": "ALL", "max_attempts": 3}] * 2}, "rollout.retries[1].failure_type"),
    ],
)
def test_where_the_parser_and_the_schema_differ(rollout: Any, field: str | None) -> None:
    assert _refused_by_parser(rollout) == field
    assert _refused_by_schema(rollout) != field


def test_a_rollout_is_shown_back_with_its_defaults_and_status(org: Org) -> None:
    devices = add_devices(org.tenant, 4)
    operation = dispatched_operation(org.tenant, devices, rollout={"waves": [50, 100], "max_per_minute": 10})

    shown = detail(org, operation)

    assert shown["rollout"]["waves"] == [50, 100]
    assert shown["rollout"]["wave_success_percent"] == 90
    assert shown["rollout_status"]["current_wave"] == 1
    assert [(w["wave"], w["devices"], w["state"]) for w in shown["rollout_status"]["waves"]] == [
        (1, 2, "OPEN"),
        (2, 2, "WAITING"),
    ]
    assert shown["rollout_status"]["handed_out_last_minute"] == 0
    plain = dispatched_operation(org.tenant, devices)
    assert detail(org, plain)["rollout"] is None and detail(org, plain)["rollout_status"] is None


# --- waves ---------------------------------------------------------------------------------------


def test_waves_hold_a_spread_sample_and_open_one_after_the_other(org: Org) -> None:
    devices = add_devices(org.tenant, 10)
    operation = dispatched_operation(org.tenant, devices, rollout={"waves": [10, 50, 100]})
    order = spread_order(devices)

    # wave 1 is the first ceil(10% of 10) = 1 device in hash order; wave 2 the next 4; wave 3 the rest
    waves = {a.device.device_id: command_of(operation, a).wave for a in devices}
    assert [waves[a.device.device_id] for a in order] == [1, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    # and only wave 1 is handed out
    assert [bool(poll(a)) for a in order] == [True] + [False] * 9
    listed = content(org.admin.get("/commands/v0/status/", {"request": str(operation.pk), "limit": 20}))
    assert sorted(item["wave"] for item in listed["results"]) == sorted(waves.values())
    assert {item["attempt"] for item in listed["results"]} == {1}

    # when wave 1's device succeeds, wave 2 opens at once
    assert put(order[0], command_of(operation, order[0]), "Command Success").status_code == 200
    operation.refresh_from_db()
    assert operation.current_wave == 2
    assert [bool(poll(a)) for a in order[1:]] == [True] * 4 + [False] * 5

    # and when wave 2 finishes at or above 90%, wave 3 opens, and the operation ends
    for actor in order[1:5]:
        put(actor, command_of(operation, actor), "Command Success")
    assert [bool(poll(a)) for a in order[5:]] == [True] * 5
    for actor in order[5:]:
        put(actor, command_of(operation, actor), "Command Success")
    operation.refresh_from_db()
    assert operation.state == S.SUCCESS
    assert [w["state"] for w in detail(org, operation)["rollout_status"]["waves"]] == ["DONE"] * 3


def test_a_wave_below_its_threshold_pauses_and_resuming_opens_the_next(org: Org) -> None:
    devices = add_devices(org.tenant, 10)
    operation = dispatched_operation(
        org.tenant, devices, rollout={"waves": [20, 100], "wave_success_percent": 60}
    )
    first = spread_order(devices)[:2]
    put(first[0], command_of(operation, first[0]), "Command Success")
    put(first[1], command_of(operation, first[1]), "Command Failure", reason="disk full")

    shown = detail(org, operation)
    assert shown["state"] == "PAUSED" and shown["state_code"] == 130
    assert shown["reason"].startswith("wave 1 closed with 50.0% succeeded, below wave_success_percent 60%")
    assert shown["rollout_status"]["waves"][0]["state"] == "DONE"
    assert shown["rollout_status"]["waves"][0]["failed"] == 1
    rest = spread_order(devices)[2:]
    assert not any(poll(a) for a in rest)

    resumed = org.admin.put(f"{OPS}{operation.pk}/", {"state": "RESUMED"})

    assert content(resumed)["state"] == "PROCESSING"
    operation.refresh_from_db()
    assert operation.current_wave == 2 and operation.paused_from is None
    assert all(poll(a) for a in rest)


def test_one_percent_waves_on_ten_thousand_devices(org: Org) -> None:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"fleet-{i:05d}"} for i in range(10_000)])
    created = create_operation(
        org.tenant.pk,
        {
            "operation_type": "REBOOT",
            "operation_device_query": {"all": True},
            "rollout": {"waves": [1, 10, 100]},
        },
        "tests",
    )
    fan_out(created.pk)

    by_wave = dict(
        CommandStatus.objects.filter(operation=created).values_list("wave").annotate(n=Count("pk"))
    )
    assert by_wave == {1: 100, 2: 900, 3: 9000}
    first_wave = set(
        CommandStatus.objects.filter(operation=created, wave=1).values_list("device__device_id", flat=True)
    )
    expected = sorted(
        Device.objects.filter(tenant=org.tenant).values_list("device_id", flat=True),
        key=lambda d: hashlib.md5(d.encode()).hexdigest(),
    )[:100]
    assert first_wave == set(expected)
    # a sample of the fleet, not its first ids
    assert max(first_wave) > "fleet-05000" and min(first_wave) < "fleet-05000"


def test_waves_work_with_device_local_windows(org: Org) -> None:
    devices = [add_device(org.tenant, f"tz-{i}", timezone="Asia/Tokyo") for i in range(4)]
    now = timezone.now()
    operation = dispatched_operation(
        org.tenant,
        devices,
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": (now - dt.timedelta(days=1)).isoformat(),
            "end_datetime": (now + dt.timedelta(days=30)).isoformat(),
            "time_type": "device",
        },
        rollout={"waves": [50, 100]},
    )
    # a 24-hour window in device time is always open: every command is released, one wave handed out
    open_windows(now + dt.timedelta(days=1, minutes=1))
    order = spread_order(devices)
    assert [bool(poll(a)) for a in order] == [True, True, False, False]
    for actor in order[:2]:
        put(actor, command_of(operation, actor), "Command Success")
    assert [bool(poll(a)) for a in order[2:]] == [True, True]


# --- rate ----------------------------------------------------------------------------------------


def test_max_per_minute_holds_back_what_does_not_fit(org: Org) -> None:
    devices = add_devices(org.tenant, 6)
    operation = dispatched_operation(org.tenant, devices, rollout={"max_per_minute": 3})

    answers = [a.api.get(INBOX, {"device_id": a.device.device_id}) for a in devices]

    handed = [len(r.json()["content"]["results"]) for r in answers]
    assert sum(handed) == 3
    held = [r for r, n in zip(answers, handed, strict=True) if n == 0]
    assert all("ETag" not in r for r in held), "a held-back device must not be told 'nothing new'"
    assert detail(org, operation)["rollout_status"]["handed_out_last_minute"] == 3
    assert CommandStatus.objects.filter(operation=operation, state=C.QUEUED).count() == 3


# --- abort ---------------------------------------------------------------------------------------


def test_an_abort_rule_cancels_the_operation_and_its_unfinished_commands(org: Org) -> None:
    devices = add_devices(org.tenant, 10)
    operation = dispatched_operation(
        org.tenant,
        devices,
        rollout={"abort": [{"failure_type": "FAILED", "threshold_percent": 50, "min_executed": 4}]},
    )
    for actor, state in zip(
        devices[:4], ["Command Failure", "Command Success", "Command Failure", "Command Failure"], strict=True
    ):
        put(actor, command_of(operation, actor), state)

    shown = detail(org, operation)
    assert shown["state"] == "CANCELLED"
    assert shown["reason"] == "abort: FAILED 75.0% >= 50% after 4 devices"
    assert stored_counts(operation) == counting.recount(operation.pk)
    stop_commands(operation.pk)  # the stop's worker (operations.stopping), after the answer
    assert stored_counts(operation) == counting.recount(operation.pk)
    assert operation.cancelled_count == 6 and operation.failed_count == 3
    assert not any(poll(a) for a in devices[4:])


@pytest.mark.django_db(transaction=True)
def test_an_abort_racing_32_reporters_happens_once_with_exact_counters(org: Org) -> None:
    devices = add_devices(org.tenant, 40)
    operation = dispatched_operation(
        org.tenant,
        devices,
        rollout={"abort": [{"failure_type": "ALL", "threshold_percent": 10, "min_executed": 5}]},
    )
    commands = [command_of(operation, a) for a in devices[:32]]

    def fail(command: CommandStatus) -> Any:
        def run() -> Any:
            try:
                return report(command.pk, C.FAILURE, "boom", actor="device")
            except Exception as refused:  # cancelled by the abort meanwhile: refused, not lost
                return refused

        return run

    run_in_threads([fail(c) for c in commands])
    stop_commands(operation.pk)  # the stop's worker (operations.stopping), after the abort

    operation.refresh_from_db()
    assert operation.state == S.CANCELLED
    assert OperationActivity.objects.filter(operation=operation, state=S.CANCELLED).count() == 1
    assert stored_counts(operation) == counting.recount(operation.pk)
    assert not CommandStatus.objects.filter(operation=operation, state__in=[C.QUEUED, C.INITIATED]).exists()
    assert operation.failed_count + operation.cancelled_count == 40


# --- retries -------------------------------------------------------------------------------------


def test_a_failure_with_attempts_left_is_queued_again_and_counted_once(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(
        org.tenant, [device], rollout={"retries": [{"failure_type": "FAILED", "max_attempts": 3}]}
    )
    command = command_of(operation, device)
    for attempt in (1, 2):
        assert poll(device) == [command.pk]
        answered = content(put(device, command, "Command Failure", reason="no space"))
        assert answered["state"] == "Command Queued" and answered["attempt"] == attempt + 1
        # the same failure again (a retried PUT, or one arriving late) changes nothing
        again = content(put(device, command, "Command Failure", reason="no space"))
        assert again["attempt"] == attempt + 1 and again["state"] == "Command Queued"
        assert stored_counts(operation)["failed_count"] == 0

    assert poll(device) == [command.pk]
    final = content(put(device, command, "Command Failure"))

    assert final["state"] == "Command Failure" and final["attempt"] == 3
    assert content(put(device, command, "Command Failure"))["attempt"] == 3
    assert stored_counts(operation) == counting.recount(operation.pk)
    operation.refresh_from_db()
    assert operation.failed_count == 1 and operation.state == S.FAILURE
    reasons = list(
        CommandHistory.objects.filter(command=command, to_state=C.QUEUED).values_list("reason", flat=True)
    )
    assert reasons == [
        "retry: attempt 2 of 3 after Command Failure: no space",
        "retry: attempt 3 of 3 after Command Failure: no space",
    ]


def test_two_retry_rules_of_one_failure_type_are_a_400_naming_the_second(org: Org) -> None:
    rollout = {
        "retries": [
            {"failure_type": "FAILED", "max_attempts": 2},
            {"failure_type": "FAILED", "max_attempts": 5},
        ]
    }

    response = org.admin.post(
        OPS, {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "rollout": rollout}
    )

    refused = error(response, 400, "invalid_rollout")
    assert refused["errors"] == {
        "rollout.retries[1].failure_type": [
            "FAILED has a rule already (retries[0]): one rule per failure type; a FAILED or "
            "TIMED_OUT rule wins over ALL for its failures"
        ]
    }
    assert not Operation.objects.exists()


@pytest.mark.parametrize("order", [1, -1], ids=["all-last", "all-first"])
def test_a_specific_retry_rule_wins_over_all_for_its_failures(org: Org, order: int) -> None:
    rules = [{"failure_type": "FAILED", "max_attempts": 2}, {"failure_type": "ALL", "max_attempts": 5}][
        ::order
    ]
    devices = add_devices(org.tenant, 2)

    operation = dispatched_operation(org.tenant, devices, rollout={"retries": rules})

    budgets = set(
        CommandStatus.objects.filter(operation=operation).values_list(
            "max_attempts_on_failure", "max_attempts_on_timeout"
        )
    )
    assert budgets == {(2, 5)}  # a Command Failure: FAILED's 2; a TimeOut: ALL's 5
    assert rollouts.parse({"retries": rules}).max_attempts("TIMED_OUT") == 5


def test_a_rollout_stored_with_two_rules_of_one_type_still_reads_with_the_largest() -> None:
    stored = {
        "retries": [
            {"failure_type": "FAILED", "max_attempts": 2},
            {"failure_type": "FAILED", "max_attempts": 5},
        ]
    }

    rollout = rollouts.Rollout.from_json(stored)

    assert (
        rollout is not None and rollout.max_attempts("FAILED") == 5 and rollout.max_attempts("TIMED_OUT") == 1
    )


def test_abort_rules_of_one_type_each_trip_on_their_own_the_first_in_order_named() -> None:
    early = {"failure_type": "FAILED", "threshold_percent": 50, "min_executed": 10}
    late = {"failure_type": "FAILED", "threshold_percent": 10, "min_executed": 100}
    every = {"failure_type": "ALL", "threshold_percent": 20, "min_executed": 10}
    rollout = rollouts.parse({"abort": [early, late, every]})
    counts = dict.fromkeys(counting.FINISHED, 0) | {"timed_out_count": 0, "dispatch_failed_count": 0}

    def tripped(success: int, failed: int) -> str | None:
        found = rollout.tripped({**counts, "success_count": success, "failed_count": failed})
        return None if found is None else found[0].describe()

    assert tripped(success=8, failed=2) == "ALL >= 20% after 10 devices"  # FAILED's 50% not met
    assert tripped(success=4, failed=6) == "FAILED >= 50% after 10 devices"  # both met: the first
    assert tripped(success=160, failed=20) == "FAILED >= 10% after 100 devices"
    assert tripped(success=95, failed=5) is None


def test_retries_under_duplicated_and_reordered_reports_never_exceed_the_budget(org: Org) -> None:
    devices = add_devices(org.tenant, 8)
    operation = dispatched_operation(
        org.tenant, devices, rollout={"retries": [{"failure_type": "ALL", "max_attempts": 2}]}
    )
    commands = [command_of(operation, a) for a in devices]

    def storm(command: CommandStatus) -> Any:
        def run() -> list[Any]:
            seen: list[Any] = []
            for state in (C.IN_PROGRESS, C.FAILURE, C.FAILURE, C.ACKNOWLEDGED, C.FAILURE, C.FAILURE):
                try:
                    seen.append(report(command.pk, state, "storm", actor="device")[0].attempt)
                except Exception as refused:
                    seen.append(type(refused).__name__)
            return seen

        return run

    run_in_threads([storm(c) for c in commands] + [storm(c) for c in commands])

    assert max(CommandStatus.objects.filter(operation=operation).values_list("attempt", flat=True)) <= 2
    assert stored_counts(operation) == counting.recount(operation.pk)


def _retried_once(org: Org, device: DeviceActor, max_attempts: int = 3) -> tuple[Operation, CommandStatus]:
    """A command of a rollout that retries failures: handed out, failed in attempt 1, queued
    again (attempt 2) and handed out again."""
    operation = dispatched_operation(
        org.tenant, [device], rollout={"retries": [{"failure_type": "FAILED", "max_attempts": max_attempts}]}
    )
    command = command_of(operation, device)
    assert poll(device) == [command.pk]
    assert content(put(device, command, "Command Failure", reason="no space", attempt=1))["attempt"] == 2
    assert poll(device) == [command.pk]
    return operation, command


def test_a_late_failure_of_an_earlier_attempt_uses_up_no_retry(org: Org, device: DeviceActor) -> None:
    """Issue 23, item 3: the device's attempt-1 failure, repeated after the command was handed
    out again, moved it to attempt 3 and then to a final failure: the device never ran them."""
    operation, command = _retried_once(org, device)

    late = content(put(device, command, "Command Failure", reason="no space", attempt=1))

    assert (late["state"], late["attempt"]) == ("Command Initiated", 2)
    assert stored_counts(operation)["failed_count"] == 0
    # the device then runs attempt 2 and 3 for real
    assert content(put(device, command, "Command Failure", reason="still", attempt=2))["attempt"] == 3
    assert poll(device) == [command.pk]
    final = content(put(device, command, "Command Failure", reason="for good", attempt=3))
    assert (final["state"], final["attempt"]) == ("Command Failure", 3)
    assert stored_counts(operation) == counting.recount(operation.pk)
    assert stored_counts(operation)["failed_count"] == 1


def test_reports_of_an_earlier_attempt_reordered_after_the_new_ones_change_nothing(
    org: Org, device: DeviceActor
) -> None:
    operation, command = _retried_once(org, device)
    assert content(put(device, command, "Command In Progress", attempt=2))["state"] == "Command In Progress"
    assert content(put(device, command, "Command Success", attempt=2))["state"] == "Command Success"
    version = CommandStatus.objects.get(pk=command.pk).version

    # attempt 1's reports arrive late, in any order: acknowledged, failed, in progress
    for state in ("Command Acknowledged", "Command Failure", "Command In Progress"):
        answered = content(put(device, command, state, attempt=1))
        assert (answered["state"], answered["attempt"]) == ("Command Success", 2)

    command.refresh_from_db()
    assert (command.state, command.version) == (C.SUCCESS, version)
    operation.refresh_from_db()
    assert (operation.success_count, operation.failed_count, operation.state) == (1, 0, S.SUCCESS)
    assert stored_counts(operation) == counting.recount(operation.pk)


def test_duplicated_reports_of_the_current_attempt_are_applied_once(org: Org, device: DeviceActor) -> None:
    operation, command = _retried_once(org, device)

    for _ in range(3):
        answered = content(put(device, command, "Command Failure", reason="again", attempt=2))
        assert (answered["state"], answered["attempt"]) == ("Command Queued", 3)

    assert stored_counts(operation)["failed_count"] == 0
    assert CommandHistory.objects.filter(command=command, to_state=C.QUEUED).count() == 2


def test_a_report_of_an_attempt_not_yet_reached_is_a_400_naming_attempt(
    org: Org, device: DeviceActor
) -> None:
    _operation, command = _retried_once(org, device)

    body = error(put(device, command, "Command Failure", attempt=3), 400, "unknown_attempt")

    assert body["errors"]["attempt"] == ["is 3 but the command is at attempt 2"]
    assert CommandStatus.objects.get(pk=command.pk).state == C.INITIATED


def test_a_timed_out_abort_fires_on_final_timeouts_after_delivery_and_not_on_undelivered_ones(
    org: Org, django_capture_on_commit_callbacks: Any
) -> None:
    """Issue 23, item 4. ``TIMED_OUT`` counts commands whose final attempt timed out after the
    device received it (contract section 9; commands.counting): a command retried after a
    timeout and timed out again while in progress counts, and the abort fires at its threshold;
    one retried and then stopped before the device had its new attempt is a dispatch failure."""
    devices = add_devices(org.tenant, 4)
    operation = dispatched_operation(
        org.tenant,
        devices,
        rollout={
            "in_progress_timeout_minutes": 30,
            "retries": [{"failure_type": "TIMED_OUT", "max_attempts": 2}],
            "abort": [{"failure_type": "TIMED_OUT", "threshold_percent": 50, "min_executed": 2}],
        },
    )
    commands = {a.device.device_id: command_of(operation, a) for a in devices}
    first, second, third, _fourth = devices
    for actor in (first, second):
        put(actor, commands[actor.device.device_id], "Command In Progress", attempt=1)
    put(third, commands[third.device.device_id], "Command Success", attempt=1)
    later = timezone.now() + dt.timedelta(minutes=31)

    assert delivery.time_out_in_progress(later) == 2  # attempt 1 of both: retried, nothing counted
    operation.refresh_from_db()
    assert (operation.timed_out_count, operation.state) == (0, S.PROCESSING)
    for actor in (first, second):
        assert poll(actor) == [commands[actor.device.device_id].pk]
    put(first, commands[first.device.device_id], "Command In Progress", attempt=2)

    # the first times out again in progress: a final timeout after delivery, 1 of 2 finished = 50 %
    # (the abort is the set move's next step, taken once its transaction commits)
    with django_capture_on_commit_callbacks(execute=True):
        delivery.time_out_in_progress(timezone.now() + dt.timedelta(minutes=62))

    operation.refresh_from_db()
    assert operation.timed_out_count == 1 and operation.failed_count == 1
    assert operation.state == S.CANCELLED
    assert operation.reason == "abort: TIMED_OUT 50.0% >= 50% after 2 devices"
    stop_commands(operation.pk)
    second_command = CommandStatus.objects.get(pk=commands[second.device.device_id].pk)
    assert (second_command.state, second_command.attempt) == (C.CANCELLED, 2)
    assert stored_counts(operation) == counting.recount(operation.pk)


def test_the_in_progress_timeout_times_out_and_retries(org: Org) -> None:
    devices = add_devices(org.tenant, 2)
    operation = dispatched_operation(
        org.tenant,
        devices,
        rollout={
            "in_progress_timeout_minutes": 30,
            "retries": [{"failure_type": "TIMED_OUT", "max_attempts": 2}],
        },
    )
    first, second = (command_of(operation, a) for a in devices)
    put(devices[0], first, "Command Acknowledged")
    put(devices[1], second, "Command In Progress")
    first.refresh_from_db()
    assert first.progress_deadline is not None

    assert delivery.time_out_in_progress(timezone.now() + dt.timedelta(minutes=29)) == 0
    assert delivery.time_out_in_progress(timezone.now() + dt.timedelta(minutes=31)) == 2

    first.refresh_from_db()
    assert (first.state, first.attempt, first.progress_deadline) == (C.QUEUED, 2, None)
    assert stored_counts(operation)["failed_count"] == 0
    put(devices[0], first, "Command In Progress")
    delivery.time_out_in_progress(timezone.now() + dt.timedelta(minutes=31))
    first.refresh_from_db()
    assert first.state == C.TIMEOUT
    operation.refresh_from_db()
    assert operation.timed_out_count == 1 and operation.failed_count == 1
    assert stored_counts(operation) == counting.recount(operation.pk)


# --- pause and resume ------------------------------------------------------------------------------


def test_pause_holds_everything_and_resume_goes_back(org: Org) -> None:
    devices = add_devices(org.tenant, 3)
    operation = dispatched_operation(org.tenant, devices)
    assert poll(devices[0]) == [command_of(operation, devices[0]).pk]

    paused = org.operator.put(f"{OPS}{operation.pk}/", {"state": "PAUSED", "reason": "night"})

    assert content(paused)["state"] == "PAUSED" and content(paused)["state_code"] == 130
    assert not poll(devices[1]) and not poll(devices[2])
    # what a device already has may still be reported and counted
    assert put(devices[0], command_of(operation, devices[0]), "Command Success").status_code == 200
    assert stored_counts(operation)["success_count"] == 1
    for state in ("PAUSED", "130", "OPERATION_PAUSED"):
        listed = content(org.admin.get(OPS, {"state": state}))
        assert [item["id"] for item in listed["results"]] == [str(operation.pk)]
    error(org.operator.put(f"{OPS}{operation.pk}/", {"state": "PAUSED"}), 400, "invalid_transition")
    # redelivery leaves a paused operation's commands as they are
    run_all()

    resumed = content(org.operator.put(f"{OPS}{operation.pk}/", {"state": "RESUMED"}))

    assert resumed["state"] == "PROCESSING"
    assert poll(devices[1]) and poll(devices[2])


def test_resume_of_an_operation_that_is_not_paused_is_a_400(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])
    body = error(org.operator.put(f"{OPS}{operation.pk}/", {"state": "RESUMED"}), 400)
    assert "state" in body["errors"]


@pytest.mark.parametrize(("stop", "command_state"), [("CANCELLED", C.CANCELLED), ("TIMEOUT", C.TIMEOUT)])
def test_cancel_and_timeout_work_while_paused(
    org: Org, device: DeviceActor, stop: str, command_state: CommandState
) -> None:
    operation = dispatched_operation(org.tenant, [device])
    content(org.operator.put(f"{OPS}{operation.pk}/", {"state": "PAUSED"}))

    stopped = content(org.operator.put(f"{OPS}{operation.pk}/", {"state": stop}))
    stop_commands(operation.pk)  # the stop's worker (operations.stopping), after the answer

    assert stopped["state"] == stop
    assert command_of(operation, device).state == command_state
    assert stored_counts(operation) == counting.recount(operation.pk)


def test_pause_during_the_fan_out_stops_it_and_resume_finishes_it(org: Org) -> None:
    devices = add_devices(org.tenant, 3)
    operation = create_operation(
        org.tenant.pk,
        {
            "operation_type": "REBOOT",
            "operation_device_query": {"all": True},
            "rollout": {"waves": [50, 100]},
        },
        "tests",
    )
    content(org.operator.put(f"{OPS}{operation.pk}/", {"state": "PAUSED"}))

    fan_out(operation.pk)  # the worker's message arrives: nothing runs while paused

    operation.refresh_from_db()
    assert operation.state == S.PAUSED and operation.resolved_count == 0
    content(org.operator.put(f"{OPS}{operation.pk}/", {"state": "RESUMED"}))
    fan_out(operation.pk)  # the message resume sent
    operation.refresh_from_db()
    assert operation.state == S.DISPATCHED and operation.resolved_count == 3
    assert sum(bool(poll(a)) for a in devices) == 2  # wave 1: ceil(50% of 3)


def test_a_paused_window_operation_releases_nothing(org: Org, device: DeviceActor) -> None:
    now = timezone.now()
    operation = dispatched_operation(
        org.tenant,
        [device],
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": (now + dt.timedelta(hours=1)).isoformat(),
            "end_datetime": (now + dt.timedelta(days=3)).isoformat(),
        },
    )
    content(org.operator.put(f"{OPS}{operation.pk}/", {"state": "PAUSED"}))

    assert open_windows(now + dt.timedelta(hours=1, minutes=1)) == 0

    content(org.operator.put(f"{OPS}{operation.pk}/", {"state": "RESUMED"}))
    assert open_windows(now + dt.timedelta(hours=1, minutes=1)) == 1


def test_the_sweep_takes_a_rollout_step_a_dead_process_left(org: Org) -> None:
    """A report commits its row and counters in one statement and takes the rollout's step
    (here an abort) right after; if its process dies in between, the sweep takes it."""
    devices = add_devices(org.tenant, 4)
    operation = dispatched_operation(
        org.tenant, devices, rollout={"abort": [{"failure_type": "FAILED", "threshold_percent": 50}]}
    )
    # what the report's statement alone leaves: the command failed and counted, nothing after
    failed = command_of(operation, devices[0])
    CommandStatus.objects.filter(pk=failed.pk).update(state=C.FAILURE)
    Operation.objects.filter(pk=operation.pk).update(failed_count=1)

    assert run_all()["rollouts"] == 1
    stop_commands(operation.pk)  # the stop's worker (operations.stopping), after the abort

    operation.refresh_from_db()
    assert operation.state == S.CANCELLED
    assert operation.reason == "abort: FAILED 100.0% >= 50% after 1 devices"
    assert operation.cancelled_count == 3
