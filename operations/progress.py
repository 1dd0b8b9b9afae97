"""How an operation's state and counters move: only here, only in SQL.

:func:`move` is the one writer of ``Operation.state``: every state change is the project's
compare-and-swap (``config.transitions.swap``) from the sources the table in
``operations.choices`` allows, which appends an activity row only if it won, so concurrent
workers and reports cannot apply a move twice. Counters change by ``F()`` increments in the
caller's transaction; which counter a command's move changes is ``commands.counting``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from commands import counting
from commands.choices import REPORTED_STATES
from commands.models import CommandStatus
from config.transitions import Swapped, swap
from inventory.events import emit
from inventory.models import EventType
from operations.choices import ACTIVITY_NAMES, ALLOWED_TRANSITIONS, OperationState, TargetSelection
from operations.events import operation_data
from operations.models import Operation, OperationActivity

S = OperationState
OperationId = uuid.UUID | str
#: Operations that may complete once their commands have: a snapshot, or a continuous one that
#: was closed (``operations.continuous``); an open continuous one waits for devices to join.
MAY_COMPLETE = Q(target_selection=TargetSelection.SNAPSHOT) | Q(continuous_closed_at__isnull=False)


def sources_of(target: OperationState) -> list[int]:
    """The states from which ``target`` may be entered, read from the one table."""
    return [int(state) for state, targets in ALLOWED_TRANSITIONS.items() if target in targets]


def move(
    operation_id: OperationId,
    target: OperationState,
    reason: str = "",
    actor: str = "system",
    only_from: Iterable[OperationState] | None = None,
    when: Q | None = None,
    also: dict[str, Any] | None = None,
) -> bool:
    """Move the operation to ``target`` if the table allows it from its current state.

    Returns whether this call made the move. ``only_from`` narrows the allowed sources;
    ``when`` adds a condition on the row (e.g. "every command finished", an abort rule's
    threshold), checked again on the row locked for the move, so the move and its reason
    cannot be split by a concurrent writer; ``also`` sets other columns in the same UPDATE
    (``paused_from``).
    """
    sources = sources_of(target)
    if only_from is not None:
        sources = [s for s in sources if s in {int(x) for x in only_from}]
    fields: dict[str, Any] = {"state": int(target), "updated_at": timezone.now(), "updated_by": actor}
    if reason:
        fields["reason"] = reason
    fields.update(also or {})
    candidates = Operation.objects.filter(pk=operation_id)
    if when is not None:
        candidates = candidates.filter(when)

    def follow(moved: list[Swapped]) -> None:
        """The activity row and the event (operation.state_changed, naming the state it
        left) commit with the move or not at all."""
        operation = Operation.objects.get(pk=operation_id)
        _record(operation, target, reason, actor)
        data = {**operation_data(operation, moved[0].previous), "reason": reason or operation.reason}
        emit(operation.tenant_id, EventType.OPERATION_STATE_CHANGED, data)

    # A move that cannot be made costs one read: advance() tries COMPLETED on every terminal
    # report, and almost always cannot.
    return bool(swap(candidates, "state", sources, fields, then=follow))


def pause(operation_id: OperationId, reason: str, actor: str = "system", when: Q | None = None) -> bool:
    """PAUSED from any unfinished state, remembering it (``paused_from``) for the way back."""
    return move(operation_id, S.PAUSED, reason, actor, when=when, also={"paused_from": F("state")})


def record_activity(
    operation_id: OperationId, state: OperationState, reason: str = "", actor: str = "system"
) -> None:
    _record(Operation.objects.only(*counting.COUNTERS).get(pk=operation_id), state, reason, actor)


def _record(operation: Operation, state: OperationState, reason: str, actor: str) -> None:
    OperationActivity.objects.create(
        operation_id=operation.pk,
        state=int(state),
        operation_state=ACTIVITY_NAMES[state],
        reason=reason,
        counts=operation.counts(),
        actor=actor,
    )


def add_counts(operation_id: OperationId, **deltas: int) -> None:
    """Add to counters in SQL (never read-modify-write), e.g. ``add_counts(op, success_count=1)``."""
    changes = {name: F(name) + delta for name, delta in deltas.items() if delta}
    if changes:
        Operation.objects.filter(pk=operation_id).update(updated_at=timezone.now(), **changes)


def dispatch(operation_id: OperationId, only_from: OperationState, count_dispatched: bool = False) -> bool:
    """The dispatch sequence, written once: ``only_from`` → DISPATCHING → DISPATCHED, then on
    (PROCESSING if a device already reported, COMPLETED if every command is finished).

    ``count_dispatched``: every command was written Queued (IMMEDIATE), so all of them count
    as dispatched. Resumable: an operation a crash left in DISPATCHING goes on from there.
    Returns whether this call moved it to DISPATCHED.
    """
    move(operation_id, S.DISPATCHING, only_from=[only_from])
    if count_dispatched:
        Operation.objects.filter(pk=operation_id, state=S.DISPATCHING).update(
            dispatched_count=F("resolved_count")
        )
    if not move(operation_id, S.DISPATCHED, only_from=[S.DISPATCHING]):
        return False
    reported = CommandStatus.objects.filter(operation_id=operation_id, state__in=REPORTED_STATES).exists()
    advance(operation_id, reported=reported)
    return True


def advance(operation_id: OperationId, reported: bool = False, actor: str = "system") -> None:
    """Move a dispatched operation on after its commands changed.

    PROCESSING on the first device report, COMPLETED once every command is finished, then
    SUCCESS if all succeeded or FAILURE otherwise. Each step is a conditional UPDATE, so
    calling this from many concurrent reports is safe and each step happens once.
    """
    if reported:
        move(operation_id, S.PROCESSING, actor=actor, only_from=[S.DISPATCHED])
    every_command_finished = Q(resolved_count__gt=0, resolved_count__lte=counting.finished()) & MAY_COMPLETE
    if not move(operation_id, S.COMPLETED, actor=actor, when=every_command_finished):
        return
    succeeded = Operation.objects.filter(pk=operation_id, success_count=F("resolved_count")).exists()
    if succeeded:
        move(operation_id, S.SUCCESS, actor=actor)
    else:
        move(operation_id, S.FAILURE, "not every device succeeded", actor=actor)
