"""A rollout's waves: drawn once the fan-out has counted the devices, opened one after the
other as each closes at or above its success threshold, and shown as ``rollout_status``.

Wave k holds the first ceil(p_k * N / 100) devices in a stable, spread order (the MD5 of
the device id, so a wave is a sample of the fleet, not the first ids alphabetically),
minus those of earlier waves (contract section 9). Until the waves are drawn, the fan-out
writes its commands in ``rollouts.UNDRAWN_WAVE``, which the inbox never reaches. Each wave keeps the
same exact counters as its operation (``OperationWave``, moved with the operation's in the
report's statement or the set move's transaction), so a wave closes at the report that
finishes its last command, and the next one opens, or the operation pauses, right then.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from commands import counting, inbox_cache, push, rows
from operations import progress
from operations.gate import handed_out_last_minute
from operations.models import Operation, OperationWave
from operations.rollouts import Rollout, rollout_of


def draw(operation: Operation, rollout: Rollout) -> None:
    """Give each command of the operation its wave and write the waves' rows, wave 1 open.

    Idempotent (a fan-out run that resumes finds the rows written and does nothing), in one
    transaction, before the operation is RESOLVED: no command of it has been handed out yet.
    """
    if not rollout.waves:
        return
    with transaction.atomic():
        locked = Operation.objects.select_for_update().filter(pk=operation.pk).first()
        if locked is None or OperationWave.objects.filter(operation_id=operation.pk).exists():
            return
        rows.assign_waves(operation.pk, rollout.wave_ends(locked.resolved_count))
        counted = counting.recount_by_wave(operation.pk)
        now = timezone.now()
        OperationWave.objects.bulk_create(
            OperationWave(
                operation_id=operation.pk,
                wave=number,
                percent=percent,
                opened_at=now if number == 1 else None,
                **counted.get(number, {}),
            )
            for number, percent in enumerate(rollout.waves, 1)
        )
        Operation.objects.filter(pk=operation.pk).update(current_wave=1)
        push.notify_operation(operation.pk, wave=1)  # wave 1 is handed out from now on
    close_if_finished(operation.pk, 1)


def close_if_finished(operation_id: Any, wave: int, actor: str = "system") -> None:
    """Close ``wave`` if every one of its commands is finished, then open the next wave or
    pause the operation. Each step is a conditional UPDATE: many reports finishing the last
    commands of a wave at once close it, and open the next, exactly once."""
    closed = OperationWave.objects.filter(
        operation_id=operation_id, wave=wave, closed_at=None, resolved_count__lte=counting.finished()
    ).update(closed_at=timezone.now())
    if not closed:
        return
    row = OperationWave.objects.get(operation_id=operation_id, wave=wave)
    rollout = rollout_of(str(operation_id))
    if rollout is None:
        return
    rate = 100.0 * row.success_count / row.resolved_count if row.resolved_count else 100.0
    if rate >= rollout.wave_success_percent:
        open_next(operation_id, wave, actor)
        return
    reason = (
        f"wave {wave} closed with {rate:.1f}% succeeded, below wave_success_percent "
        f"{rollout.wave_success_percent:g}%: resume to open wave {wave + 1}"
    )
    if not OperationWave.objects.filter(operation_id=operation_id, wave=wave + 1).exists():
        return  # the last wave: the operation completes as its counters say
    progress.pause(operation_id, reason, actor, when=Q(current_wave=wave))


def open_next(operation_id: Any, after: int, actor: str = "system") -> bool:
    """Open the wave after ``after`` (skipping empty ones, which close at once). Returns
    whether this call opened one; devices are told at commit (the tenant's inbox generation)."""
    following = list(OperationWave.objects.filter(operation_id=operation_id, wave__gt=after).order_by("wave"))
    if not following:
        return False
    now = timezone.now()
    target = following[0]
    for wave in following:
        target = wave
        if wave.resolved_count > 0:
            break
        OperationWave.objects.filter(pk=wave.pk, closed_at=None).update(opened_at=now, closed_at=now)
    with transaction.atomic():  # the wave opens with its devices' notifies, or not at all
        opened = Operation.objects.filter(pk=operation_id, current_wave=after).update(
            current_wave=target.wave, updated_at=now
        )
        if not opened:
            return False
        OperationWave.objects.filter(pk=target.pk, opened_at=None).update(opened_at=now)
        push.notify_operation(operation_id, wave=target.wave)
    tenant_id = Operation.objects.values_list("tenant_id", flat=True).get(pk=operation_id)
    transaction.on_commit(functools.partial(inbox_cache.bump_tenant, tenant_id))
    if target.resolved_count == 0:  # only empty waves were left
        return True
    close_if_finished(operation_id, target.wave, actor)  # born finished (a window that never opens)
    return True


def add_counts(groups: dict[tuple[Any, int], dict[str, int]]) -> None:
    """Add counter deltas to waves, keyed by (operation, wave): a set move's groups."""
    for (operation_id, wave), deltas in sorted(
        groups.items(), key=lambda item: (str(item[0][0]), item[0][1])
    ):
        changes = {name: F(name) + delta for name, delta in deltas.items() if delta}
        if changes:
            OperationWave.objects.filter(operation_id=operation_id, wave=wave).update(**changes)


def status(operation: Operation) -> dict[str, Any] | None:
    """``rollout_status`` of ``GET /v0/operations/{id}/`` (contract section 9); None without a rollout."""
    if operation.rollout is None:
        return None
    waves = [
        {
            "wave": wave.wave,
            "percent": int(wave.percent) if float(wave.percent).is_integer() else wave.percent,
            "devices": wave.resolved_count,
            "success": wave.success_count,
            "failed": wave.failed_total,
            "cancelled": wave.cancelled_count,
            "pending": wave.pending_count,
            "state": wave.state_in(operation.current_wave).value,
        }
        for wave in operation.waves.all()
    ]
    return {
        "current_wave": operation.current_wave if waves else 1,
        "waves": waves,
        "handed_out_last_minute": handed_out_last_minute(operation.pk)
        if operation.max_per_minute is not None
        else None,
    }
