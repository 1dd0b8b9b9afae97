"""Retention: what has expired goes, in bounded steps that never make the inbox wait
(docs/retention.md). Called by ``maintenance.retention.purge_expired`` (beat ``purge-expired``).

Expired, with ``OPERATION_RETENTION_DAYS`` = D (0 keeps everything):

- an operation in a final state whose last change (``updated_at``) is more than D days old,
  with its command statuses and their history;
- an internal command (headless or maintenance work) created more than D days ago and
  finished, and a headless run finished more than D days ago.

Command statuses go two ways:

1. **Whole partitions.** A weekly partition of command statuses that ended more than D days
   ago, whose every operation (by ``created_at``: a fan-out writes that as the commands'
   ``created_on``) has expired and which holds no unfinished internal command, is detached
   and dropped: no row is read or deleted one by one, no vacuum follows.
2. **Batched deletes** of ``RETENTION_BATCH_SIZE`` rows with their history, one transaction
   each, skipping locked rows, where a partition also holds something still alive (an
   operation that runs long, rows in the default partition).

An operation row goes once none of its commands is left. A run does at most
``RETENTION_MAX_BATCHES`` batches; the next run goes on from there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from commands import partitions
from commands.choices import TERMINAL_STATES as COMMAND_TERMINAL_STATES
from commands.models import CommandHistory, CommandStatus
from operations.choices import TERMINAL_STATES
from operations.models import HeadlessOperation, Operation
from operations.models.headless import TERMINAL_STATUSES as HEADLESS_TERMINAL_STATUSES

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """What one run removed, and the batches it has left."""

    batches_left: int
    removed: Counter[str] = field(default_factory=Counter)

    def spend(self) -> bool:
        """Take one batch of the budget; False when none is left."""
        if self.batches_left <= 0:
            return False
        self.batches_left -= 1
        return True


def expired_operations(cutoff: dt.datetime) -> Q:
    """Final, last changed before ``cutoff``, and not still being stopped (a stop's worker
    moves its commands after the operation is final: ``operations.stopping``)."""
    being_stopped = Q(stop_requested_at__isnull=False, commands_stopped_at__isnull=True)
    return Q(state__in=sorted(TERMINAL_STATES), updated_at__lt=cutoff) & ~being_stopped


def run(now: dt.datetime | None = None) -> dict[str, int]:
    """One retention run; returns counts by what was removed."""
    now = now or timezone.now()
    state = Run(batches_left=settings.RETENTION_MAX_BATCHES)
    if settings.OPERATION_RETENTION_DAYS:
        cutoff = now - dt.timedelta(days=settings.OPERATION_RETENTION_DAYS)
        _expire_headless(cutoff, state)
        _drop_command_partitions(cutoff, state)
        _expire_operations(cutoff, state)
        _expire_internal_commands(cutoff, state)
    if settings.COMMAND_HISTORY_RETENTION_DAYS:
        _expire_history(now - dt.timedelta(days=settings.COMMAND_HISTORY_RETENTION_DAYS), state)
    return dict(state.removed)


def _expire_headless(cutoff: dt.datetime, state: Run) -> None:
    expired = HeadlessOperation.objects.filter(
        status__in=sorted(HEADLESS_TERMINAL_STATUSES), updated_at__lt=cutoff
    )
    while True:
        ids = list(expired.order_by().values_list("pk", flat=True)[: settings.RETENTION_BATCH_SIZE])
        if not ids or not state.spend():
            return
        deleted, _ = HeadlessOperation.objects.filter(pk__in=ids).delete()
        state.removed["headless_runs"] += deleted


def _drop_command_partitions(cutoff: dt.datetime, state: Run) -> None:
    alive = Operation.objects.exclude(expired_operations(cutoff))
    for partition in partitions.partitions(CommandStatus):
        if partition.end > cutoff:
            break
        if alive.filter(created_at__gte=partition.start, created_at__lt=partition.end).exists():
            continue
        if partitions.unfinished_internal_commands(partition):
            continue
        # A headless run still kept may name a command of the partition: it forgets it.
        in_partition = CommandStatus.objects.filter(
            created_on__gte=partition.start, created_on__lt=partition.end, pk=OuterRef("command_id")
        )
        with transaction.atomic():
            HeadlessOperation.objects.filter(Exists(in_partition)).update(command=None)
        if partitions.drop(CommandStatus, partition):
            state.removed["command_partitions"] += 1


def _expire_operations(cutoff: dt.datetime, state: Run) -> None:
    for operation in Operation.objects.filter(expired_operations(cutoff)).order_by("updated_at").iterator():
        commands = CommandStatus.objects.filter(operation_id=operation.pk)
        while True:
            if not state.spend():
                return
            deleted = partitions.delete_commands(commands, settings.RETENTION_BATCH_SIZE)
            state.removed["commands"] += deleted
            if deleted < settings.RETENTION_BATCH_SIZE:
                break
        if commands.exists():  # rows skipped while locked: the next run
            continue
        with transaction.atomic():
            gone = Operation.objects.filter(pk=operation.pk).filter(expired_operations(cutoff)).delete()[1]
        state.removed["operations"] += gone.get(Operation._meta.label, 0)


def _expire_internal_commands(cutoff: dt.datetime, state: Run) -> None:
    expired = CommandStatus.objects.filter(
        ~Q(request_ref=""),
        operation__isnull=True,
        created_on__lt=cutoff,
        state__in=sorted(COMMAND_TERMINAL_STATES),
    ).exclude(Exists(HeadlessOperation.objects.filter(command_id=OuterRef("pk"))))
    while state.spend():
        deleted = partitions.delete_commands(expired, settings.RETENTION_BATCH_SIZE)
        state.removed["internal_commands"] += deleted
        if deleted < settings.RETENTION_BATCH_SIZE:
            return


def _expire_history(cutoff: dt.datetime, state: Run) -> None:
    for partition in partitions.partitions(CommandHistory):
        if partition.end > cutoff:
            break
        if partitions.drop(CommandHistory, partition):
            state.removed["history_partitions"] += 1
    while state.spend():
        deleted = partitions.delete_old_history(cutoff, settings.RETENTION_BATCH_SIZE)
        state.removed["history"] += deleted
        if deleted < settings.RETENTION_BATCH_SIZE:
            return
