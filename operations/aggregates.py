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

from commands import counting
from operations import progress
from operations.models import Operation


@dataclass(frozen=True)
class Repair:
    operation_id: uuid.UUID
    counter: str
    was: int
    now: int


def repair(operation_ids: Iterable[uuid.UUID | str]) -> list[Repair]:
    """Recount each operation and fix the counters that drifted; returns what was fixed."""
    repairs: list[Repair] = []
    for operation_id in operation_ids:
        with transaction.atomic():
            operation = Operation.objects.select_for_update().filter(pk=operation_id).first()
            if operation is None:
                continue
            truth = counting.recount(operation_id)
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
