"""Many reports in one statement (``commands.services.report_many``, the MQTT bridge's batches)
judge every report exactly as the one-report statement of the HTTP PUT (``services.report``):
the same answers, rows, history, counters and operation state, for the same reports."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from commands import batches, counting, services
from commands.choices import CommandState
from commands.followers import Report
from commands.models import CommandHistory, CommandStatus
from config.errors import DomainError
from operations.choices import OperationState
from operations.models import Operation
from tests.command_factories import dispatched_operation
from tests.conftest import DeviceActor, Org, add_devices

C = CommandState
ROLLOUT = {
    "retries": [
        {"failure_type": "FAILED", "max_attempts": 2},
        {"failure_type": "TIMED_OUT", "max_attempts": 2},
    ]
}

#: (device, state, extra arguments); "other" reports the next device's command as this one.
SCRIPT: list[tuple[int, CommandState, dict[str, Any]]] = [
    (0, C.ACKNOWLEDGED, {}),
    (0, C.IN_PROGRESS, {"reason": "downloading"}),
    (0, C.SUCCESS, {"details": {"took": 3}}),
    (1, C.ACKNOWLEDGED, {}),
    (1, C.ACKNOWLEDGED, {}),  # a repeat
    (1, C.FAILURE, {"reason": "disk full"}),  # retried: back to the queue
    (1, C.FAILURE, {"reason": "disk full"}),  # the same failure, late: already counted
    (2, C.SUCCESS, {}),
    (2, C.ACKNOWLEDGED, {}),  # backwards
    (3, C.ACKNOWLEDGED, {"expected_version": 99}),  # stale
    (3, C.FAILURE, {"attempt": 1}),
    (3, C.FAILURE, {"attempt": 1}),  # the attempt is over
    (4, C.SUCCESS, {"attempt": 2}),  # an attempt not reached
    (4, C.TIMEOUT, {}),
    (5, C.CANCELLED, {}),
    (5, C.SUCCESS, {}),  # a finished command
    (6, C.SUCCESS, {"other": True}),  # another device's command
    (7, C.IN_PROGRESS, {}),
    (7, C.FAILURE, {}),
    (7, C.ACKNOWLEDGED, {}),  # queued again by the retry: Queued → Acknowledged is allowed
    (7, C.FAILURE, {}),  # the second attempt fails for good
]


def run_script(operation: Operation, devices: list[DeviceActor], many: bool) -> list[str]:
    commands = {
        command.device_id: command.pk for command in CommandStatus.objects.filter(operation=operation)
    }
    inputs = []
    for index, state, extra in SCRIPT:
        extra = dict(extra)
        other = extra.pop("other", False)
        device = devices[index]
        owner = devices[(index + 1) % len(devices)] if other else device
        inputs.append(
            services.ReportInput(
                pk=commands[owner.device.pk],
                target=state,
                actor=f"device:{device.device.device_id}",
                tenant_id=device.device.tenant_id,
                device_pk=device.device.pk,
                **extra,
            )
        )
    answers: list[str] = []
    if many:
        with transaction.atomic():
            reports: list[Report] = []
            results = services.report_many(inputs, reports)
            services.reported_together(reports)
        return [answer_of(result) for result in results]
    for item in inputs:
        outcome: services.ReportResult
        try:
            outcome = services.report(
                item.pk,
                item.target,
                reason=item.reason,
                details=item.details,
                expected_version=item.expected_version,
                actor=item.actor,
                tenant_id=item.tenant_id,
                device_pk=item.device_pk,
                attempt=item.attempt,
            )
        except (DomainError, CommandStatus.DoesNotExist) as refused:
            outcome = refused
        answers.append(answer_of(outcome))
    return answers


def answer_of(result: services.ReportResult) -> str:
    if isinstance(result, CommandStatus.DoesNotExist):
        return "not_found"
    if isinstance(result, Exception):
        return f"{getattr(result, 'code', '?')}: {getattr(result, 'errors', result)}"
    command, changed = result
    return f"{C(command.state).label} v{command.version} a{command.attempt} changed={changed}"


def story(operation: Operation) -> dict[int, Any]:
    rows = CommandStatus.objects.filter(operation=operation)
    told: dict[int, Any] = {}
    for row in rows:
        history = list(
            CommandHistory.objects.filter(command_id=row.pk)
            .order_by("id")
            .values_list("from_state", "to_state", "reason", "actor")
        )
        told[row.device_id] = (row.state, row.reason, row.details, row.attempt, row.version, history)
    return told


@pytest.mark.parametrize("rollout", [ROLLOUT, {"waves": [50, 100]}])
def test_one_statement_for_many_reports_settles_them_as_one_each(org: Org, rollout: dict[str, Any]) -> None:
    devices = add_devices(org.tenant, 8)
    one_by_one = dispatched_operation(org.tenant, devices, rollout=rollout)
    together = dispatched_operation(org.tenant, devices, rollout=rollout)

    expected = run_script(one_by_one, devices, many=False)
    answers = run_script(together, devices, many=True)

    assert answers == expected
    assert story(together) == story(one_by_one)
    for operation in (one_by_one, together):
        operation.refresh_from_db()
    shown = {name: getattr(together, name) for name in counting.COUNTERS}
    assert shown == {name: getattr(one_by_one, name) for name in counting.COUNTERS}
    assert shown == counting.recount(together.pk)
    assert together.state == one_by_one.state
    assert (
        counting.recount_by_wave(together.pk)
        == {
            wave.wave: {name: getattr(wave, name) for name in counting.COUNTERS}
            for wave in together.waves.all()
        }
        or not together.waves.exists()
    )


def test_many_reports_of_one_operation_add_up_in_one_statement(org: Org) -> None:
    devices = add_devices(org.tenant, 30)
    operation = dispatched_operation(org.tenant, devices)
    commands = list(CommandStatus.objects.filter(operation=operation).values_list("pk", "device_id"))
    states = [C.SUCCESS, C.FAILURE, C.TIMEOUT]
    inputs = [
        services.ReportInput(pk=pk, target=states[n % 3], actor="bench", device_pk=device)
        for n, (pk, device) in enumerate(commands)
    ]
    with transaction.atomic():
        reports: list[Report] = []
        results = services.report_many(inputs, reports)
        services.reported_together(reports)
    assert all(not isinstance(result, Exception) and result[1] for result in results)
    operation.refresh_from_db()
    # a TimeOut of a command the device never had is a dispatch failure
    assert (operation.success_count, operation.failed_count, operation.dispatch_failed_count) == (10, 10, 10)
    assert {name: getattr(operation, name) for name in counting.COUNTERS} == counting.recount(operation.pk)
    assert operation.state == OperationState.FAILURE  # moved on once, by the last report's batch


def test_hand_outs_of_many_devices_in_one_statement_give_what_one_poll_each_gives(org: Org) -> None:
    """``batches.settle`` hands out a run of inbox asks in one statement
    (``services.hand_out_many``): each device gets its own commands, oldest first, a
    device asking twice in the batch gets the rest on its second ask, a paused operation's
    command stays queued, an operation past its rate is held back (and said to be), and every
    hand-out is in the history under the device that asked."""
    devices = add_devices(org.tenant, 7)
    older = dispatched_operation(org.tenant, devices[:4])
    newer = dispatched_operation(org.tenant, devices[:4], operation_type="PING")
    paused = dispatched_operation(org.tenant, devices[4:5])
    Operation.objects.filter(pk=paused.pk).update(state=OperationState.PAUSED)
    rated = dispatched_operation(org.tenant, devices[5:7], rollout={"max_per_minute": 1})

    def ask(actor: DeviceActor, limit: int = 1) -> batches.HandOutRequest:
        device = actor.device
        return batches.HandOutRequest(
            device.tenant_id, device.pk, device.device_id, f"device:{device.device_id}", limit
        )

    asks: list[batches.Request] = [ask(devices[0]), ask(devices[1]), ask(devices[0]), ask(devices[2], 10)]
    asks += [ask(devices[4])]
    asks += [ask(devices[5]), ask(devices[6]), ask(devices[3])]
    statements: list[str] = []

    def seen(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(seen):
        outcomes = batches.settle(asks)

    # one statement per run of distinct devices with one limit: [0, 1], [0], [2 (10)], [4, 5, 6, 3];
    # a run of one device takes the HTTP poll's own statement
    assert sum("CROSS JOIN LATERAL" in sql for sql in statements) == 2
    handed = [[(c["command"], c["request"]) for c in outcome.commands] for outcome in outcomes]
    first, then = ("REBOOT", str(older.pk)), ("PING", str(newer.pk))
    assert handed[:5] == [[first], [first], [then], [first, then], []]  # 3rd: device 0's second ask
    assert handed[7] == [first]
    assert [outcome.held for outcome in outcomes[:5]] == [False] * 5
    assert CommandStatus.objects.get(operation=paused).state == C.QUEUED
    # the rate of 1 a minute: one of the two devices gets its command, the other is held back
    assert sorted([handed[5], handed[6]]) == [[], [("REBOOT", str(rated.pk))]]
    assert sorted([outcomes[5].held, outcomes[6].held]) == [False, True]
    held_back = devices[5] if outcomes[5].held else devices[6]
    assert CommandStatus.objects.get(operation=rated, device=held_back.device).state == C.QUEUED
    for actor in [*devices[:4], *devices[5:]]:
        mine = CommandHistory.objects.filter(command__device=actor.device, to_state=C.INITIATED)
        assert set(mine.values_list("actor", flat=True)) == {f"device:{actor.device.device_id}"}


def test_a_batch_of_hand_outs_puts_back_at_most_one_statement_past_a_rate(org: Org) -> None:
    """A rollout's rate is checked after the hand-out statement: the rows past it go back to the
    queue. A batch's hand-outs run in statements of ``HAND_OUT_RUN`` devices, so a batch of many
    devices of a rate-limited operation puts back at most one statement's worth."""
    devices = add_devices(org.tenant, batches.HAND_OUT_RUN + 8)
    rated = dispatched_operation(org.tenant, devices, rollout={"max_per_minute": 3})
    asks: list[batches.Request] = [
        batches.HandOutRequest(d.device.tenant_id, d.device.pk, d.device.device_id, "device:x", 1)
        for d in devices
    ]

    outcomes = batches.settle(asks)

    assert sum(len(outcome.commands) for outcome in outcomes) == 3
    assert CommandStatus.objects.filter(operation=rated, state=C.INITIATED).count() == 3
    put_back = CommandHistory.objects.filter(command__operation=rated, reason=services.HELD_BACK).count()
    assert 0 < put_back < batches.HAND_OUT_RUN
