"""Recount operation counters from their command statuses and repair any drift.

The counters are kept exact in SQL as commands move; this is the independent check the
maintenance schedules run (and the repair if something, e.g. a manual SQL edit, broke
them). Each operation is recounted under a lock on its row: a concurrent report either
committed before (and is counted) or adds its delta after (and is not lost).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q

from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus
from operations import progress
from operations.models import Operation

C = CommandState


@dataclass(frozen=True)
class Repair:
    operation_id: uuid.UUID
    counter: str
    was: int
    now: int


def true_counts(operation_id: uuid.UUID | str) -> dict[str, int]:
    """The counters as the command rows say they should be.

    A TimeOut counts as a device failure if the device had acknowledged the command, and
    as a dispatch failure otherwise, as ``commands.services.counter_deltas`` decides.
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
    )
    return {name: int(value or 0) for name, value in counts.items()}


def repair(operation_ids: Iterable[uuid.UUID | str]) -> list[Repair]:
    """Recount each operation and fix the counters that drifted; returns what was fixed."""
    repairs: list[Repair] = []
    for operation_id in operation_ids:
        with transaction.atomic():
            operation = Operation.objects.select_for_update().filter(pk=operation_id).first()
            if operation is None:
                continue
            truth = true_counts(operation_id)
            wrong = {name: value for name, value in truth.items() if getattr(operation, name) != value}
            if wrong:
                repairs.extend(Repair(operation.pk, n, getattr(operation, n), v) for n, v in wrong.items())
                Operation.objects.filter(pk=operation_id).update(**wrong)
        if wrong:
            progress.advance(operation_id)
    return repairs


def operations_to_check(
    changed_since: dt.datetime | None, tenant_id: int | None = None
) -> Iterable[uuid.UUID]:
    """The tenant's operations (all tenants' if None), or those that moved since ``changed_since``."""
    operations = Operation.objects.order_by("pk")
    if tenant_id is not None:
        operations = operations.filter(tenant_id=tenant_id)
    if changed_since is not None:
        operations = operations.filter(updated_at__gte=changed_since)
    return operations.values_list("pk", flat=True).iterator(chunk_size=2000)
