"""What the floors above do when commands move: one explicit, typed list of followers.

``commands`` is delivery only: it moves command rows through their one table and writes
their history. What a move means to an operation (its counters and its state) belongs to
``operations``, which registers a :class:`CommandFollower` here in its ``AppConfig.ready``.
No Django signals: the moves call the followers directly, inside the mover's transaction.

A device report is one SQL statement (the hottest write of the server), so a follower adds
its part to that statement as common table expressions rather than as a second round
trip: :meth:`CommandFollower.report_sql` gives SQL that may read ``cur`` (the command row
before the move, with the columns of ``commands.services.REPORT_COLUMNS``) and ``moved``
(the row after it, present only when the move was made), may use the statement's
parameter ``%(now)s``, and gives one expression whose value the statement returns and hands
back to :meth:`CommandFollower.reported`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from commands.choices import CommandState

if TYPE_CHECKING:
    from commands.models import CommandStatus


@dataclass(frozen=True)
class Moved:
    """One group of a set move: ``count`` commands of one operation and tenant that went from
    ``old_state`` to ``new_state`` (``was_dispatched``: they had been dispatched before)."""

    operation_id: Any
    tenant_id: int
    new_state: int
    old_state: int
    was_dispatched: bool
    count: int


@dataclass(frozen=True)
class ReportSql:
    """A follower's part of the report statement: ``ctes`` (``name AS (...)``, comma-joined,
    none if empty) and ``value``, a scalar SQL expression returned with the row."""

    ctes: str
    value: str = "NULL"


class CommandFollower(Protocol):
    def report_sql(self, target: CommandState) -> ReportSql:
        """SQL run in the same statement as a report moving a command to ``target``."""
        ...

    def reported(self, command: CommandStatus, old_state: int, value: Any, actor: str) -> None:
        """After a report moved ``command`` from ``old_state``; ``value`` is what the
        follower's :attr:`ReportSql.value` read. Runs in the reporting request, not inside the
        statement's transaction: what it does must be safe to repeat (the sweeps do)."""
        ...

    def moved(self, groups: list[Moved], actor: str) -> None:
        """After a set move, inside its transaction."""
        ...


_followers: list[CommandFollower] = []


def register(follower: CommandFollower) -> None:
    """Add a follower (once; ``AppConfig.ready`` may run more than once in tests)."""
    if not any(type(known) is type(follower) for known in _followers):
        _followers.append(follower)


def followers() -> list[CommandFollower]:
    return list(_followers)
