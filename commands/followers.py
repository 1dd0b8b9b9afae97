"""What the floors above do when commands move: one explicit, typed list of followers.

``commands`` is delivery only: it moves command rows through their one table and writes
their history. What a move means to an operation (its counters and its state) belongs to
``operations``, which registers a :class:`CommandFollower` here in its ``AppConfig.ready``.
No Django signals: the moves call the followers directly, inside the mover's transaction.

A device report is one SQL statement (the hottest write of the server), so a follower adds
its part to that statement as common table expressions rather than as a second round
trip: :meth:`CommandFollower.report_sql` gives SQL that may read ``cur`` (the command row
before the move, with the columns of ``commands.services.REPORT_COLUMNS``) and ``moved``
(the row after it, present only when the move was made; its ``state`` is where the command
went, which is the queue again instead of the target for a retried failure), may use the statement's
parameter ``%(now)s``, and gives one expression whose value the statement returns and hands
back to :meth:`CommandFollower.reported`.

The inbox's hand-out is one statement too. A floor above that holds some commands back (an
operation paused or stopped, a rollout's wave not open yet, its rate spent) registers a
:class:`HandOutGate`: its SQL narrows which queued rows a poll may pick, in the same
statement, and :meth:`HandOutGate.admit` may hold back rows after the statement (a rate
shared by every process, kept outside the database), which go back to the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from commands.choices import CommandState

if TYPE_CHECKING:
    from commands.models import CommandStatus


@dataclass(frozen=True)
class Moved:
    """One group of a set move: ``count`` commands of one operation, tenant and rollout wave
    that went from ``old_state`` to ``new_state`` (``was_dispatched``: they had been
    dispatched before). ``new_state`` is where they went: a retried failure goes back to the
    queue instead of the move's target."""

    operation_id: Any
    tenant_id: int
    new_state: int
    old_state: int
    was_dispatched: bool
    count: int
    wave: int = 1


@dataclass(frozen=True)
class ReportSql:
    """A follower's part of the report statement: ``ctes`` (``name AS (...)``, comma-joined,
    none if empty) and ``value``, a scalar SQL expression returned with the row."""

    ctes: str
    value: str = "NULL"


@dataclass(frozen=True)
class HandOutSql:
    """A gate's part of the hand-out statement, over ``cs`` (the command rows).

    ``joins`` is added to the FROM of the pick; ``condition`` to its WHERE; ``columns`` are
    ``(expression, name)`` pairs read with each picked row and returned to
    :meth:`HandOutGate.admit`; ``held``, if given, is a condition on the device's queued rows
    that the gate holds back for a while (the poll's answer must then not be cached as
    empty); ``params`` are the named parameters the SQL uses.
    """

    joins: str = ""
    condition: str = "true"
    columns: tuple[tuple[str, str], ...] = ()
    held: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


class HandOutGate(Protocol):
    def hand_out_sql(self) -> HandOutSql:
        """SQL that narrows the rows a poll may hand out."""
        ...

    def admit(self, rows: list[dict[str, Any]]) -> set[int]:
        """The ids of handed-out ``rows`` to hold back after all; they go back to the queue."""
        ...


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


_gates: list[HandOutGate] = []


def register_gate(gate: HandOutGate) -> None:
    """Add a hand-out gate (once, as :func:`register`)."""
    if not any(type(known) is type(gate) for known in _gates):
        _gates.append(gate)


def gates() -> list[HandOutGate]:
    return list(_gates)
