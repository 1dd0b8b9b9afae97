"""The one compare-and-swap of every state machine's writer.

Each state machine has one writer (docs/architecture.md), and every writer moves a state the
same way, :func:`swap`:

1. **Look** (no lock, no transaction): do any rows of the candidates have a state the move
   may leave (``sources``) and meet the caller's condition? Most tries cannot move (an
   operation "completes" only on its last report), so a try that cannot costs one read.
2. **Lock and read**: in a transaction, lock those rows ``FOR UPDATE`` with the same
   conditions, and read the state each has now. A concurrent writer that moved a row first
   is waited for, and its row then no longer matches: the same move is never made twice.
3. **Write**: UPDATE exactly the locked rows, setting the caller's values.
4. **Follow**: the caller's ``then`` runs inside the same transaction with what moved (each
   row's key and the state it left), to write what must commit with the move (an activity
   row, an event naming the previous state) or nothing at all.

The command statements (``commands.services``: a device's report, set moves, hand-outs) take
the same two steps inside one SQL statement (a ``FOR UPDATE`` CTE that reads the old state,
and an UPDATE of those rows whose state the table allows), because they are the hot paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

from django.db import models, transaction
from django.db.models import QuerySet

M = TypeVar("M", bound=models.Model)


class Swapped(NamedTuple):
    """One row a swap moved: its primary key and the state it left."""

    pk: Any
    previous: Any


def swap(
    candidates: QuerySet[M],
    field: str,
    sources: Iterable[Any],
    values: dict[str, Any],
    then: Callable[[list[Swapped]], None] | None = None,
) -> list[Swapped]:
    """Move the rows of ``candidates`` whose ``field`` is one of ``sources`` by setting
    ``values`` (the new state among them); returns what moved, empty if nothing could.

    ``candidates`` carries the caller's other conditions (a key, "every command finished"),
    checked again on the locked rows. ``then`` runs in the move's transaction.
    """
    movable = candidates.order_by().filter(**{f"{field}__in": list(sources)})
    if not movable.exists():
        return []
    with transaction.atomic(using=movable.db):
        locked = movable.select_for_update(of=("self",)).values_list("pk", field)
        moved = [Swapped(pk, previous) for pk, previous in locked]
        if not moved:
            return []
        manager = candidates.model._default_manager.using(movable.db)
        manager.filter(pk__in=[row.pk for row in moved]).update(**values)
        if then is not None:
            then(moved)
    return moved
