"""The fan-out: resolve an operation's device query in SQL and write one command status
per device as a set (INSERT ... SELECT), chunked by device key ranges.

It is idempotent and resumable: the unique (operation, device) constraint with ON CONFLICT
DO NOTHING means a retried, duplicated or crashed run never writes a second status, and
each chunk adds to ``resolved_count`` exactly the rows it inserted, in its own transaction.

It is also finite: each run counts itself on the operation row (``fanout_attempts``), and
the run after ``FANOUT_MAX_ATTEMPTS`` (or the last one, if it raises) ends the operation as
FAILURE, so no input can have it resent forever by ``recover_stuck_fan_outs``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import F, Max, Min, QuerySet
from django.utils import timezone

from commands import counting, inbox_cache, planner, rows
from commands.choices import CommandState
from config.errors import DomainError
from config.locks import LockSpace, try_advisory_lock
from config.metrics import FANOUT_DURATION, FANOUT_ROWS
from inventory import changes
from inventory.models import Device
from operations import progress, waves
from operations.choices import PRE_DISPATCH_STATES, OperationState, ScheduleType, TargetSelection
from operations.device_query import DeviceQuery
from operations.models import Operation
from operations.rollouts import UNDRAWN_WAVE, Rollout
from operations.services import request_state
from operations.sweeps import open_windows
from operations.windows import Window

logger = logging.getLogger(__name__)
S = OperationState
#: ``operations.tasks.evaluate_continuous`` (``operations.continuous.EVALUATE_TASK``).
CONTINUOUS_LOOK_TASK = "operations.tasks.evaluate_continuous"


# Device key range per INSERT ... SELECT transaction (setting FANOUT_CHUNK_SIZE, read at each
# run so a test or a deployment changes the setting, not this module; default
# 50,000), written FANOUT_PARALLELISM (2) at a time. Measured with bench/fanout.py on the
# 2-core machine, 1,000,000 devices: 100,000 one at a time 49 s (with FK constraints),
# 50,000 two at a time 12.2 s, three at a time 13.6 s (docs/performance.md); since the first
# run writes without ON CONFLICT and parallel chunks take ids in blocks, 7.0 s
# (docs/performance.md, "Hot paths").
def chunk_size() -> int:
    return int(settings.FANOUT_CHUNK_SIZE)


@contextmanager
def exclusive(operation_id: Any) -> Iterator[bool]:
    """A session advisory lock per operation (``config.locks``), so two workers given the same
    message do not both scan the fleet; the lock dies with a crashed worker's connection."""
    with try_advisory_lock(LockSpace.FAN_OUT, str(operation_id)) as got:
        yield got


def abandoned(operation_id: Any) -> bool:
    """Whether the operation's fan-out has work left and runs nowhere, so it may be sent again now.

    A running fan-out holds :func:`exclusive` for its whole run, and a killed worker's lock
    goes with its connection: if the lock can be taken, no run is under way. The state is
    read while holding it, so a run that just finished is not mistaken for a dead one.
    """
    with exclusive(operation_id) as got:
        return got and Operation.objects.filter(pk=operation_id, state__in=PRE_DISPATCH_STATES).exists()


def fan_out(operation_id: Any) -> None:
    """Take the operation from CREATED as far as it can go now (DISPATCHED, or SCHEDULED).

    Each run is counted on the row: the run after ``FANOUT_MAX_ATTEMPTS`` ends the operation
    as FAILURE (the earlier ones died without finishing), and so does the ``FANOUT_MAX_ATTEMPTS``-th
    if it raises. A message that finds the lock taken runs nothing and counts nothing.
    """
    with exclusive(operation_id) as got:
        if not got:
            logger.info("fan-out of %s is running elsewhere", operation_id)
            return
        attempt = _count_attempt(operation_id)
        if attempt is None:  # past the fan-out already (a duplicated message), or deleted
            return
        limit = int(settings.FANOUT_MAX_ATTEMPTS)
        if attempt > limit:
            _give_up(operation_id, f"the fan-out was started {limit} times without finishing")
            return
        started = time.monotonic()
        try:
            _run(operation_id, first_run=attempt == 1)
        except Exception as error:
            FANOUT_DURATION.labels("error").observe(time.monotonic() - started)
            if attempt >= limit:
                _give_up(
                    operation_id,
                    f"the fan-out failed {attempt} times; the last: {type(error).__name__}: {error}",
                )
            raise
        FANOUT_DURATION.labels("ok").observe(time.monotonic() - started)


def _count_attempt(operation_id: Any) -> int | None:
    """Count a run on the row if the operation is still before dispatch; this run's number.

    Under :func:`exclusive`, so no two runs count at once; ``updated_at`` moves with it.
    """
    counted = Operation.objects.filter(pk=operation_id, state__in=PRE_DISPATCH_STATES).update(
        fanout_attempts=F("fanout_attempts") + 1, updated_at=timezone.now()
    )
    if not counted:
        return None
    return int(Operation.objects.values_list("fanout_attempts", flat=True).get(pk=operation_id))


def _give_up(operation_id: Any, reason: str) -> None:
    """FAILURE with ``reason``, as an operator's FAILURE: the commands written so far are
    cancelled, so no device runs a part of an operation that failed. Best effort (the run's
    own error stays the one raised); if it cannot be written, the next run gives up again."""
    logger.error("fan-out of %s: %s", operation_id, reason)
    try:
        request_state(Operation.objects.get(pk=operation_id), S.FAILURE, reason[:2000], actor="system")
    except DomainError:  # final already: cancelled or failed meanwhile
        pass
    except Exception:
        logger.exception("fan-out of %s could not be failed", operation_id)


def _run(operation_id: Any, first_run: bool = False) -> None:
    """One run of the fan-out, from wherever the last one stopped.

    ``first_run``: no run of this operation was counted before this one, so no command of it
    can exist yet and its chunks are written without ``ON CONFLICT`` (:func:`_insert`).
    """
    progress.move(operation_id, S.RESOLVING, only_from=[S.CREATED])
    operation = Operation.objects.get(pk=operation_id)
    resolved_now = operation.state == S.RESOLVING
    if resolved_now:
        _resolve(operation, Rollout.from_json(operation.rollout), first_run)
        operation.refresh_from_db()
    window = operation.schedule_type == ScheduleType.WINDOW
    if operation.state == S.RESOLVED and window:
        progress.move(operation.pk, S.SCHEDULED, only_from=[S.RESOLVED])
        open_windows(operation_id=operation.pk)
    elif operation.state == S.DISPATCHING and window:  # a crash stopped a window opening there
        progress.dispatch(operation.pk, only_from=S.SCHEDULED)
    elif operation.state in (S.RESOLVED, S.DISPATCHING):  # DISPATCHING: a crash stopped it there
        _dispatch(operation)
    if operation.target_selection == TargetSelection.CONTINUOUS:
        # Devices that changed while it resolved join now, not at the next sweep.
        _send_continuous_look(operation.pk)
    if resolved_now and operation.resolved_count >= int(settings.FANOUT_ANALYZE_ROWS):
        # After dispatch, so devices are not kept waiting for it (commands.planner).
        planner.refresh_statistics()


def _resolve(operation: Operation, rollout: Rollout | None, first_run: bool) -> None:
    try:
        query = DeviceQuery.parse(operation.device_query)
    except DomainError as error:
        progress.move(operation.pk, S.FAILURE, f"invalid device query: {error}")
        return
    continuous = operation.target_selection == TargetSelection.CONTINUOUS
    if continuous:
        # Changes from here on are the continuous looks' (operations.continuous): every change
        # below this horizon is visible to the scan that follows.
        Operation.objects.filter(pk=operation.pk).update(continuous_watermark=changes.horizon())
    devices = query.queryset(operation.tenant_id)
    bounds = devices.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is not None:
        size = chunk_size()
        starts = range(bounds["low"], bounds["high"] + 1, size)
        window = (
            Window.from_args(operation.schedule_args)
            if operation.schedule_type == ScheduleType.WINDOW
            else None
        )

        # Parallel chunks write ids reserved in a block each (``commands.rows``).
        reserve_ids = _parallelism(len(starts)) > 1
        base = commands_of(operation, rollout)

        def write_chunk(start: int) -> bool:
            """One chunk in one transaction; False once the operation is no longer RESOLVING."""
            chunk = devices.filter(pk__gte=start, pk__lt=start + size)
            with transaction.atomic():
                if not _still_resolving(operation.pk):
                    return False
                inserted = _insert_chunk(base, chunk, window, first_run, reserve_ids)
                progress.add_counts(operation.pk, resolved_count=inserted)
            FANOUT_ROWS.inc(inserted)  # committed
            return True

        if not _run_chunks(starts, write_chunk):
            return
    if not continuous and not Operation.objects.filter(pk=operation.pk, resolved_count__gt=0).exists():
        # A continuous operation waits for devices to come to match; a snapshot has none to wait for.
        progress.move(operation.pk, S.FAILURE, "the device query matched no device", only_from=[S.RESOLVING])
        return
    if rollout is not None and _still_resolving_now(operation.pk):
        operation.refresh_from_db()
        waves.draw(operation, rollout)
    progress.move(operation.pk, S.RESOLVED, only_from=[S.RESOLVING])


def _still_resolving_now(operation_id: Any) -> bool:
    return Operation.objects.filter(pk=operation_id, state=S.RESOLVING).exists()


def _still_resolving(operation_id: Any) -> bool:
    """Whether to go on, holding a lock on the operation row until the chunk commits.

    A cancel takes ``FOR UPDATE`` on the row, so it waits for chunks in flight, and chunks
    that start after it see CANCELLED and stop. The lock is ``FOR KEY SHARE``:
    parallel chunks, and devices reporting (whose counter UPDATEs need only ``FOR NO KEY
    UPDATE``), do not wait for each other.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Operation._meta.db_table} WHERE id = %s AND state = %s FOR KEY SHARE",
            [operation_id, int(S.RESOLVING)],
        )
        return cursor.fetchone() is not None


def _parallelism(chunks: int) -> int:
    """How many chunks :func:`_run_chunks` writes at a time."""
    if connection.in_atomic_block:
        return 1
    return max(1, min(int(settings.FANOUT_PARALLELISM), chunks))


def _run_chunks(starts: range, write_chunk: Callable[[int], bool]) -> bool:
    """Write the chunks, ``FANOUT_PARALLELISM`` at a time, each thread on its own connection.

    The INSERT ... SELECT of one chunk keeps one PostgreSQL backend (one core) busy, so two
    at a time use both cores of a small machine (docs/performance.md). Inside a caller's
    transaction (tests), other connections could not see its rows: one at a time then.
    """
    parallelism = _parallelism(len(starts))
    if parallelism <= 1:
        return all(write_chunk(start) for start in starts)

    def in_thread(start: int) -> bool:
        try:
            return write_chunk(start)
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="fan-out") as pool:
        return all(list(pool.map(in_thread, starts)))


def commands_of(operation: Operation, rollout: Rollout | None) -> rows.NewCommands:
    """What every command of the operation shares, read once per run: its command and a
    rollout's knobs that live on each command row (its wave, drawn once every device is
    counted and held back until then; its retry budget; its in-progress timeout). Queued,
    outside any window, until :func:`_insert_chunk` says otherwise."""
    return rows.NewCommands(
        tenant_id=operation.tenant_id,
        operation_id=operation.pk,
        command=operation.operation_type,
        arguments=operation.arguments,
        state=CommandState.QUEUED,
        created_on=operation.created_at,
        wave=UNDRAWN_WAVE if rollout is not None and rollout.waves else 1,
        max_attempts_on_failure=rollout.max_attempts("FAILED") if rollout else 1,
        max_attempts_on_timeout=rollout.max_attempts("TIMED_OUT") if rollout else 1,
        progress_timeout=rollout.timeout_seconds if rollout else None,
    )


def _insert_chunk(
    base: rows.NewCommands,
    chunk: QuerySet[Device],
    window: Window | None,
    first_run: bool = False,
    reserve_ids: bool = False,
) -> int:
    now = timezone.now()
    if window is None:
        return _insert(replace(base, dispatched_at=now), chunk, first_run, reserve_ids)
    inserted = 0
    # A device-time window writes a chunk zone by zone, each INSERT with a snapshot of its own:
    # a device moving to another zone between two of them is selected twice, which only
    # ON CONFLICT absorbs, so those chunks never take the first run's plain INSERT.
    first_run = first_run and window.time_type != "device"
    # order_by(): the model's ordering would add the device key to the DISTINCT, listing a
    # zone once per device and writing its devices again for each.
    zones = (
        chunk.order_by().values_list("timezone", flat=True).distinct()
        if window.time_type == "device"
        else ["UTC"]
    )
    for zone in list(zones):
        devices = chunk.filter(timezone=zone) if window.time_type == "device" else chunk
        deadline = window.bounds(window.zone_for(zone))[1]
        opening = window.next_opening(zone, now)
        if opening is None:
            # The window never opens again for this zone: the commands are born timed out.
            reason = "window closed before it opened"
            new = replace(base, state=CommandState.TIMEOUT, reason=reason, deadline=deadline)
        else:
            not_before, closes_at = opening
            new = replace(
                base,
                state=CommandState.SCHEDULED,
                not_before=not_before,
                window_closes_at=closes_at,
                deadline=deadline,
            )
        inserted += _insert(new, devices, first_run, reserve_ids)
    return inserted


def _insert(
    new: rows.NewCommands, devices: QuerySet[Device], first_run: bool = False, reserve_ids: bool = False
) -> int:
    """One command per device of ``devices`` (``commands.rows.write``); returns rows written.
    Commands born in a final state (a window that never opens) are counted as the counter
    rule says."""
    # Queued in a drawn wave: handed out from now on, so the devices hear a notify (MQTT).
    available = new.state == CommandState.QUEUED and new.wave != UNDRAWN_WAVE
    inserted = rows.write(devices, new, first_run=first_run, reserve_ids=reserve_ids, notify=available)
    if inserted and new.state != CommandState.QUEUED:
        born = counting.deltas(counting.BORN_FROM, new.state, was_dispatched=new.dispatched_at is not None)
        progress.add_counts(new.operation_id, **{name: delta * inserted for name, delta in born.items()})
    return inserted


def _send_continuous_look(operation_id: Any) -> None:
    """``operations.continuous.evaluate`` by task name (that module imports this one)."""
    try:
        current_app.send_task(CONTINUOUS_LOOK_TASK, args=[str(operation_id)])
    except Exception:
        logger.warning("continuous look at %s not sent; the sweep will look", operation_id, exc_info=True)


def _dispatch(operation: Operation) -> None:
    """IMMEDIATE: the commands were written Queued; count them dispatched and tell devices."""
    if progress.dispatch(operation.pk, only_from=S.RESOLVED, count_dispatched=True):
        inbox_cache.bump_tenant(operation.tenant_id)
