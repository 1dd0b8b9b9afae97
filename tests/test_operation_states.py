"""The operation state table and the one function that moves along it."""

from __future__ import annotations

import itertools

import pytest

from operations import progress
from operations.choices import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    OperationState,
    can_move,
    state_from_param,
)
from operations.models import Operation, OperationActivity
from tests.conftest import Org

S = OperationState

# The life of contract section 4, written out independently of the table it checks.
EXPECTED_FORWARD = {
    (S.CREATED, S.RESOLVING),
    (S.RESOLVING, S.RESOLVED),
    (S.RESOLVED, S.DISPATCHING),
    (S.RESOLVED, S.SCHEDULED),
    (S.SCHEDULED, S.DISPATCHING),
    (S.SCHEDULED, S.COMPLETED),
    (S.DISPATCHING, S.DISPATCHED),
    (S.DISPATCHED, S.PROCESSING),
    (S.DISPATCHED, S.COMPLETED),
    (S.DISPATCHED, S.SCHEDULED),
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.SCHEDULED),
    (S.COMPLETED, S.SUCCESS),
    (S.COMPLETED, S.FAILURE),
}
STOPS = {S.CANCELLED, S.TIMEOUT, S.FAILURE}
# Contract section 9: PAUSED from every unfinished state but COMPLETED (which only settles),
# and back to the state it left.
PAUSABLE = {S.CREATED, S.RESOLVING, S.RESOLVED, S.SCHEDULED, S.DISPATCHING, S.DISPATCHED, S.PROCESSING}
EXPECTED_FORWARD |= {(state, S.PAUSED) for state in PAUSABLE} | {(S.PAUSED, state) for state in PAUSABLE}
# Contract section 13: a waiting operation is approved (on to CREATED, as if just created) or
# denied; it may be stopped (withdrawn) like any unfinished one, not paused. A RECURRING series
# is "approved once for its series" (section 12/13): it goes on to SCHEDULED, its first firing.
EXPECTED_FORWARD |= {
    (S.WAITING_FOR_APPROVAL, S.CREATED),
    (S.WAITING_FOR_APPROVAL, S.SCHEDULED),
    (S.WAITING_FOR_APPROVAL, S.APPROVAL_DENIED),
}


def expected(current: OperationState, target: OperationState) -> bool:
    if current in TERMINAL_STATES:
        return False
    if target in STOPS and current != S.COMPLETED:
        return True
    return (current, target) in EXPECTED_FORWARD


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_state_table_matches_the_contract(current: OperationState, target: OperationState) -> None:
    assert can_move(current, target) is expected(current, target)


def test_terminal_states_have_no_exit() -> None:
    for state in TERMINAL_STATES:
        assert ALLOWED_TRANSITIONS[state] == frozenset()


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("50", S.DISPATCHED),
        ("DISPATCHED", S.DISPATCHED),
        ("dispatched", S.DISPATCHED),
        ("OPERATION_SUCCESS", S.SUCCESS),
        ("120", S.TIMEOUT),
        ("55", None),
        ("nope", None),
        ("", None),
    ],
)
def test_state_param_takes_integer_or_name(raw: str, state: OperationState | None) -> None:
    assert state_from_param(raw) == state


def make_operation(org: Org, state: OperationState = S.CREATED) -> Operation:
    return Operation.objects.create(
        tenant=org.tenant, operation_type="REBOOT", device_query={"all": True}, state=int(state)
    )


def test_move_refuses_a_move_outside_the_table_and_logs_nothing(org: Org) -> None:
    operation = make_operation(org, S.SUCCESS)

    moved = progress.move(operation.pk, S.PROCESSING)

    assert moved is False
    operation.refresh_from_db()
    assert operation.state == S.SUCCESS
    assert not OperationActivity.objects.filter(operation=operation).exists()


def test_each_move_appends_one_activity_row_with_counts(org: Org) -> None:
    operation = make_operation(org)

    assert progress.move(operation.pk, S.RESOLVING, actor="worker")
    assert not progress.move(operation.pk, S.RESOLVING, only_from=[S.CREATED])  # a second worker loses

    activity = list(OperationActivity.objects.filter(operation=operation))
    assert [(a.operation_state, a.state, a.actor) for a in activity] == [("QUERY INITIATED", 20, "worker")]
    assert activity[0].counts["resolved_device_count"] == 0


def test_advance_completes_and_decides_success_or_failure(org: Org) -> None:
    won = make_operation(org, S.DISPATCHED)
    Operation.objects.filter(pk=won.pk).update(resolved_count=2, success_count=2)
    lost = make_operation(org, S.DISPATCHED)
    Operation.objects.filter(pk=lost.pk).update(resolved_count=2, success_count=1, failed_count=1)
    waiting = make_operation(org, S.DISPATCHED)
    Operation.objects.filter(pk=waiting.pk).update(resolved_count=2, success_count=1)

    for operation in (won, lost, waiting):
        progress.advance(operation.pk, reported=True)

    states = {o.pk: o.state for o in Operation.objects.all()}
    assert states[won.pk] == S.SUCCESS
    assert states[lost.pk] == S.FAILURE
    assert states[waiting.pk] == S.PROCESSING
    trail = list(OperationActivity.objects.filter(operation=lost).values_list("operation_state", flat=True))
    assert trail == ["PROCESSING", "COMPLETED", "FAILURE"]
