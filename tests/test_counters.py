"""The counter rule, one table in ``commands.counting`` generated three ways, agrees with itself.

For every move the command table allows, from every way a command can be in its source state
(dispatched or not, retried by a rollout's ``retries`` or not), the move is made for real:
through the one-statement report (the generated SQL) when a client may make it, and through a
set move (the Python deltas) always. Each time, the stored counters must have changed by
exactly ``counting.deltas`` and must equal ``counting.recount`` over the rows and history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from commands import counting
from commands.choices import ALLOWED_TRANSITIONS, CommandState, can_move
from commands.models import CommandStatus
from commands.services import hand_out, move_and_settle, report
from operations import aggregates, stopping
from operations.choices import OperationState
from operations.models import Operation
from operations.services import request_state
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import Org, add_device
from tests.helpers import iso

C = CommandState


def _immediate(org: Org) -> CommandStatus:
    device = add_device(org.tenant, "dev-counted")
    return command_of(dispatched_operation(org.tenant, [device]), device)


#: A rollout that retries one failure and one timeout after delivery.
RETRIES = {
    "retries": [
        {"failure_type": "FAILED", "max_attempts": 2},
        {"failure_type": "TIMED_OUT", "max_attempts": 2},
    ]
}


def _retried(org: Org) -> CommandStatus:
    """A command the device acknowledged and failed, queued again by its rollout's retries
    (attempt 2): its counters moved nothing yet."""
    device = add_device(org.tenant, "dev-counted")
    command = command_of(dispatched_operation(org.tenant, [device], rollout=RETRIES), device)
    _to(command, C.INITIATED, C.ACKNOWLEDGED)
    report(command.pk, C.FAILURE, "no space", actor="device")
    command.refresh_from_db()
    assert (command.state, command.attempt) == (C.QUEUED, 2)
    return command


def _window_not_yet_open(org: Org) -> CommandStatus:
    """A command Scheduled by its fan-out: never dispatched yet."""
    device = add_device(org.tenant, "dev-counted")
    start = timezone.now() + dt.timedelta(days=1)
    operation = dispatched_operation(
        org.tenant,
        [device],
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": iso(start),
            "end_datetime": iso(start + dt.timedelta(days=1)),
            "time_type": "console",
        },
    )
    return command_of(operation, device)


def _to(command: CommandStatus, *steps: CommandState) -> CommandStatus:
    """Walk the command through ``steps`` the way the server does: a hand-out for Initiated,
    a set move for the server's own moves, a report for the device's."""
    for step in steps:
        if step == C.INITIATED:
            assert hand_out(command.device_id, 1, "tests", "handed out").rows
        elif can_move(command.state, step, by_client=True):
            report(command.pk, step, actor="device")
        else:
            move_and_settle(CommandStatus.objects.filter(pk=command.pk), step, "tests")
        command.refresh_from_db()
        assert command.state == step
    return command


#: Every way a command comes to be in each non-terminal state, and whether it was dispatched.
ARRIVALS: dict[CommandState, list[tuple[str, Callable[[Org], CommandStatus]]]] = {
    C.QUEUED: [("fan-out", _immediate), ("retried", _retried)],
    C.INITIATED: [
        ("handed out", lambda org: _to(_immediate(org), C.INITIATED)),
        ("retried, handed out again", lambda org: _to(_retried(org), C.INITIATED)),
    ],
    C.ACKNOWLEDGED: [
        ("acknowledged", lambda org: _to(_immediate(org), C.INITIATED, C.ACKNOWLEDGED)),
        ("retried, acknowledged again", lambda org: _to(_retried(org), C.INITIATED, C.ACKNOWLEDGED)),
    ],
    C.IN_PROGRESS: [
        ("in progress", lambda org: _to(_immediate(org), C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS)),
        (
            "retried, in progress again",
            lambda org: _to(_retried(org), C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS),
        ),
    ],
    C.SCHEDULED: [
        ("window not yet open", _window_not_yet_open),
        ("dispatched, then window closed", lambda org: _to(_immediate(org), C.SCHEDULED)),
    ],
}


def _late_duplicate(source: CommandState, target: CommandState, how: str, way: str) -> bool:
    """A failure reported for a command its retry queued again: the same failure, late (the
    report statement refuses it; it counted nothing, see the test below)."""
    return way == "report" and how == "retried" and source == C.QUEUED and target in (C.FAILURE, C.TIMEOUT)


CASES = [
    pytest.param(source, target, how, arrive, way, id=f"{source.name}->{target.name}:{how}:{way}")
    for source, arrivals in ARRIVALS.items()
    for target in sorted(ALLOWED_TRANSITIONS[source])
    for how, arrive in arrivals
    for way in ("report", "set move")
    if (way == "set move" or can_move(source, target, by_client=True))
    and not _late_duplicate(source, target, how, way)
]


def _stored(operation_id: Any) -> dict[str, int]:
    return dict(Operation.objects.filter(pk=operation_id).values(*counting.COUNTERS).get())


def test_every_source_state_has_a_way_in() -> None:
    unfinished = {state for state, targets in ALLOWED_TRANSITIONS.items() if targets}
    assert unfinished == set(ARRIVALS)


@pytest.mark.parametrize(("source", "target", "how", "arrive", "way"), CASES)
def test_deltas_sql_and_recount_agree(
    org: Org,
    source: CommandState,
    target: CommandState,
    how: str,
    arrive: Callable[[Org], CommandStatus],
    way: str,
) -> None:
    command = arrive(org)
    assert command.operation_id is not None
    assert command.state == source
    was_dispatched = command.dispatched_at is not None
    before = _stored(command.operation_id)
    assert before == counting.recount(command.operation_id)

    if way == "report":
        _, moved = report(command.pk, target, actor="device")
        assert moved
    else:
        assert move_and_settle(CommandStatus.objects.filter(pk=command.pk), target, "tests") == 1

    after = _stored(command.operation_id)
    changed = {name: after[name] - before[name] for name in counting.COUNTERS if after[name] != before[name]}
    assert changed == counting.deltas(source, target, was_dispatched)
    assert after == counting.recount(command.operation_id)


def _moved_as_target_says(command: CommandStatus, target: CommandState) -> bool:
    """Whether a move to ``target`` left the command there (a retry budget left sends a
    failure back to the queue instead, counting nothing)."""
    command.refresh_from_db()
    return command.state == target


@pytest.mark.parametrize("target", [C.FAILURE, C.TIMEOUT])
def test_a_late_duplicate_of_the_failure_that_queued_a_retry_counts_nothing(
    org: Org, target: CommandState
) -> None:
    command = _retried(org)
    assert command.operation_id is not None
    before = _stored(command.operation_id)

    _, moved = report(command.pk, target, actor="device")

    assert not moved
    assert _stored(command.operation_id) == before == counting.recount(command.operation_id)


def test_the_rule_table_names_every_counter_but_the_resolved_one() -> None:
    assert {rule.counter for rule in counting.RULES} | {"resolved_count"} == set(counting.COUNTERS)
    assert set(counting.FINISHED) < set(counting.COUNTERS)


def test_a_retried_command_stopped_by_a_timeout_keeps_its_counters_through_a_full_recount(org: Org) -> None:
    """Issue 22's black-box case: acknowledged, Command Failure, retried, handed out again and
    never acknowledged, then the operation PUT to TIMEOUT. Its last attempt never reached the
    device: a dispatch failure for the live counters and for the recount alike, so the
    maintenance repair finds nothing to repair."""
    command = _to(_retried(org), C.INITIATED)
    assert command.operation_id is not None
    operation = Operation.objects.get(pk=command.operation_id)

    request_state(operation, OperationState.TIMEOUT, "too slow", actor="admin")
    stopping.stop_commands(operation.pk)

    command.refresh_from_db()
    assert command.state == C.TIMEOUT
    stored = _stored(operation.pk)
    assert (stored["dispatch_failed_count"], stored["failed_count"], stored["timed_out_count"]) == (1, 0, 0)
    assert stored == counting.recount(operation.pk)
    assert aggregates.repair([operation.pk]) == []
    assert _stored(operation.pk) == stored


def test_a_retried_command_acknowledged_again_then_timed_out_is_the_device_failure(org: Org) -> None:
    command = _to(_retried(org), C.INITIATED, C.ACKNOWLEDGED)
    assert command.operation_id is not None

    move_and_settle(CommandStatus.objects.filter(pk=command.pk), C.TIMEOUT, "stopped")

    stored = _stored(command.operation_id)
    assert (stored["dispatch_failed_count"], stored["failed_count"], stored["timed_out_count"]) == (0, 1, 1)
    assert stored == counting.recount(command.operation_id)


def test_a_retried_command_failing_its_last_attempt_counts_one_failure(org: Org) -> None:
    command = _to(_retried(org), C.INITIATED, C.ACKNOWLEDGED)
    assert command.operation_id is not None

    report(command.pk, C.FAILURE, "no space again", actor="device")

    assert _moved_as_target_says(command, C.FAILURE)
    stored = _stored(command.operation_id)
    assert stored["failed_count"] == 1 and stored["dispatch_failed_count"] == 0
    assert stored == counting.recount(command.operation_id)


def test_the_outcomes_a_rerun_names_are_the_counter_rules() -> None:
    """A re-run's ``only`` picks commands by the same rows of the rule the counters use."""
    from operations.choices import RERUN_OUTCOMES

    assert tuple(counting.OUTCOMES) == RERUN_OUTCOMES
    assert all(rule in counting.RULES for rule in counting.OUTCOMES.values())
