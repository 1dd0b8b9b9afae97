"""The counter rule: which counter a command's move adds one to. One table of data.

An operation (and each of its rollout's waves) keeps exact counters of its commands. Three
paths need the rule, and all three are generated here from :data:`RULES`, so they cannot
drift apart:

- :func:`deltas`, in Python, for set moves (sweeps, cancels, stops), applied per group;
- :func:`report_sets`, as the ``SET`` items of the one-statement device report
  (``commands.services.report``), which moves the row and the counters in one round trip;
- :func:`recount`, an aggregate over the command rows and their history: the independent
  check that the maintenance runs use to find and repair drift.

**The rule for a command that was retried** (a rollout's ``retries`` put it back in the
queue after a failure): only the move into its final state counts, and that move is judged
by the state it left, that is by its last attempt. A command acknowledged, failed, queued
again, handed out and then timed out by a stop never reached the device in its last
attempt: it is a dispatch failure, exactly as a command that never had a retry. The live
paths see the state the move left; the recount reads it from the history row of the move
into the final state (``from_state``), which every move writes in its own statement. A
command born in its final state (a window that never opens) has no such row and left
:data:`BORN_FROM` (it never reached the device).

``tests/test_counters.py`` drives every move of the command table, retried and stopped
commands included, through all three paths and checks that they agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Coalesce

from commands.choices import UNDELIVERED_STATES, CommandState
from commands.models import CommandHistory, CommandStatus

C = CommandState

#: Every counter, in the order the API lists them. ``resolved_count`` counts every command
#: (the fan-out adds what it writes); the others follow :data:`RULES`.
COUNTERS = (
    "resolved_count",
    "dispatched_count",
    "dispatch_failed_count",
    "failed_count",
    "success_count",
    "cancelled_count",
    "timed_out_count",
)
#: The counters of commands that finished: an operation (or a wave) is complete when they
#: add up to ``resolved_count``. ``timed_out_count`` is a part of ``failed_count``, not a
#: finished count of its own.
FINISHED = ("success_count", "failed_count", "dispatch_failed_count", "cancelled_count")

#: The states in which the device has the command (it said so): a timeout there is the
#: device's failure; anywhere else, a dispatch failure.
HAD_IT = frozenset(set(C) - UNDELIVERED_STATES)
#: What a command born in its final state (no move into it, no history row) is judged to have left.
BORN_FROM = C.SCHEDULED


@dataclass(frozen=True)
class Rule:
    """``counter`` gains one when a command moves into ``into`` from a state of ``left``
    (any state if None). ``first_dispatch``: only if the command had never been dispatched
    (its ``dispatched_at`` is still empty), which the move then sets."""

    counter: str
    into: CommandState
    left: frozenset[CommandState] | None = None
    first_dispatch: bool = False


#: The rule, one row per (counter, final move). A move can match several rows (a timeout
#: after delivery is a failure and a timeout); each adds one to its counter.
RULES: tuple[Rule, ...] = (
    Rule("success_count", C.SUCCESS),
    Rule("failed_count", C.FAILURE),
    Rule("failed_count", C.TIMEOUT, left=HAD_IT),
    Rule("timed_out_count", C.TIMEOUT, left=HAD_IT),
    Rule("dispatch_failed_count", C.TIMEOUT, left=UNDELIVERED_STATES),
    Rule("cancelled_count", C.CANCELLED),
    # A Scheduled command released for the first time (a window opening) is dispatched; a
    # command written Queued is counted dispatched by its operation's dispatch, all at once.
    Rule("dispatched_count", C.QUEUED, left=frozenset({C.SCHEDULED}), first_dispatch=True),
)
assert {rule.counter for rule in RULES} == set(COUNTERS) - {"resolved_count"}


def deltas(old: int, new: int, was_dispatched: bool = True) -> dict[str, int]:
    """Which counters one command's move from ``old`` to ``new`` changes, and by how much
    (``was_dispatched``: the command had been dispatched before the move)."""
    changed: dict[str, int] = {}
    for rule in RULES:
        if rule.into != new or (rule.left is not None and C(old) not in rule.left):
            continue
        if rule.first_dispatch and was_dispatched:
            continue
        changed[rule.counter] = changed.get(rule.counter, 0) + 1
    return changed


def _in(states: Iterable[CommandState]) -> str:
    return "(" + ", ".join(str(int(state)) for state in sorted(states)) + ")"


def report_sets(target: CommandState, table: str, old: str) -> list[str]:
    """The ``SET`` items of the report statement's counter ``UPDATE`` for a move to ``target``.

    ``table`` is the alias of the counted table in that ``UPDATE``, ``old`` the alias of the
    command row as it was before the move (its ``state`` and ``dispatched_at``). Empty when
    no move to ``target`` changes a counter.
    """
    return [f"{name} = {table}.{name} + {added}" for name, added in report_terms(target, old).items()]


def report_terms(target: CommandState, old: str) -> dict[str, str]:
    """What a move to ``target`` adds to each counter it changes, as SQL over ``old`` (the
    command row as it was before the move): the terms of :func:`report_sets`, and of the
    batch report, which sums them per operation (``commands.services.report_many``)."""
    terms: dict[str, list[str]] = {}
    for rule in RULES:
        if rule.into != target:
            continue
        conditions = []
        if rule.left is not None:
            conditions.append(f"{old}.state IN {_in(rule.left)}")
        if rule.first_dispatch:
            conditions.append(f"{old}.dispatched_at IS NULL")
        term = f"({' AND '.join(conditions)})::int" if conditions else "1"
        terms.setdefault(rule.counter, []).append(term)
    return {name: " + ".join(added) for name, added in terms.items()}


def finished() -> CombinedExpression:
    """The sum of :data:`FINISHED` as a database expression (``F() + F() + ...``), over any
    table that keeps these counters."""
    first, second, *rest = (F(name) for name in FINISHED)
    total = first + second
    for item in rest:
        total = total + item
    return total


def _left(judged: set[int]) -> Case:
    """The state a command in one of the ``judged`` states left on its move there (its
    history row), :data:`BORN_FROM` for a command born there. Read only for those rows
    (PostgreSQL evaluates a CASE's branches lazily)."""
    into_now = CommandHistory.objects.filter(command_id=OuterRef("pk"), to_state=OuterRef("state"))
    last = into_now.order_by("-id").values("from_state")[:1]
    left = Coalesce(Subquery(last, output_field=IntegerField()), Value(int(BORN_FROM)))
    return Case(When(state__in=sorted(judged), then=left), default=Value(None), output_field=IntegerField())


def _counted(rule: Rule) -> Q:
    """The rows :func:`recount` counts for ``rule``: in its state, having left one of its states."""
    if rule.first_dispatch:  # the first dispatch leaves dispatched_at set for good
        return Q(dispatched_at__isnull=False)
    condition = Q(state=rule.into)
    if rule.left is not None:
        condition &= Q(left__in=[int(state) for state in rule.left])
    return condition


def _aggregates() -> dict[str, Count]:
    counted: dict[str, Q] = {}
    for rule in RULES:
        counted[rule.counter] = (
            counted[rule.counter] | _counted(rule) if rule.counter in counted else _counted(rule)
        )
    return {"resolved_count": Count("pk"), **{name: Count("pk", filter=q) for name, q in counted.items()}}


def _rows(commands: QuerySet[CommandStatus]) -> QuerySet[CommandStatus]:
    """``commands`` with the state each left on its move into its final one, where it matters."""
    judged = {int(rule.into) for rule in RULES if rule.left is not None and not rule.first_dispatch}
    return commands.annotate(left=_left(judged)) if judged else commands


def recount(operation_id: Any) -> dict[str, int]:
    """The operation's counters as its command rows say they should be."""
    found = _rows(CommandStatus.objects.filter(operation_id=operation_id)).aggregate(**_aggregates())
    return {name: int(found[name] or 0) for name in COUNTERS}


def recount_by_wave(operation_id: Any) -> dict[int, dict[str, int]]:
    """:func:`recount` for each rollout wave of the operation (by the commands' ``wave``)."""
    rows = _rows(CommandStatus.objects.filter(operation_id=operation_id)).order_by().values("wave")
    found: list[Any] = list(rows.annotate(**_aggregates()))
    return {int(row["wave"]): {name: int(row[name] or 0) for name in COUNTERS} for row in found}


#: The final outcomes a client may ask for by name (a re-run's ``only``), each the rule of the
#: counter that counts it: the same commands the counters, the abort rules and the recount see.
OUTCOMES: dict[str, Rule] = {
    "FAILED": next(rule for rule in RULES if rule.counter == "failed_count" and rule.into == C.FAILURE),
    "TIMED_OUT": next(rule for rule in RULES if rule.counter == "timed_out_count"),
    "DISPATCH_FAILED": next(rule for rule in RULES if rule.counter == "dispatch_failed_count"),
    "CANCELLED": next(rule for rule in RULES if rule.counter == "cancelled_count"),
}


def ended_as(commands: QuerySet[CommandStatus], outcomes: Iterable[str]) -> QuerySet[CommandStatus]:
    """The commands of ``commands`` whose final outcome is one of ``outcomes`` (names of
    :data:`OUTCOMES`), judged as :func:`recount` judges them."""
    wanted = Q(pk__in=[])
    for name in outcomes:
        wanted |= _counted(OUTCOMES[name])
    return _rows(commands).filter(wanted)
