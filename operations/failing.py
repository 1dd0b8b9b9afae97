"""What is failing now, fleet-wide: the commands that failed or timed out in the last hours,
grouped by operation (its type), wave, the device's OS and model, and reason.

Read from the operations first, then their commands, so that the command table is reached
only through an index that starts with the operation: no index on the command
table starts with ``updated_on`` or ``state``, and a scan of a big table by time was the
query to avoid. A command can fail only while its operation is unfinished, or in the stop
that finishes it, and that stop's move writes the operation's ``updated_at``: so the
operations that can hold a failure of the last hours are the unfinished ones and those
finished since, and of those only the ones whose exact counters have a failure. The
commands of an operation share its ``created_at`` as their partition key
(``commands.partitions``), so the oldest candidate's bounds the partitions read.

EXPLAIN ANALYZE on 100,000 command rows (10 operations of 10,000 devices, 3 failures in one):
2.4 ms, a bitmap scan of the failing operation's range of the unique (operation, device,
created_on) index in its one partition, the other nine operations' rows never read; the whole
of :func:`failing_now` 9 ms. ``tests/test_console_control_room.py`` checks that the plan reads
the command table by operation.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from commands.choices import CommandState
from commands.models import CommandStatus
from operations.choices import TERMINAL_STATES, OperationType
from operations.models import Operation

#: Failed (the device said so) or timed out: what "failing" means here.
FAILING_STATES = (CommandState.FAILURE, CommandState.TIMEOUT)
#: The hours an operator may look back, the first the default.
HOURS_CHOICES = (24, 1, 6, 72, 168)
#: Candidate operations read at most (newest first): the view says so when there are more.
MAX_OPERATIONS = 500
#: Groups shown at most, the biggest first.
MAX_GROUPS = 300


@dataclass(frozen=True)
class FailingGroup:
    """Devices of one operation and wave, of one OS and model, that failed for one reason."""

    operation_id: uuid.UUID
    operation_type: str
    wave: int
    os: str
    model: str
    reason: str
    state: int
    devices: int

    @property
    def state_label(self) -> str:
        return CommandState(self.state).label

    @property
    def type_label(self) -> str:
        """The type as the rest of the console names it ("Install OTA")."""
        return str(OperationType(self.operation_type).label)


@dataclass(frozen=True)
class FailingNow:
    since: dt.datetime
    groups: list[FailingGroup]
    #: Failing devices in all the groups read (not only those shown).
    total: int
    #: True when more operations or groups exist than were read: the figures are a floor.
    cut: bool
    #: Each dimension's totals: (value, devices), biggest first.
    by: dict[str, list[tuple[str, int]]]


def candidates(operations: QuerySet[Operation], since: dt.datetime) -> QuerySet[Operation]:
    """The operations that may hold a failure since ``since`` (see the module's docstring)."""
    return (
        operations.filter(Q(failed_count__gt=0) | Q(dispatch_failed_count__gt=0))
        .filter(Q(updated_at__gte=since) | ~Q(state__in=sorted(TERMINAL_STATES)))
        .order_by("-created_at")
    )


def failing_now(operations: QuerySet[Operation], since: dt.datetime) -> FailingNow:
    """The failing commands of ``operations`` (already scoped to the console user's tenant)
    that failed since ``since``, grouped."""
    found = list(
        candidates(operations, since).values_list("pk", "operation_type", "created_at")[: MAX_OPERATIONS + 1]
    )
    cut = len(found) > MAX_OPERATIONS
    found = found[:MAX_OPERATIONS]
    if not found:
        return FailingNow(since=since, groups=[], total=0, cut=False, by={})
    types = {pk: operation_type for pk, operation_type, _ in found}
    rows = grouped(list(types), min(created for _, _, created in found), since)
    groups = [
        FailingGroup(
            operation_id=row["operation_id"],
            operation_type=types[row["operation_id"]],
            wave=row["wave"],
            os=row["device__os"] or "",
            model=row["device__model"] or "",
            reason=row["reason"],
            state=row["state"],
            devices=row["devices"],
        )
        for row in rows
    ]
    return FailingNow(
        since=since,
        groups=groups[:MAX_GROUPS],
        total=sum(group.devices for group in groups),
        cut=cut or len(groups) > MAX_GROUPS,
        by=_totals(groups),
    )


def grouped(operation_ids: list[uuid.UUID], oldest: dt.datetime, since: dt.datetime) -> QuerySet[Any]:
    """The failing commands of these operations since ``since``, counted per group; ``oldest``
    (the oldest operation's ``created_at``, its commands' partition key) bounds the partitions."""
    return (
        CommandStatus.objects.filter(
            operation_id__in=operation_ids,
            created_on__gte=oldest,
            state__in=FAILING_STATES,
            updated_on__gte=since,
        )
        .values("operation_id", "wave", "device__os", "device__model", "reason", "state")
        .annotate(devices=Count("id"))
        .order_by("-devices", "operation_id", "wave")
    )


def _totals(groups: list[FailingGroup]) -> dict[str, list[tuple[str, int]]]:
    dimensions: dict[str, Any] = {
        "operation type": lambda group: group.type_label,
        "OS": lambda group: group.os or "(none)",
        "model": lambda group: group.model or "(none)",
        "reason": lambda group: group.reason or "(no reason given)",
        "outcome": lambda group: group.state_label,
    }
    totals: dict[str, list[tuple[str, int]]] = {}
    for name, key in dimensions.items():
        counter: Counter[str] = Counter()
        for group in groups:
            counter[key(group)] += group.devices
        totals[name] = counter.most_common(8)
    return totals
