"""Settlement: a command of an operation moved, so the operation's counters and state follow.

This is the operations floor's :class:`~commands.followers.CommandFollower`, registered in
``OperationsConfig.ready``. Counters move in the same statement as a device's report (the
report's SQL gets :meth:`OperationSettlement.report_sql` as extra CTEs) or in the same
transaction as a set move; the operation's state then follows through ``progress``, the one
writer of that column. The counter rule itself is ``operations.counters``.

A rollout's wave keeps the same counters, moved in the same statement. After the move, the
counters as that statement left them decide a rollout's next step: an abort rule met
(``aborts``), a wave finished (``waves.close_if_finished``). Each of those steps is a
conditional UPDATE re-checked against the exact counters, so concurrent reports take it
exactly once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from django.db import transaction

from commands.choices import TERMINAL_STATES, CommandState
from commands.followers import Moved, ReportSql
from commands.models import CommandStatus
from operations import aborts, counters, progress, waves
from operations.choices import OperationState
from operations.models import Operation, OperationWave

S = OperationState


class OperationSettlement:
    """Keeps each operation's counters exact and its state current as its commands move."""

    def report_sql(self, target: CommandState) -> ReportSql:
        """Read the operation's state (the first report moves DISPATCHED on) and, when the
        move changes a counter, add to it and to its wave's, all inside the report's statement.

        ``op`` reads the state as it was when the statement began, as the report's own
        ``cur`` reads the command: a report that races the operation's last step is settled
        again by the sweep (``complete_finished_operations``). A failure that the command's
        retry budget sends back to the queue (``moved.state`` is not ``target``) counts
        nothing: only a command's final outcome is counted.
        """
        table = Operation._meta.db_table
        ctes = (
            f"op AS (SELECT o.id, o.state, o.rollout IS NOT NULL AS rolled FROM {table} o "
            "JOIN cur ON o.id = cur.operation_id)"
        )
        sets = counters.report_sets(target, "o", "cur")
        value = "(SELECT json_build_array(op.state, op.rolled) FROM op)"
        if sets:
            reached = f"moved.state = {int(target)}"
            returned = ", ".join(f"o.{name}" for name in counters.COUNTERS)
            wave_sets = counters.report_sets(target, "w", "cur")
            finished = " + ".join(f"w.{name}" for name in counters.FINISHED)
            ctes += f""", counted AS (
                UPDATE {table} o SET {", ".join(sets)}, updated_at = %(now)s
                FROM moved JOIN cur USING (id) WHERE o.id = cur.operation_id AND {reached}
                RETURNING {returned}
            ), waved AS (
                UPDATE {OperationWave._meta.db_table} w SET {", ".join(wave_sets)}
                FROM moved JOIN cur USING (id), op
                WHERE op.rolled AND w.operation_id = cur.operation_id AND w.wave = cur.wave AND {reached}
                RETURNING w.wave, w.resolved_count <= {finished} AS closed
            )"""
            value = (
                "(SELECT json_build_array(op.state, op.rolled, "
                "(SELECT row_to_json(counted) FROM counted), "
                "(SELECT wave FROM waved WHERE closed)) FROM op)"
            )
        return ReportSql(ctes=ctes, value=value)

    def reported(self, command: CommandStatus, old_state: int, value: Any, actor: str) -> None:
        if not command.operation_id or value is None:
            return
        found = json.loads(value) if isinstance(value, str) else value
        state, rolled = found[0], found[1]
        counted = found[2] if len(found) > 2 else None
        closed_wave = found[3] if len(found) > 3 else None
        if rolled and counted:
            aborts.abort_if_met(command.operation_id, counted, actor)
        if closed_wave is not None:
            waves.close_if_finished(command.operation_id, closed_wave, actor)
        # Each step is a conditional UPDATE skipped when it cannot match: the hot path stays short.
        first_report = state == S.DISPATCHED
        if first_report or command.state in TERMINAL_STATES:
            progress.advance(command.operation_id, reported=first_report, actor=actor)

    def moved(self, groups: list[Moved], actor: str) -> None:
        """Add each group's counter deltas to its operation and wave, then let each operation
        advance, and after commit, let its rollout take its next step."""
        changes: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        wave_changes: dict[tuple[Any, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for group in groups:
            if group.operation_id is None:
                continue
            moved = counters.deltas(group.old_state, group.new_state, group.was_dispatched)
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


def _after_set_move(operations: list[str], finished_waves: list[tuple[str, int]], actor: str) -> None:
    """A rollout's next steps after a set move committed: abort, close waves."""
    for operation_id in operations:
        aborts.abort_if_met(operation_id, None, actor)
    for operation_id, wave in finished_waves:
        waves.close_if_finished(operation_id, wave, actor)
