"""``/commands/v0/status/`` (seed 002, contract section 5): the state table through the API,
history, optimistic versions, the operation's counters and state, filters and scoping."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from django.utils import timezone

from commands.choices import (
    ALLOWED_TRANSITIONS,
    REQUESTABLE_STATES,
    SYSTEM_ONLY_MOVES,
    TERMINAL_STATES,
    CommandState,
    can_move,
)
from commands.models import CommandHistory, CommandStatus
from commands.services import issue_internal_command, move_and_settle
from operations.choices import OperationState
from operations.models import Operation, OperationActivity
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, add_device
from tests.helpers import content, error, iso

C = CommandState
S = OperationState

#: Contract section 5, written out by hand so the table in ``commands.choices`` is checked
#: against the contract and not against itself.
UNFINISHED = (C.SCHEDULED, C.QUEUED, C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS)
FINISHED = (C.SUCCESS, C.FAILURE, C.TIMEOUT, C.CANCELLED)
#: The ladder Queued/Initiated → Acknowledged → In Progress → Success | Failure, climbed one
#: rung at a time or skipping rungs forward (agents written to seed 002 report Initiated →
#: Success, Acknowledged → Failure).
CONTRACT_MOVES = {
    *((state, C.ACKNOWLEDGED) for state in (C.QUEUED, C.INITIATED)),
    *((state, C.IN_PROGRESS) for state in (C.QUEUED, C.INITIATED, C.ACKNOWLEDGED)),
    *((state, C.SUCCESS) for state in (C.QUEUED, C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS)),
    *((state, C.FAILURE) for state in (C.QUEUED, C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS)),
    (C.SCHEDULED, C.QUEUED),
    *((state, C.CANCELLED) for state in UNFINISHED),
    *((state, C.TIMEOUT) for state in UNFINISHED),
}
#: Seed 002's enum of the PUT body: no "Command Queued", no "Command Initiated".
SEED_PUT_STATES = {
    "Command Acknowledged",
    "Command In Progress",
    "Command TimeOut",
    "Command Success",
    "Command Failure",
    "Command Scheduled",
    "Command Cancelled",
}
SEED_STATES = {
    "Command Queued",
    "Command Initiated",
    "Command Acknowledged",
    "Command In Progress",
    "Command TimeOut",
    "Command Success",
    "Command Failure",
    "Command Scheduled",
    "Command Cancelled",
}


def url(command: CommandStatus) -> str:
    return f"/commands/v0/status/{command.pk}/"


def ids(page: Any) -> set[int]:
    return {int(item["id"]) for item in page["results"]}


@pytest.fixture
def queued(org: Org, device: DeviceActor) -> CommandStatus:
    """One device's command of a dispatched REBOOT, in ``Command Queued``."""
    return command_of(dispatched_operation(org.tenant, [device]), device)


# --- the table itself, against the contract ----------------------------------------------------


def test_client_moves_of_the_table_are_exactly_the_contracts() -> None:
    allowed = {(a, b) for a, b in itertools.product(C, C) if can_move(a, b, by_client=True)}

    assert allowed == CONTRACT_MOVES


def test_the_table_adds_only_the_servers_own_moves_to_the_contracts() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}

    assert table - CONTRACT_MOVES == set(SYSTEM_ONLY_MOVES)
    server_moves = {(C.QUEUED, C.INITIATED), (C.INITIATED, C.QUEUED), (C.QUEUED, C.SCHEDULED)}
    assert set(SYSTEM_ONLY_MOVES) == server_moves


def test_finished_states_have_no_way_out() -> None:
    assert set(TERMINAL_STATES) == set(FINISHED)
    for state in FINISHED:
        assert ALLOWED_TRANSITIONS[state] == frozenset()


def test_state_labels_and_put_states_are_the_seeds() -> None:
    assert {state.label for state in C} == SEED_STATES
    assert {state.label for state in REQUESTABLE_STATES} == SEED_PUT_STATES


# --- every (from, to) pair through PUT ----------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target"),
    list(itertools.product(C, C)),
    ids=[f"{a.name}->{b.name}" for a, b in itertools.product(C, C)],
)
def test_put_applies_exactly_the_moves_the_table_allows(
    queued: CommandStatus, device: DeviceActor, start: CommandState, target: CommandState
) -> None:
    # given a command in ``start``
    CommandStatus.objects.filter(pk=queued.pk).update(state=start)
    history_before = CommandHistory.objects.filter(command=queued).count()
    version_before = CommandStatus.objects.get(pk=queued.pk).version

    # when the device asks for ``target``
    response = device.api.put(url(queued), {"state": target.label, "reason": "because"})

    # then
    command = CommandStatus.objects.get(pk=queued.pk)
    history = CommandHistory.objects.filter(command=queued)
    if target not in REQUESTABLE_STATES:
        # Not a state of the seed's PUT enum (Queued, Initiated): a bad enum value.
        body = error(response, 400)
        assert "state" in body["errors"]
        assert command.state == start
    elif start == target:
        assert content(response)["state"] == start.label
        assert command.version == version_before
        assert history.count() == history_before
    elif can_move(start, target, by_client=True):
        assert content(response)["state"] == target.label
        assert command.state == target
        assert command.version == version_before + 1
        row = history.latest("id")
        assert (row.from_state, row.to_state, row.reason) == (start, target, "because")
        assert history.count() == history_before + 1
    else:
        body = error(response, 400, "invalid_transition")
        assert start.label in body["message"] and target.label in body["message"]
        assert any(start.label in m and target.label in m for m in body["errors"]["state"])
        assert command.state == start
        assert command.version == version_before
        assert history.count() == history_before


# --- one move at a time ------------------------------------------------------------------------


def test_repeating_the_current_state_is_a_no_op_without_history(
    queued: CommandStatus, device: DeviceActor
) -> None:
    # given an acknowledged command
    content(device.api.put(url(queued), {"state": "Command Acknowledged"}))
    history = CommandHistory.objects.filter(command=queued).count()
    version = CommandStatus.objects.get(pk=queued.pk).version

    # when the device repeats itself (a retry)
    repeated = content(device.api.put(url(queued), {"state": "Command Acknowledged", "reason": "retry"}))

    # then nothing changed
    assert repeated["state"] == "Command Acknowledged"
    assert repeated["version"] == version
    assert CommandHistory.objects.filter(command=queued).count() == history


def test_repeating_a_finished_state_is_a_no_op(queued: CommandStatus, device: DeviceActor) -> None:
    # given a command that succeeded
    for state in ("Command Acknowledged", "Command In Progress", "Command Success"):
        content(device.api.put(url(queued), {"state": state}))
    operation = Operation.objects.get(commands=queued)

    # when the device reports success again
    repeated = content(device.api.put(url(queued), {"state": "Command Success"}))

    # then 200, and the success is not counted twice
    assert repeated["state"] == "Command Success"
    operation.refresh_from_db()
    assert operation.success_count == 1


def test_every_accepted_change_writes_history_with_actor_and_time(
    org: Org, queued: CommandStatus, device: DeviceActor
) -> None:
    # given a command handed out to the device
    content(device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}))

    # when the device acknowledges and an operator cancels
    content(device.api.put(url(queued), {"state": "Command Acknowledged", "reason": "got it"}))
    content(org.operator.put(url(queued), {"state": "Command Cancelled", "reason": "changed my mind"}))

    # then the history tells the whole story
    rows = list(CommandHistory.objects.filter(command=queued).order_by("id"))
    assert [(r.from_state, r.to_state, r.reason, r.actor) for r in rows] == [
        (C.QUEUED, C.INITIATED, "handed out to the device", "device:dev-1"),
        (C.INITIATED, C.ACKNOWLEDGED, "got it", "device:dev-1"),
        (C.ACKNOWLEDGED, C.CANCELLED, "changed my mind", "operator"),
    ]
    assert all(row.created_at is not None for row in rows)
    assert rows[0].created_at <= rows[1].created_at <= rows[2].created_at


def test_reason_and_details_are_stored_and_shown(queued: CommandStatus, device: DeviceActor) -> None:
    # given an acknowledged command
    content(device.api.put(url(queued), {"state": "Command Acknowledged"}))

    # when the device reports progress with details
    details = {"percent": 40, "steps": ["download", "verify"]}
    shown = content(
        device.api.put(
            url(queued), {"state": "Command In Progress", "reason": "downloading", "details": details}
        )
    )

    # then
    assert shown["reason"] == "downloading"
    assert shown["details"] == details
    fetched = content(device.api.get(url(queued)))
    assert fetched["details"] == details
    assert CommandStatus.objects.get(pk=queued.pk).details == details


def test_unknown_state_string_is_400_naming_the_field(queued: CommandStatus, device: DeviceActor) -> None:
    for body in ({"state": "Command Done"}, {"state": "acknowledged"}, {"state": 3}, {}):
        response = device.api.put(url(queued), body)

        assert "state" in error(response, 400)["errors"], body
    assert CommandStatus.objects.get(pk=queued.pk).state == C.QUEUED


def test_a_stale_expected_version_is_409_with_the_current_state(
    queued: CommandStatus, device: DeviceActor
) -> None:
    # given a command someone already acknowledged (version 2)
    content(device.api.put(url(queued), {"state": "Command Acknowledged"}))

    # when a client that read version 1 reports
    response = device.api.put(url(queued), {"state": "Command In Progress", "expected_version": 1})

    # then 409, and the body says where the command is now
    body = error(response, 409, "stale_version")
    assert body["errors"]["state"] == ["Command Acknowledged"]
    assert body["errors"]["version"] == ["2"]
    assert "Command Acknowledged" in body["message"]
    assert CommandStatus.objects.get(pk=queued.pk).state == C.ACKNOWLEDGED


def test_a_matching_expected_version_is_applied(queued: CommandStatus, device: DeviceActor) -> None:
    version = content(device.api.get(url(queued)))["version"]

    shown = content(
        device.api.put(url(queued), {"state": "Command Acknowledged", "expected_version": version})
    )

    assert shown["state"] == "Command Acknowledged"
    assert shown["version"] == version + 1


# --- the operation's counters and state ---------------------------------------------------------


def _report(actor: DeviceActor, operation: Operation, *states: str) -> None:
    command = command_of(operation, actor)
    for state in states:
        content(actor.api.put(url(command), {"state": state}))


def test_first_report_moves_the_operation_to_processing(org: Org) -> None:
    # given a dispatched operation on two devices
    one, two = add_device(org.tenant, "d1"), add_device(org.tenant, "d2")
    operation = dispatched_operation(org.tenant, [one, two])
    assert operation.state == S.DISPATCHED

    # when one device acknowledges
    _report(one, operation, "Command Acknowledged")

    # then
    operation.refresh_from_db()
    assert operation.state == S.PROCESSING
    assert OperationActivity.objects.filter(operation=operation, state=S.PROCESSING).count() == 1
    assert (operation.success_count, operation.failed_count) == (0, 0)


def test_all_succeeded_is_completed_then_success(org: Org) -> None:
    # given a dispatched operation on two devices
    one, two = add_device(org.tenant, "d1"), add_device(org.tenant, "d2")
    operation = dispatched_operation(org.tenant, [one, two])

    # when the first succeeds, the operation is still processing
    _report(one, operation, "Command Acknowledged", "Command In Progress", "Command Success")
    operation.refresh_from_db()
    assert operation.state == S.PROCESSING
    assert operation.success_count == 1

    # and when the second succeeds too
    _report(two, operation, "Command Acknowledged", "Command In Progress", "Command Success")

    # then
    operation.refresh_from_db()
    assert operation.state == S.SUCCESS
    assert operation.counts() == {
        "resolved_device_count": 2,
        "dispatched_device_count": 2,
        "dispatch_failed_count": 0,
        "failed_device_count": 0,
        "success_device_count": 2,
        "cancelled_device_count": 0,
        "pending_device_count": 0,
    }
    names = list(
        OperationActivity.objects.filter(operation=operation).values_list("operation_state", flat=True)
    )
    assert names[-4:] == ["DISPATCHED", "PROCESSING", "COMPLETED", "SUCCESS"]


def test_one_failure_makes_the_operation_fail(org: Org) -> None:
    # given a dispatched operation on two devices
    one, two = add_device(org.tenant, "d1"), add_device(org.tenant, "d2")
    operation = dispatched_operation(org.tenant, [one, two])

    # when one succeeds and one fails
    _report(one, operation, "Command Acknowledged", "Command In Progress", "Command Success")
    _report(two, operation, "Command Acknowledged", "Command In Progress", "Command Failure")

    # then
    operation.refresh_from_db()
    assert operation.state == S.FAILURE
    assert (operation.success_count, operation.failed_count) == (1, 1)
    names = list(
        OperationActivity.objects.filter(operation=operation).values_list("operation_state", flat=True)
    )
    assert names[-3:] == ["PROCESSING", "COMPLETED", "FAILURE"]
    assert names.count("COMPLETED") == 1


def test_devices_may_skip_rungs_forward_and_the_operation_follows(org: Org) -> None:
    """Agents written to seed 002 skip rungs: Initiated → Success, Acknowledged → Failure."""
    # given a dispatched operation on two devices, both handed their command
    one, two = add_device(org.tenant, "d1"), add_device(org.tenant, "d2")
    operation = dispatched_operation(org.tenant, [one, two])
    for actor in (one, two):
        content(actor.api.get("/v2/command-inbox/", {"device_id": actor.device.device_id}))

    # when one reports success straight from Initiated, the other failure straight after
    # acknowledging
    _report(one, operation, "Command Success")
    _report(two, operation, "Command Acknowledged", "Command Failure")

    # then each move is recorded as made and counted once, and the operation is finished
    assert [
        (row.from_state, row.to_state)
        for row in CommandHistory.objects.filter(command=command_of(operation, one)).order_by("id")
    ] == [(C.QUEUED, C.INITIATED), (C.INITIATED, C.SUCCESS)]
    operation.refresh_from_db()
    assert (operation.success_count, operation.failed_count) == (1, 1)
    assert operation.state == S.FAILURE


@pytest.mark.parametrize(
    ("states", "counter"),
    [
        (("Command TimeOut",), "dispatch_failed_count"),
        (("Command Acknowledged", "Command TimeOut"), "failed_count"),
        (("Command Acknowledged", "Command In Progress", "Command TimeOut"), "failed_count"),
        (("Command Cancelled",), "cancelled_count"),
        (("Command Acknowledged", "Command Cancelled"), "cancelled_count"),
    ],
)
def test_each_finished_state_moves_exactly_its_counter(
    org: Org, device: DeviceActor, states: tuple[str, ...], counter: str
) -> None:
    operation = dispatched_operation(org.tenant, [device])

    _report(device, operation, *states)

    operation.refresh_from_db()
    counters = ("success_count", "failed_count", "dispatch_failed_count", "cancelled_count")
    assert {name: getattr(operation, name) for name in counters} == {
        name: int(name == counter) for name in counters
    }
    assert operation.state == S.FAILURE


# --- reading: one, lists, filters --------------------------------------------------------------


def test_get_by_id_shows_the_seed_fields(org: Org, queued: CommandStatus) -> None:
    shown = content(org.viewer.get(url(queued)))

    assert shown["id"] == str(queued.pk)
    assert shown["request"] == str(queued.operation_id)
    assert shown["device"] == "dev-1"
    assert shown["command"] == "REBOOT"
    assert shown["state"] == "Command Queued"
    assert shown["is_internal"] is False
    for field in ("arguments", "reason", "details", "created_on", "updated_on"):
        assert field in shown
    assert shown["created_on"].endswith("Z")


def test_a_scheduled_command_says_when_its_window_opens(org: Org, device: DeviceActor) -> None:
    """``scheduled_for`` is the window's opening while Scheduled, null once it is queued:
    in the status endpoint, the list, and the inbox (the same payload)."""
    start = (timezone.now() + dt.timedelta(days=1)).replace(microsecond=0)
    operation = dispatched_operation(
        org.tenant,
        [device],
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": start.isoformat(),
            "end_datetime": (start + dt.timedelta(days=1)).isoformat(),
            "time_type": "console",
        },
    )
    scheduled = command_of(operation, device)
    assert scheduled.state == C.SCHEDULED and scheduled.not_before == start

    expected = iso(start)
    assert content(org.viewer.get(url(scheduled)))["scheduled_for"] == expected
    listed = content(org.viewer.get(f"/commands/v0/status/?request={operation.pk}"))["results"]
    assert [item["scheduled_for"] for item in listed] == [expected]

    move_and_settle(CommandStatus.objects.filter(pk=scheduled.pk), C.QUEUED, "window opened")
    assert content(org.viewer.get(url(scheduled)))["scheduled_for"] is None
    handed = content(device.api.get("/v2/command-inbox/", {"device_id": device.device.device_id}))
    assert [item["scheduled_for"] for item in handed["results"]] == [None]


def test_a_queued_command_has_no_scheduled_for(org: Org, queued: CommandStatus) -> None:
    assert content(org.viewer.get(url(queued)))["scheduled_for"] is None


def test_unknown_id_is_404(org: Org) -> None:
    error(org.viewer.get("/commands/v0/status/999999999/"), 404)
    error(org.operator.put("/commands/v0/status/999999999/", {"state": "Command Cancelled"}), 404)


@dataclass
class Listing:
    """What the list tests filter: two operations over three devices, one internal command."""

    devices: tuple[DeviceActor, DeviceActor, DeviceActor]
    first: Operation
    second: Operation
    internal: CommandStatus


@pytest.fixture
def listing(org: Org) -> Listing:
    a, b, c = (add_device(org.tenant, name) for name in ("a", "b", "c"))
    first = dispatched_operation(org.tenant, [a, b])
    second = dispatched_operation(org.tenant, [b, c], operation_type="LOCK")
    internal = issue_internal_command(org.tenant.pk, c.device.pk, "SET_WALLPAPER", {}, "headless:7")
    return Listing(devices=(a, b, c), first=first, second=second, internal=internal)


def test_list_filters_by_request_comma_separated(org: Org, listing: Listing) -> None:
    first, second = listing.first, listing.second

    only_first = content(org.viewer.get("/commands/v0/status/", {"request": str(first.pk)}))
    both = content(org.viewer.get("/commands/v0/status/", {"request": f"{first.pk},{second.pk}"}))
    internal = content(org.viewer.get("/commands/v0/status/", {"request": "headless:7"}))

    assert ids(only_first) == set(first.commands.values_list("pk", flat=True))
    assert only_first["count"] == 2
    assert both["count"] == 4
    assert ids(internal) == {listing.internal.pk}
    assert internal["results"][0]["request"] == "headless:7"


def test_list_filters_by_device_comma_separated(org: Org, listing: Listing) -> None:
    one = content(org.viewer.get("/commands/v0/status/", {"device": "a"}))
    two = content(org.viewer.get("/commands/v0/status/", {"device": "a,c"}))

    assert {item["device"] for item in one["results"]} == {"a"}
    assert one["count"] == 1
    assert two["count"] == 3
    assert {item["device"] for item in two["results"]} == {"a", "c"}


def test_list_filters_by_state_label(org: Org, listing: Listing) -> None:
    a = listing.devices[0]
    content(a.api.put(url(command_of(listing.first, a)), {"state": "Command Acknowledged"}))

    acked = content(org.viewer.get("/commands/v0/status/", {"state": "Command Acknowledged"}))
    queued = content(org.viewer.get("/commands/v0/status/", {"state": "Command Queued"}))

    assert [item["device"] for item in acked["results"]] == ["a"]
    assert queued["count"] == 4
    assert {item["state"] for item in queued["results"]} == {"Command Queued"}


def test_list_with_a_bad_state_is_400(org: Org, listing: Listing) -> None:
    body = error(org.viewer.get("/commands/v0/status/", {"state": "Queued"}), 400)

    assert "state" in body["errors"]


def test_list_can_exclude_internal_commands(org: Org, listing: Listing) -> None:
    everything = content(org.viewer.get("/commands/v0/status/"))
    external = content(org.viewer.get("/commands/v0/status/", {"exclude_internal_commands": "true"}))
    explicit_false = content(org.viewer.get("/commands/v0/status/", {"exclude_internal_commands": "false"}))

    assert everything["count"] == 5
    assert external["count"] == 4
    assert listing.internal.pk not in ids(external)
    assert all(item["is_internal"] is False for item in external["results"])
    assert explicit_false["count"] == 5


def test_list_pages_by_limit_and_offset(org: Org, listing: Listing) -> None:
    first = content(org.viewer.get("/commands/v0/status/", {"limit": 2}))
    second = content(org.viewer.get("/commands/v0/status/", {"limit": 2, "offset": 2}))
    last = content(org.viewer.get("/commands/v0/status/", {"limit": 2, "offset": 4}))

    assert first["count"] == second["count"] == last["count"] == 5
    assert len(first["results"]) == 2 and len(second["results"]) == 2 and len(last["results"]) == 1
    assert first["previous"] is None and first["next"] is not None
    assert last["next"] is None and last["previous"] is not None
    seen = [item["id"] for page in (first, second, last) for item in page["results"]]
    assert len(set(seen)) == 5
    assert seen == sorted(seen, key=int)


# --- who may see and change what ---------------------------------------------------------------


def test_another_tenants_command_is_404_and_never_listed(
    org: Org, other_org: Org, queued: CommandStatus
) -> None:
    # given the other tenant has a device with the same id and a command of its own
    theirs = add_device(other_org.tenant, "dev-1")
    their_command = command_of(dispatched_operation(other_org.tenant, [theirs]), theirs)

    # then neither side sees the other's command
    error(org.admin.get(url(their_command)), 404)
    error(org.admin.put(url(their_command), {"state": "Command Cancelled"}), 404)
    error(other_org.admin.get(url(queued)), 404)
    assert ids(content(org.admin.get("/commands/v0/status/"))) == {queued.pk}
    assert ids(content(org.admin.get("/commands/v0/status/", {"device": "dev-1"}))) == {queued.pk}
    assert (
        ids(content(org.admin.get("/commands/v0/status/", {"request": str(their_command.operation_id)})))
        == set()
    )
    assert CommandStatus.objects.get(pk=their_command.pk).state == C.QUEUED


def test_viewer_reads_but_cannot_put(org: Org, queued: CommandStatus) -> None:
    assert content(org.viewer.get(url(queued)))["state"] == "Command Queued"
    assert content(org.viewer.get("/commands/v0/status/"))["count"] == 1

    error(org.viewer.put(url(queued), {"state": "Command Cancelled"}), 403)

    assert CommandStatus.objects.get(pk=queued.pk).state == C.QUEUED


def test_operator_can_put(org: Org, queued: CommandStatus) -> None:
    shown = content(org.operator.put(url(queued), {"state": "Command Cancelled", "reason": "not needed"}))

    assert shown["state"] == "Command Cancelled"
