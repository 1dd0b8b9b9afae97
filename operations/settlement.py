"""Settlement: a command of an operation moved, so the operation's counters and state follow.

This is the operations floor's :class:`~commands.followers.CommandFollower`, registered in
``OperationsConfig.ready``. Counters move in the same statement as a device's report (the
report's SQL gets :meth:`OperationSettlement.report_sql` as extra CTEs) or in the same
transaction as a set move; the operation's state then follows through ``progress``, the one
writer of that column. The counter rule itself is ``commands.counting``.

A rollout's wave keeps the same counters, moved in the same statement. After the move, the
counters as that statement left them decide a rollout's next step: an abort rule met
(``aborts``), a wave finished (``waves.close_if_finished``). Each of those steps is a
conditional UPDATE re-checked against the exact counters, so concurrent reports take it
exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

from django.db import transaction

from commands import counting
from commands.choices import TERMINAL_STATES
from commands.followers import Along, Moved, Report
from operations import aborts, progress, waves
from operations.choices import OperationState
from operations.models import Operation, OperationWave

S = OperationState


#: What the report's statement reads and counts for an operation (``commands.followers.Along``).
_ALONG = (
    Along("op", Operation._meta.db_table, keys=(("id", "operation_id"),), columns=("state", "rollout")),
    Along(
        "counted", Operation._meta.db_table, keys=(("id", "operation_id"),), counts=True, touch="updated_at"
    ),
    Along(
        "waved",
        OperationWave._meta.db_table,
        keys=(("operation_id", "operation_id"), ("wave", "wave")),
        counts=True,
    ),
)


class OperationSettlement:
    """Keeps each operation's counters exact and its state current as its commands move."""

    def report_along(self) -> tuple[Along, ...]:
        """Read the operation's state (the first report moves DISPATCHED on) and whether it
        rolls out, and count the move into the operation and its wave, all inside the
        report's statement.

        ``op`` reads the state as it was when the statement began, as the report reads the
        command: a report that races the operation's last step is settled again by the sweep
        (``complete_finished_operations``). Only an operation with a rollout has wave rows:
        for the others the wave's count matches nothing.
        """
        return _ALONG

    def reported(self, report: Report) -> None:
        step = _rollout_steps(report)
        operation_id = report.command.operation_id
        # Each step is a conditional UPDATE skipped when it cannot match: the hot path stays short.
        if step is not None and operation_id is not None and (step.first_report or step.terminal):
            progress.advance(operation_id, reported=step.first_report, actor=report.actor)

    def reported_together(self, reports: list[Report]) -> None:
        """A batch's reports: a rollout's steps after each (as :meth:`reported`: they are
        decided from the counters each report's statement returned, so an abort rule or a
        finished wave is seen at the report that met it), and each operation moved on once,
        after the last (PROCESSING, COMPLETED: conditional UPDATEs against the counters as
        the whole batch left them, which is what one move per report would have reached)."""
        advances: dict[Any, tuple[bool, str]] = {}
        for report in reports:
            step = _rollout_steps(report)
            if step is None or not (step.first_report or step.terminal):
                continue
            first, _actor = advances.get(report.command.operation_id, (False, report.actor))
            advances[report.command.operation_id] = (first or step.first_report, report.actor)
        for operation_id, (first_report, actor) in advances.items():
            progress.advance(operation_id, reported=first_report, actor=actor)

    def moved(self, groups: list[Moved], actor: str) -> None:
        """Add each group's counter deltas to its operation and wave, then let each operation
        advance, and after commit, let its rollout take its next step."""
        changes: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        wave_changes: dict[tuple[Any, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for group in groups:
            if group.operation_id is None:
                continue
            moved = counting.deltas(group.old_state, group.new_state, group.was_dispatched)
            for name, delta in moved.items():
                changes[group.operation_id][name] += delta * group.count
                wave_changes[(group.operation_id, group.wave)][name] += delta * group.count
        for operation_id, deltas in sorted(changes.items(), key=lambda item: str(item[0])):
            progress.add_counts(operation_id, **deltas)
        touched = sorted({str(g.operation_id) for g in groups if g.operation_id is not None})
        rolled: set[str] = set()
        if touched:
            with_rollout = Operation.objects.filter(pk__in=touched, rollout__isnull=False)
            rolled = {str(pk) for pk in with_rollout.values_list("pk", flat=True)}
        # Only a rollout's operation has wave rows: no UPDATE for the others.
        waves.add_counts({key: deltas for key, deltas in wave_changes.items() if str(key[0]) in rolled})
        for operation_id in touched:
            progress.advance(operation_id, actor=actor)
        if rolled:
            finished_waves = sorted({(str(op), wave) for op, wave in wave_changes if str(op) in rolled})
            transaction.on_commit(lambda: _after_set_move(sorted(rolled), finished_waves, actor))


class _Step(NamedTuple):
    first_report: bool  # the operation was DISPATCHED when the report's statement began
    terminal: bool  # the command finished


def _rollout_steps(report: Report) -> _Step | None:
    """After one report: a rollout's abort rule and the closing of a finished wave, from the
    counters its statement returned; what the operation's state needs next (None: no
    operation)."""
    command = report.command
    operation = report.along.get("op")
    if not command.operation_id or operation is None:
        return None
    counted = report.along.get("counted")
    if operation["rollout"] is not None:
        if counted:
            aborts.abort_if_met(command.operation_id, counted, report.actor)
        wave = report.along.get("waved")
        if wave and wave["resolved_count"] <= sum(wave[name] for name in counting.FINISHED):
            waves.close_if_finished(command.operation_id, wave["wave"], report.actor)
    return _Step(operation["state"] == S.DISPATCHED, command.state in TERMINAL_STATES)


def _after_set_move(operations: list[str], finished_waves: list[tuple[str, int]], actor: str) -> None:
    """A rollout's next steps after a set move committed: abort, close waves."""
    for operation_id in operations:
        aborts.abort_if_met(operation_id, None, actor)
    for operation_id, wave in finished_waves:
        waves.close_if_finished(operation_id, wave, actor)
