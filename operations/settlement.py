"""Settlement: a command of an operation moved, so the operation's counters and state follow.

This is the operations floor's :class:`~commands.followers.CommandFollower`, registered in
``OperationsConfig.ready``. Counters move in the same statement as a device's report (the
report's SQL gets :meth:`OperationSettlement.report_sql` as extra CTEs) or in the same
transaction as a set move; the operation's state then follows through ``progress``, the one
writer of that column. The counter rule itself is ``operations.counters``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from commands.choices import TERMINAL_STATES, CommandState
from commands.followers import Moved, ReportSql
from commands.models import CommandStatus
from operations import counters, progress
from operations.choices import OperationState
from operations.models import Operation

S = OperationState


class OperationSettlement:
    """Keeps each operation's counters exact and its state current as its commands move."""

    def report_sql(self, target: CommandState) -> ReportSql:
        """Read the operation's state (the first report moves DISPATCHED on) and, when the
        move changes a counter, add to it, all inside the report's statement.

        ``op`` reads the state as it was when the statement began, as the report's own
        ``cur`` reads the command: a report that races the operation's last step is settled
        again by the sweep (``complete_finished_operations``).
        """
        table = Operation._meta.db_table
        ctes = f"op AS (SELECT o.id, o.state FROM {table} o JOIN cur ON o.id = cur.operation_id)"
        sets = counters.report_sets(target, "o", "cur")
        if sets:
            ctes += f""", counted AS (
                UPDATE {table} o SET {", ".join(sets)}, updated_at = %(now)s
                FROM moved JOIN cur USING (id) WHERE o.id = cur.operation_id
            )"""
        return ReportSql(ctes=ctes, value="(SELECT state FROM op)")

    def reported(self, command: CommandStatus, old_state: int, value: Any, actor: str) -> None:
        if not command.operation_id:
            return
        # Each step is a conditional UPDATE skipped when it cannot match: the hot path stays short.
        first_report = value == S.DISPATCHED
        if first_report or command.state in TERMINAL_STATES:
            progress.advance(command.operation_id, reported=first_report, actor=actor)

    def moved(self, groups: list[Moved], actor: str) -> None:
        """Add each group's counter deltas to its operation, then let each operation advance."""
        changes: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for group in groups:
            if group.operation_id is None:
                continue
            moved = counters.deltas(group.old_state, group.new_state, group.was_dispatched)
            for name, delta in moved.items():
                changes[group.operation_id][name] += delta * group.count
        for operation_id, deltas in sorted(changes.items(), key=lambda item: str(item[0])):
            progress.add_counts(operation_id, **deltas)
        for operation_id in sorted({str(g.operation_id) for g in groups if g.operation_id is not None}):
            progress.advance(operation_id, actor=actor)
