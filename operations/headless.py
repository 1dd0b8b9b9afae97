"""What happens to headless operations (seed 001): scheduling, running, status, cancelling.

Exactly-once runs: the periodic sweep (:func:`run_due`, beat entry ``run-due-headless``)
locks due rows with ``SELECT ... FOR UPDATE SKIP LOCKED``, claims each with a conditional
UPDATE (``status = 'scheduled'`` → ``'pending'``) and issues its internal command in the same
transaction. Either both commit or neither does, so a crashed worker or a lost broker
message only delays a run until the next sweep, and two sweeps never run one twice.
There are no ETA tasks: the database row is the schedule.

The status then follows the command (:func:`sync_statuses`), in SQL, for any set of
operations: every sweep does it for the active ones, and ``update_status=true`` does it
(through the helpers of ``HEADLESS_STATUS_HELPERS``) for the ones an answer returns.
See docs/headless.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, NullIf
from django.utils import timezone
from django.utils.module_loading import import_string

from commands.choices import TERMINAL_STATES, CommandState
from commands.models import CommandStatus
from commands.services import issue_internal_command, move_and_settle, report
from config import timestamps
from config.errors import DomainError
from config.transitions import swap
from inventory import events
from inventory.models import Device, EventType
from operations.models import HeadlessOperation
from operations.models.headless import TERMINAL_STATUSES, HeadlessStatus, sources_of

logger = logging.getLogger(__name__)
#: ``operations.tasks.run_due_headless``, sent when an operation is due at once.
RUN_DUE_TASK = "operations.tasks.run_due_headless"

H = HeadlessStatus
C = CommandState

# Operations claimed per sweep transaction. Each costs three small writes (claim, command,
# link); 200 keeps a transaction well under a second and its locks short.
RUN_BATCH_SIZE = 200

#: Which headless status each command state means (contract section 6).
STATUS_OF_COMMAND: dict[CommandState, HeadlessStatus] = {
    C.SCHEDULED: H.PENDING,
    C.QUEUED: H.PENDING,
    C.INITIATED: H.RUNNING,
    C.ACKNOWLEDGED: H.RUNNING,
    C.IN_PROGRESS: H.RUNNING,
    C.SUCCESS: H.COMPLETED,
    C.FAILURE: H.FAILED,
    C.TIMEOUT: H.FAILED,
    C.CANCELLED: H.CANCELLED,
}

StatusHelper = Callable[[QuerySet[HeadlessOperation]], None]


def transition(operations: QuerySet[HeadlessOperation], target: HeadlessStatus, **fields: Any) -> int:
    """The one writer of a headless operation's status.

    Moves each of ``operations`` whose status the table (``ALLOWED_TRANSITIONS``) lets go to
    ``target``, setting ``fields`` too, by the project's compare-and-swap
    (``config.transitions.swap``); returns how many moved.
    The others are left as they are: a status never moves backwards or twice. Each move
    emits ``headless.state_changed`` in the same transaction.
    """
    values = {"status": target, "updated_at": timezone.now(), **fields}
    moved = swap(
        operations,
        "status",
        sources_of(target),
        values,
        then=lambda moved: _emit_moves({row.pk: row.previous for row in moved}),
    )
    return len(moved)


def _emit_moves(previous: dict[str, str]) -> None:
    """``headless.state_changed`` for each moved operation, read back as the API shows it;
    nothing is read for tenants without a subscriber."""
    rows = list(HeadlessOperation.objects.filter(pk__in=list(previous)).select_related("device"))
    tenants = {row.tenant_id for row in rows}
    subscribed = {t for t in tenants if events.any_subscriber(t, EventType.HEADLESS_STATE_CHANGED)}
    for row in rows:
        if row.tenant_id in subscribed:
            data = {**headless_data(row), "previous_state": previous[row.pk]}
            events.emit(row.tenant_id, EventType.HEADLESS_STATE_CHANGED, data)


def headless_data(row: HeadlessOperation) -> dict[str, Any]:
    """A headless operation as ``/api/v1/inventory_device_headless_operation/`` shows it."""
    return {
        "id": row.pk,
        "device_id": row.device.device_id,
        "operation_type": row.operation_type,
        "status": row.status,
        "scheduled_at": timestamps.format(row.scheduled_at),
        "created_at": timestamps.format(row.created_at),
        "updated_at": timestamps.format(row.updated_at),
        "parameters": row.parameters,
        "priority": row.priority_name,
        "reason": row.reason,
        "command_id": str(row.command_id) if row.command_id else None,
    }


# --- scheduling ---------------------------------------------------------------------------------


def create_operation(
    tenant_id: int,
    device: Device,
    operation_type: str,
    scheduled_at: dt.datetime,
    parameters: dict[str, Any],
    priority: int,
    actor: str = "",
) -> HeadlessOperation:
    """Schedule an operation. One due already is handed to a worker at once (after commit);
    if that message is lost, the next sweep runs it anyway."""
    operation = HeadlessOperation.objects.create(
        tenant_id=tenant_id,
        device=device,
        operation_type=operation_type,
        scheduled_at=scheduled_at.astimezone(dt.UTC),
        parameters=parameters,
        priority=priority,
        created_by=actor,
    )
    if scheduled_at <= timezone.now():
        transaction.on_commit(_kick_sweep, robust=True)
    return operation


def _kick_sweep() -> None:
    """A shortcut for operations due now; the periodic sweep is the guarantee. The task is
    sent by name: the tasks module imports this one, never the reverse."""
    try:
        current_app.send_task(RUN_DUE_TASK)
    except Exception:  # a broker that is down must not fail the request that scheduled it
        logger.warning("could not send run_due_headless; the next sweep will run it", exc_info=True)


# --- running ------------------------------------------------------------------------------------


def run_due(now: dt.datetime | None = None, batch_size: int = RUN_BATCH_SIZE) -> int:
    """Run every due operation, highest priority first, then earliest ``scheduled_at``.

    Returns how many this call ran. Safe to call from any number of workers at once.
    """
    total = 0
    while True:
        ran = _run_batch(now or timezone.now(), batch_size)
        total += ran
        if ran < batch_size:
            return total


def _run_batch(now: dt.datetime, batch_size: int) -> int:
    with transaction.atomic():
        due = list(
            HeadlessOperation.objects.filter(status=H.SCHEDULED, scheduled_at__lte=now)
            .order_by("-priority", "scheduled_at", "created_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .values("id", "tenant_id", "device_id", "operation_type", "parameters", "priority")[:batch_size]
        )
        ran = 0
        for row in due:
            # The row is locked, so this cannot lose; the condition keeps the claim honest
            # should the lock ever be dropped from the query above.
            claimed = transition(
                HeadlessOperation.objects.filter(pk=row["id"]),
                H.PENDING,
                claimed_at=now,
                attempts=F("attempts") + 1,
            )
            if not claimed:
                continue
            command = issue_internal_command(
                row["tenant_id"],
                row["device_id"],
                command=row["operation_type"],
                arguments=row["parameters"],
                request_ref=row["id"],
                priority=row["priority"],
            )
            HeadlessOperation.objects.filter(pk=row["id"]).update(command=command)
            ran += 1
    if ran:
        logger.info("ran %d headless operation(s)", ran)
    return ran


# --- status -------------------------------------------------------------------------------------


def sync_statuses(operations: QuerySet[HeadlessOperation]) -> int:
    """Bring each operation's status up to date from its command, in SQL (one UPDATE per
    target status). Statuses only move forward (``ALLOWED_TRANSITIONS``). Returns how many
    changed."""
    command_reason = Subquery(CommandStatus.objects.filter(pk=OuterRef("command_id")).values("reason")[:1])
    by_target: dict[HeadlessStatus, list[int]] = {}
    for state, target in STATUS_OF_COMMAND.items():
        by_target.setdefault(target, []).append(int(state))
    changed = 0
    base = operations.filter(command__isnull=False).order_by()
    for target, states in by_target.items():
        fields: dict[str, Any] = {}
        if target in (H.FAILED, H.CANCELLED):
            fields["reason"] = Coalesce(NullIf(command_reason, Value("")), F("reason"))
        changed += transition(base.filter(command__state__in=states), target, **fields)
    return changed


def expire_overdue(operations: QuerySet[HeadlessOperation], now: dt.datetime | None = None) -> int:
    """Fail operations still pending or running ``HEADLESS_OVERDUE_SECONDS`` after they ran
    (``claimed_at``; ``scheduled_at`` if unknown). Their command is timed out too, so the
    device no longer gets it. Returns how many failed."""
    now = now or timezone.now()
    seconds = int(settings.HEADLESS_OVERDUE_SECONDS)
    cutoff = now - dt.timedelta(seconds=seconds)
    reason = f"overdue: not finished {seconds} s after it ran"
    overdue = (
        operations.filter(status__in=[H.PENDING, H.RUNNING])
        .annotate(started=Coalesce("claimed_at", "scheduled_at"))
        .filter(started__lt=cutoff)
        .order_by()
    )
    with transaction.atomic():
        command_ids = list(overdue.exclude(command=None).values_list("command_id", flat=True))
        if command_ids:
            move_and_settle(
                CommandStatus.objects.filter(pk__in=command_ids), C.TIMEOUT, reason, actor="headless"
            )
        return transition(
            HeadlessOperation.objects.filter(pk__in=overdue.values("pk")), H.FAILED, reason=reason
        )


def update_from_commands(operations: QuerySet[HeadlessOperation]) -> None:
    """The default status helper: sync from the command, then fail the overdue ones."""
    sync_statuses(operations)
    expire_overdue(operations)


def status_helpers() -> list[StatusHelper]:
    return [import_string(path) for path in settings.HEADLESS_STATUS_HELPERS]


def run_status_helpers(operations: QuerySet[HeadlessOperation]) -> None:
    """Run every helper of ``HEADLESS_STATUS_HELPERS`` over ``operations`` (``update_status``).

    A failing helper is logged and skipped: the others still run and the caller still gets
    its answer, with the statuses as they are.
    """
    for helper in status_helpers():
        try:
            with transaction.atomic():
                helper(operations.all())
        except Exception:
            logger.exception("headless status helper %r failed", helper)


def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """The periodic task: run what is due, then bring active operations' statuses up to date."""
    ran = run_due(now)
    synced = sync_statuses(HeadlessOperation.objects.filter(status__in=[H.PENDING, H.RUNNING]))
    return {"ran": ran, "synced": synced}


# --- cancelling ---------------------------------------------------------------------------------


def cancel(operation: HeadlessOperation, reason: str = "", actor: str = "") -> HeadlessOperation:
    """Cancel a scheduled operation, or a pending or running one together with its command.

    A finished operation (or one whose command finished first) is a 400 naming its status.
    """
    reason = reason or "cancelled"
    # Outside the transaction below, so that a refusal still leaves the status up to date.
    sync_statuses(HeadlessOperation.objects.filter(pk=operation.pk))
    with transaction.atomic():
        current = HeadlessOperation.objects.select_for_update(of=("self",)).get(pk=operation.pk)
        if current.status in TERMINAL_STATUSES:
            raise _finished(current)
        this = HeadlessOperation.objects.filter(pk=current.pk)
        if current.status == H.SCHEDULED:
            transition(this, H.CANCELLED, reason=reason)
            current.refresh_from_db()
            return current
        if current.status in (H.PENDING, H.RUNNING) and current.command_id is not None:
            command = CommandStatus.objects.get(pk=current.command_id)
            if command.state not in TERMINAL_STATES:
                # If it finished meanwhile, report refuses; the sync below tells how it ended.
                with contextlib.suppress(DomainError):
                    report(command, C.CANCELLED, reason=reason, actor=actor or "headless")
            sync_statuses(HeadlessOperation.objects.filter(pk=current.pk))
            current.refresh_from_db()
        elif current.status in (H.PENDING, H.RUNNING):
            # Its command is gone (deleted by hand): nothing can run it any more.
            transition(this, H.CANCELLED, reason=reason)
            current.refresh_from_db()
        if current.status != H.CANCELLED:
            raise _finished(current)
    return current


def _finished(operation: HeadlessOperation) -> DomainError:
    return DomainError(
        {"status": [f"operation {operation.id} is already {operation.status} and cannot be cancelled"]},
        code="invalid_transition",
    )


def cancel_many(operations: Iterable[HeadlessOperation], reason: str = "", actor: str = "") -> dict[str, int]:
    """The admin action: cancel each; count those that were already finished."""
    counts = {"cancelled": 0, "refused": 0}
    for operation in operations:
        try:
            cancel(operation, reason, actor)
            counts["cancelled"] += 1
        except DomainError:
            counts["refused"] += 1
    return counts
