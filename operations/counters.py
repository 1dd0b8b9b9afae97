"""The counter rule: which of an operation's counters a command's move changes.

Written once, three ways, side by side, because three paths need it:

- :func:`deltas`, in Python, for set moves (sweeps, cancels), applied per group of rows;
- :func:`report_sets`, as SQL, for the one-statement device report (``commands.services.report``),
  which moves the row and the counters in one round trip;
- :func:`recount`, as an aggregate over the command rows, the independent check that the
  maintenance runs use to find and repair drift (``operations.aggregates``).

``tests/test_counters.py`` drives every move of the command table through all three and
checks that they agree.
"""

from __future__ import annotations

import uuid

from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.expressions import CombinedExpression

from commands.choices import UNDELIVERED_STATES, CommandState
from commands.models import CommandHistory, CommandStatus

C = CommandState

#: Every counter of an operation, in the order the API lists them.
COUNTERS = (
    "resolved_count",
    "dispatched_count",
    "dispatch_failed_count",
    "failed_count",
    "success_count",
    "cancelled_count",
    "timed_out_count",
)
#: ``timed_out_count`` is the part of ``failed_count`` that timed out after the device had the
#: command (a rollout's ``TIMED_OUT`` rules read it); it is not a finished count of its own.
#: The counters of commands that finished: an operation is complete when they add up to
#: ``resolved_count``.
FINISHED = ("success_count", "failed_count", "dispatch_failed_count", "cancelled_count")

_UNDELIVERED_SQL = "(" + ", ".join(str(int(s)) for s in sorted(UNDELIVERED_STATES)) + ")"


def deltas(old: int, new: int, was_dispatched: bool = True) -> dict[str, int]:
    """Which counters one command's move from ``old`` to ``new`` changes, and by how much.

    A TimeOut is a dispatch failure while the device had not received the command, a device
    failure after; a Scheduled command released for the first time counts as dispatched.
    """
    target = C(new)
    if target == C.SUCCESS:
        return {"success_count": 1}
    if target == C.FAILURE:
        return {"failed_count": 1}
    if target == C.TIMEOUT:  # timed_out_count: the part of failed_count that timed out
        return (
            {"dispatch_failed_count": 1}
            if old in UNDELIVERED_STATES
            else {"failed_count": 1, "timed_out_count": 1}
        )
    if target == C.CANCELLED:
        return {"cancelled_count": 1}
    if target == C.QUEUED and old == C.SCHEDULED and not was_dispatched:
        return {"dispatched_count": 1}
    return {}


def report_sets(target: CommandState, operation: str, old: str) -> list[str]:
    """The ``SET`` items of the report statement's counter ``UPDATE`` for a move to ``target``.

    ``operation`` is the alias of the operations table in that ``UPDATE``, ``old`` the alias
    of the command row as it was before the move. Empty when the move changes no counter.
    """
    if target == C.QUEUED:  # a Scheduled command released for the first time is dispatched
        first = f"({old}.state = {int(C.SCHEDULED)} AND {old}.dispatched_at IS NULL)::int"
        return [f"dispatched_count = {operation}.dispatched_count + {first}"]
    if target == C.TIMEOUT:  # a dispatch failure or a device failure, by the state it left
        undelivered = f"({old}.state IN {_UNDELIVERED_SQL})::int"
        return [
            f"dispatch_failed_count = {operation}.dispatch_failed_count + {undelivered}",
            f"failed_count = {operation}.failed_count + 1 - {undelivered}",
            f"timed_out_count = {operation}.timed_out_count + 1 - {undelivered}",
        ]
    return [
        f"{name} = {operation}.{name} + {int(delta)}"
        for name, delta in deltas(int(C.IN_PROGRESS), target).items()
    ]


def finished() -> CombinedExpression:
    """The sum of :data:`FINISHED` as a database expression (``F() + F() + ...``)."""
    first, *rest = (F(name) for name in FINISHED)
    total = first + rest[0]
    for item in rest[1:]:
        total = total + item
    return total


def recount(operation_id: uuid.UUID | str) -> dict[str, int]:
    """The counters as the command rows say they should be.

    A TimeOut counts as a device failure if the device had acknowledged the command (its
    history shows it), and as a dispatch failure otherwise, as :func:`deltas` decides.
    """
    acknowledged = CommandHistory.objects.filter(
        command=OuterRef("pk"), to_state__in=[C.ACKNOWLEDGED, C.IN_PROGRESS]
    )
    commands = CommandStatus.objects.filter(operation_id=operation_id).annotate(acked=Exists(acknowledged))
    timeout = Q(state=C.TIMEOUT)
    counts = commands.aggregate(
        resolved_count=Count("pk"),
        dispatched_count=Count("pk", filter=Q(dispatched_at__isnull=False)),
        success_count=Count("pk", filter=Q(state=C.SUCCESS)),
        failed_count=Count("pk", filter=Q(state=C.FAILURE) | (timeout & Q(acked=True))),
        dispatch_failed_count=Count("pk", filter=timeout & Q(acked=False)),
        cancelled_count=Count("pk", filter=Q(state=C.CANCELLED)),
        timed_out_count=Count("pk", filter=timeout & Q(acked=True)),
    )
    return {name: int(counts[name] or 0) for name in COUNTERS}
