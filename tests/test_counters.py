"""The counter rule, written three ways in ``operations.counters``, agrees with itself.

For every move the command table allows, from every way a command can be in its source state
(dispatched or not), the move is made for real: through the one-statement report (the SQL
fragment) when a client may make it, and through a set move (the Python deltas) always.
Each time, the stored counters must have changed by exactly ``counters.deltas`` and must equal
``counters.recount`` over the rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from commands.choices import ALLOWED_TRANSITIONS, CommandState, can_move
from commands.models import CommandStatus
from commands.services import hand_out, move_and_settle, report
from operations import counters
from operations.models import Operation
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import Org, add_device

C = CommandState


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _immediate(org: Org) -> CommandStatus:
    device = add_device(org.tenant, "dev-counted")
    return command_of(dispatched_operation(org.tenant, [device]), device)


def _window_not_yet_open(org: Org) -> CommandStatus:
    """A command Scheduled by its fan-out: never dispatched yet."""
    device = add_device(org.tenant, "dev-counted")
    start = timezone.now() + dt.timedelta(days=1)
    operation = dispatched_operation(
        org.tenant,
        [device],
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": _iso(start),
            "end_datetime": _iso(start + dt.timedelta(days=1)),
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
    C.QUEUED: [("fan-out", _immediate)],
    C.INITIATED: [("handed out", lambda org: _to(_immediate(org), C.INITIATED))],
    C.ACKNOWLEDGED: [("acknowledged", lambda org: _to(_immediate(org), C.INITIATED, C.ACKNOWLEDGED))],
    C.IN_PROGRESS: [
        ("in progress", lambda org: _to(_immediate(org), C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS))
    ],
    C.SCHEDULED: [
        ("window not yet open", _window_not_yet_open),
        ("dispatched, then window closed", lambda org: _to(_immediate(org), C.SCHEDULED)),
    ],
}

CASES = [
    pytest.param(source, target, how, arrive, way, id=f"{source.name}->{target.name}:{how}:{way}")
    for source, arrivals in ARRIVALS.items()
    for target in sorted(ALLOWED_TRANSITIONS[source])
    for how, arrive in arrivals
    for way in ("report", "set move")
    if way == "set move" or can_move(source, target, by_client=True)
]


def _stored(operation_id: Any) -> dict[str, int]:
    return dict(Operation.objects.filter(pk=operation_id).values(*counters.COUNTERS).get())


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
    assert before == counters.recount(command.operation_id)

    if way == "report":
        _, moved = report(command.pk, target, actor="device")
        assert moved
    else:
        assert move_and_settle(CommandStatus.objects.filter(pk=command.pk), target, "tests") == 1

    after = _stored(command.operation_id)
    changed = {name: after[name] - before[name] for name in counters.COUNTERS if after[name] != before[name]}
    assert changed == counters.deltas(source, target, was_dispatched)
    assert after == counters.recount(command.operation_id)
