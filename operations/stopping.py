"""Stopping an operation: its state at once, its unfinished commands by a worker, in batches.

A cancel used to move every unfinished command in the request, in one statement: 23.4 s
for a million devices, and past gunicorn's timeout at two million, where the worker is
killed, the transaction rolls back and a bad WIPE cannot be stopped at all. Now
:func:`stop` moves only the operation (one conditional UPDATE through ``progress.move``,
the one writer of its state) and records ``stop_requested_at`` in the same UPDATE. From
that commit the inbox hands out none of its commands (``commands.services.hand_out``
skips commands of an operation in a terminal state) and the sweeps re-queue none of them
(``operations.sweeps``). After commit a worker (:func:`stop_commands`) moves the unfinished
commands in bounded batches, each a set move settled with its counters in its own
transaction, so the counters are exact after every batch, and sets
``commands_stopped_at`` when none is left (AWS IoT Jobs: "cancellation in progress", then
"canceled"). :func:`resume_stops` sends a lost or killed run again.

The rollouts' abort calls :func:`stop` too, with ``when`` to make the move conditional on
the counters it measured, in the same UPDATE.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import AbstractContextManager
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from commands.choices import UNFINISHED_STATES, CommandState
from commands.models import CommandStatus
from commands.services import move_and_settle
from config.locks import LockSpace, try_advisory_lock
from operations import progress
from operations.choices import OperationState
from operations.models import Operation, OperationActivity

logger = logging.getLogger(__name__)
S = OperationState
C = CommandState

#: ``operations.tasks.stop_commands``, sent by name after the stop commits (the tasks module
#: imports this one, never the reverse).
STOP_TASK = "operations.tasks.stop_commands"
#: What each stopping state makes of an unfinished command.
COMMAND_TARGETS = {S.CANCELLED: C.CANCELLED, S.TIMEOUT: C.TIMEOUT, S.FAILURE: C.CANCELLED}
#: Passes over the operation's rows after the first, for rows a report had locked while a
#: batch went by (``SKIP LOCKED``): a report holds its row for one statement, so a few
#: short waits suffice; a run that still finds rows left ends and the sweep sends it again.
MAX_EXTRA_PASSES = 20
EXTRA_PASS_WAIT = 0.05


def stop(
    operation_id: Any,
    target: OperationState,
    reason: str,
    actor: str,
    when: Q | None = None,
) -> bool:
    """Move the operation to ``target`` (CANCELLED, TIMEOUT or FAILURE) now, and leave its
    unfinished commands to a worker. Returns whether this call made the move.

    The operation row is locked ``FOR UPDATE`` first: fan-out chunks hold ``FOR KEY SHARE``
    on it while they write, so a stop waits for the chunks in flight and the chunks after it
    see the new state and write nothing; the worker then finds every command written.
    Nothing else is locked, so reports racing the stop never wait on it for long.
    """
    if target not in COMMAND_TARGETS:
        raise ValueError(f"{target.name} is not a stopping state")
    with transaction.atomic():
        list(Operation.objects.select_for_update().filter(pk=operation_id).values_list("pk"))
        now = timezone.now()
        won = progress.move(
            operation_id,
            target,
            reason,
            actor,
            when=when,
            also={"stop_requested_at": now, "commands_stopped_at": None},
        )
        if won:
            transaction.on_commit(lambda: send(operation_id))
    return won


def send(operation_id: Any) -> None:
    """Hand the stop to a worker. The stop is committed already: a broker that is down must
    not fail the request; :func:`resume_stops` sends it again later."""
    try:
        current_app.send_task(STOP_TASK, args=[str(operation_id)])
    except Exception:
        logger.warning("stop of %s not sent; the sweep will send it", operation_id, exc_info=True)


def _exclusive(operation_id: Any) -> AbstractContextManager[bool]:
    """A session advisory lock per stop (``config.locks``; not the fan-out's), so two messages
    for it do not both run, and the sweep can tell a running stop (lock held) from a lost
    one; it dies with a killed worker's connection."""
    return try_advisory_lock(LockSpace.STOP, str(operation_id))


def _command_reason(operation: Operation) -> str:
    """The reason the stop gave (its activity row), else ``operation cancelled`` and the like."""
    given = (
        OperationActivity.objects.filter(operation_id=operation.pk, state=operation.state)
        .order_by("-id")
        .values_list("reason", flat=True)
        .first()
    )
    return given or f"operation {S(operation.state).name.lower()}"


def stop_commands(operation_id: Any) -> int:
    """Move the unfinished commands of a stopped operation, ``STOP_BATCH_SIZE`` at a time;
    returns how many this run moved. Idempotent: a second message, or a run after the last,
    finds nothing to do.

    Each batch is the next ``STOP_BATCH_SIZE`` unfinished rows by key (the index on
    (operation, id)), moved by ``commands.services.move_and_settle`` in one transaction with
    its counters. A report that wins a row first keeps its state (the batch moves only
    unfinished rows, and skips rows a report holds locked: later passes take them).
    """
    with _exclusive(operation_id) as got:
        if not got:
            logger.info("stop of %s is running elsewhere", operation_id)
            return 0
        operation = Operation.objects.filter(
            pk=operation_id, stop_requested_at__isnull=False, commands_stopped_at__isnull=True
        ).first()
        if operation is None or S(operation.state) not in COMMAND_TARGETS:
            return 0
        target = COMMAND_TARGETS[S(operation.state)]
        reason = _command_reason(operation)
        actor = operation.updated_by or "system"
        unfinished = CommandStatus.objects.filter(operation_id=operation.pk, state__in=UNFINISHED_STATES)
        batch_size = int(settings.STOP_BATCH_SIZE)
        moved = 0
        for extra_pass in range(MAX_EXTRA_PASSES + 1):
            after = 0
            while True:
                # Ordered by (operation, id): the planner must walk this operation's index,
                # not the primary key through every other operation's rows (see
                # commands.filtersets.CommandStatusFilterSet.filter_request).
                following = unfinished.filter(pk__gt=after).order_by("operation_id", "pk")
                ids = list(following.values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                batch = unfinished.filter(pk__gte=ids[0], pk__lte=ids[-1])
                moved += move_and_settle(batch, target, reason, actor)
                after = ids[-1]
            if not unfinished.exists():
                Operation.objects.filter(pk=operation.pk, commands_stopped_at__isnull=True).update(
                    commands_stopped_at=timezone.now()
                )
                logger.info("stop of %s done: %d commands moved", operation_id, moved)
                return moved
            time.sleep(EXTRA_PASS_WAIT * (extra_pass + 1))
        logger.warning("stop of %s: commands still locked; the sweep will resume it", operation_id)
        return moved


def resume_stops(now: dt.datetime | None = None) -> int:
    """Send again the stops left unfinished for ``STOP_STUCK_SECONDS`` that run nowhere (the
    message was lost, or the worker killed: its advisory lock went with its connection).
    Returns how many were sent."""
    now = now or timezone.now()
    stuck = Operation.objects.filter(
        stop_requested_at__lte=now - dt.timedelta(seconds=int(settings.STOP_STUCK_SECONDS)),
        commands_stopped_at__isnull=True,
    ).values_list("pk", flat=True)
    sent = 0
    for operation_id in stuck:
        with _exclusive(operation_id) as free:
            if not free:
                continue
        send(operation_id)
        sent += 1
    return sent
