"""What the floors above do when commands move: one explicit, typed list of followers.

``commands`` is delivery only: it moves command rows through their one table and writes
their history. What a move means to an operation (its counters and its state) belongs to
``operations``, which registers a :class:`CommandFollower` here in its ``AppConfig.ready``.
No Django signals: the moves call the followers directly, inside the mover's transaction.

A device report is one SQL statement (the hottest write of the server), so a follower adds
its part to that statement, and the hand-out's, as **data**: which of its own tables to read
or count along (:class:`Along`), which owner rows may hold commands back
(:class:`HandOutRule`). ``commands`` writes all the SQL over its own tables from that data,
and hands each follower back named, typed results (:class:`Report`): no SQL text crosses
the floors, and nothing is read back by position.

A follower's counters are moved by the one counter rule (``commands.counting``): a table
that keeps the counters of ``commands.counting.COUNTERS`` and names the row a command
counts into (``Along(counts=True)``) gets exactly the same deltas as every other path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

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
class Along:
    """A row of a floor above's table that the report's statement reads or counts into.

    The row is the one whose ``keys`` columns equal the command row's: pairs of (the table's
    column, the command's column: ``operation_id``, ``wave``, ``tenant_id``, ...).
    ``counts``: add the report's counter deltas (``commands.counting``) to the row, when the
    move reached its target (a failure sent back to the queue counts nothing), setting
    ``touch`` (a timestamp column) to the statement's time; the row's counters come back.
    Otherwise the row's ``columns`` are read as the statement began (plain column names).
    """

    name: str
    table: str
    keys: tuple[tuple[str, str], ...]
    columns: tuple[str, ...] = ()
    counts: bool = False
    touch: str | None = None


class Report(NamedTuple):
    """What a report did, as each follower gets it: the command as the statement left it,
    the state it had before, who reported, and the rows read or counted along by name
    (``None`` where no row matched or, for a counted row, nothing was counted)."""

    command: CommandStatus
    old_state: int
    actor: str
    along: dict[str, dict[str, Any] | None]


@dataclass(frozen=True)
class HandOutRule:
    """A gate's rule for the hand-out, over the command's owner row (the row of ``table``
    whose ``key`` is the command's ``operation_id``; a command without one is never held).

    The owner hands out nothing while its ``state_column`` is one of ``holding_states``;
    a command whose ``wave`` is past the owner's ``frontier_column`` waits; the owner's
    ``rate_column`` is read with each picked row (as ``rate``) for :meth:`HandOutGate.admit`;
    the owners of ``held_back`` (ids) hand out nothing for now, and a poll that finds their
    commands waiting must not be told "nothing new".
    """

    table: str
    key: str
    state_column: str
    holding_states: tuple[int, ...]
    frontier_column: str | None = None
    rate_column: str | None = None
    held_back: tuple[str, ...] = ()


class HandOutGate(Protocol):
    def hand_out_rule(self) -> HandOutRule:
        """What a poll may hand out now."""
        ...

    def admit(self, rows: list[dict[str, Any]]) -> set[int]:
        """The ids of handed-out ``rows`` (each with its owner's ``rate``) to hold back after
        all; they go back to the queue."""
        ...


class CommandFollower(Protocol):
    def report_along(self) -> tuple[Along, ...]:
        """The rows the report's statement reads and counts into for this follower (the same
        for every report: the statement is prepared once)."""
        ...

    def reported(self, report: Report) -> None:
        """After a report moved a command. Runs in the reporting request, not inside the
        statement's transaction: what it does must be safe to repeat (the sweeps do)."""
        ...

    def reported_together(self, reports: list[Report]) -> None:
        """After a batch of reports settled in one transaction (``commands.batches``), inside
        it, in their order: what :meth:`reported` does for each, done once per owner where
        once is enough."""
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
