"""Continuous operations (contract section 12): devices that come to match later join.

A CONTINUOUS operation is fanned out as any other (``operations.fanout``), then stays open:
every device that comes to match its query later (created, imported, tagged, put into a
group, re-activated, a field changed) gets its command within seconds, one per device and
operation whatever repeats or crashes happen.

How, at scale: not a query per device per operation, but a **watermark over device changes**
(``inventory.changes``) per operation. :func:`evaluate` reads the devices that match the
query *and* changed since the operation's watermark (the snapshot its last complete look took,
``inventory.changes.horizon``), as one set, in device key chunks, and writes their commands
with the fan-out's own writer (``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` in
``commands.rows``: the unique (operation, device) row absorbs a change seen twice, by two
workers or after a crash); only then does it store as its watermark the
snapshot it took before reading. A crash between chunks leaves the watermark where it was, so
the next look writes the rest and nothing twice; each chunk adds to ``resolved_count``
exactly the rows it inserted, in its own transaction.

When it looks: right after a device write commits (``inventory.changes`` tells
:func:`nudge`, which sends one :data:`EVALUATE_TASK` per open continuous operation of the
tenant) and, as a safety net, every ``CONTINUOUS_SWEEP_SECONDS`` (:func:`sweep`, which also
closes operations whose ``end_datetime`` passed). One look per operation at a time (a
session advisory lock); a second waits and then finds only what came after.

Closing (:func:`close`: PUT ``COMPLETED``, or ``end_datetime``) stops joining; the operation
then finishes when its commands do (``operations.progress.advance`` holds an open continuous
operation back from COMPLETED). Cancel, timeout, abort and pause move its state as for any
operation; a chunk holds ``FOR KEY SHARE`` on the operation row, so a stop (``FOR UPDATE``)
waits for a chunk in flight and chunks after it see the stop and write nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min, Q, QuerySet
from django.utils import timezone

from commands import inbox_cache
from config.errors import DomainError
from config.locks import LockSpace, LockTimeout, advisory_lock
from config.metrics import FANOUT_ROWS
from inventory import changes
from inventory.models import Device
from operations import progress
from operations.choices import JOINABLE_STATES, TERMINAL_STATES, OperationState, ScheduleType, TargetSelection
from operations.device_query import DeviceQuery
from operations.fanout import _insert_chunk, chunk_size, commands_of
from operations.models import Operation
from operations.rollouts import Rollout
from operations.windows import Window

logger = logging.getLogger(__name__)
S = OperationState
#: ``operations.tasks.evaluate_continuous``, sent by name (the tasks module imports this one).
EVALUATE_TASK = "operations.tasks.evaluate_continuous"
#: Up to this many joined devices are told one by one to look at their inbox again; more,
#: and the whole tenant is (one cache write instead of thousands).
BUMP_DEVICES_MAX = 100
#: A change spanning at least this many device keys writes its chunks' ids in blocks.
RESERVE_IDS_FROM = 1_000


def open_operations(tenant_id: int | None = None) -> QuerySet[Operation]:
    """Continuous operations that devices may join now (index ``operations_continuous_open``)."""
    found = Operation.objects.filter(
        target_selection=TargetSelection.CONTINUOUS,
        continuous_closed_at__isnull=True,
        state__in=sorted(JOINABLE_STATES),
    )
    return found if tenant_id is None else found.filter(tenant_id=tenant_id)


def nudge(tenant_id: int) -> None:
    """``inventory.changes`` listener: devices of the tenant changed; look now.

    Runs after the device write committed. A broker that is down loses nothing: the sweep
    looks within ``CONTINUOUS_SWEEP_SECONDS``."""
    for operation_id in open_operations(tenant_id).values_list("pk", flat=True):
        send(operation_id)


def send(operation_id: Any) -> None:
    try:
        current_app.send_task(EVALUATE_TASK, args=[str(operation_id)])
    except Exception:
        logger.warning("continuous look at %s not sent; the sweep will look", operation_id, exc_info=True)


def sweep() -> dict[str, int]:
    """The safety net (beat): close the operations whose ``end_datetime`` passed, and look at
    every open one (a nudge lost with a broker or a worker)."""
    due = open_operations().filter(continuous_until__lte=timezone.now())
    closed = 0
    for operation in due:
        closed += close_due(operation)
    # Closed with no device while it could not finish (paused, or before its fan-out dispatched):
    # it fails once it can, as a snapshot that matched no device does.
    empty = Operation.objects.filter(
        target_selection=TargetSelection.CONTINUOUS,
        continuous_closed_at__isnull=False,
        state__in=[S.SCHEDULED, S.DISPATCHED, S.PROCESSING],
        resolved_count=0,
    )
    for operation_id in empty.values_list("pk", flat=True):
        _finish_if_done(operation_id, "system")
    looked = 0
    for operation_id in open_operations().values_list("pk", flat=True):
        send(operation_id)
        looked += 1
    return {"closed": closed, "looked": looked}


def evaluate(operation_id: Any) -> int:
    """Write the commands of devices that came to match since the watermark; rows written.

    The snapshot (``horizon``) is taken before reading, and stored only after every chunk committed, so a
    look that dies half way is done again from where the last complete one ended."""
    try:
        with advisory_lock(LockSpace.CONTINUOUS_LOOK, str(operation_id)):
            return _look(operation_id)
    except LockTimeout:
        # Another look has held the operation for ADVISORY_LOCK_TIMEOUT_MS (a bulk import's
        # change): what it did not see is taken by the next look, at the latest the sweep's.
        logger.info(
            "continuous look at %s is running elsewhere; the sweep takes what it leaves", operation_id
        )
        return 0


def _look(operation_id: Any) -> int:
    """:func:`evaluate` under its lock."""
    operation = Operation.objects.filter(pk=operation_id).first()
    if operation is None or not _joinable(operation):
        return 0
    horizon = changes.horizon()
    try:
        query = DeviceQuery.parse(operation.device_query)
    except DomainError:  # checked when it was created; a stored query never changes
        logger.exception("continuous operation %s has an invalid query", operation_id)
        return 0
    devices = query.queryset(operation.tenant_id)
    since = operation.continuous_watermark
    keys = changes.changed_keys(since, int(settings.CONTINUOUS_SMALL_CHANGE))
    if keys is None:  # a large change (a bulk import): in key chunks over the change
        written = write_joined(operation, devices, since)
    else:
        written = write_joined(operation, changes.with_keys(devices, keys)) if keys else 0
    if written is None:  # closed or stopped meanwhile: nothing joins any more
        return 0
    # Under the lock, so marks are stored in the order they were taken.
    Operation.objects.filter(pk=operation.pk).update(continuous_watermark=horizon)
    return written


def _joinable(operation: Operation) -> bool:
    """Whether devices may join now: a continuous operation, open, whose fan-out has stored its
    first watermark (before it, "changed since" would be every device ever)."""
    return (
        operation.target_selection == TargetSelection.CONTINUOUS
        and operation.continuous_watermark != ""
        and operation.continuous_closed_at is None
        and operation.state in JOINABLE_STATES
        and (operation.continuous_until is None or operation.continuous_until > timezone.now())
    )


def write_joined(operation: Operation, devices: QuerySet[Device], since: str | None = None) -> int | None:
    """One command per device of ``devices`` (changed since the mark ``since``, when given) not in
    the operation yet, in device key chunks (``FANOUT_CHUNK_SIZE``), each in its own transaction
    with its counters; ``None`` once the operation can no longer be joined (the chunks written
    before it stay, counted)."""

    def changed(low: int, high: int) -> QuerySet[Device]:
        if since is None:
            return devices.filter(pk__gte=low, pk__lt=high)
        return changes.with_keys(devices, changes.changed_keys(since, low=low, high=high) or [])

    if since is None:
        found = devices.aggregate(low=Min("pk"), high=Max("pk"))
        span = None if found["low"] is None else (found["low"], found["high"])
    else:
        span = changes.changed_span(since)
    if span is None:
        return 0
    bounds = {"low": span[0], "high": span[1]}
    base = commands_of(operation, Rollout.from_json(operation.rollout))
    window = (
        Window.from_args(operation.schedule_args) if operation.schedule_type == ScheduleType.WINDOW else None
    )
    # Looks of several operations write at once after a bulk import: ids in a block per chunk
    # keep their inserts off each other's index pages (``commands.rows``), worth its count query
    # only for a large change.
    reserve_ids = bounds["high"] - bounds["low"] >= RESERVE_IDS_FROM
    size = chunk_size()
    written = 0
    joined: list[int] = []
    for start in range(bounds["low"], bounds["high"] + 1, size):
        chunk = changed(start, start + size)
        with transaction.atomic():
            if not _still_joinable(operation.pk):
                return None
            inserted = _insert_chunk(base, chunk, window, reserve_ids=reserve_ids)
            if inserted:
                # Written Queued (no window): counted dispatched now, as the fan-out's dispatch
                # counts its own; a window's Scheduled ones are counted when it opens.
                dispatched = {"dispatched_count": inserted} if window is None else {}
                progress.add_counts(operation.pk, resolved_count=inserted, **dispatched)
        FANOUT_ROWS.inc(inserted)
        written += inserted
        if inserted and len(joined) <= BUMP_DEVICES_MAX:
            joined.extend(chunk.values_list("pk", flat=True)[: BUMP_DEVICES_MAX + 1])
    if written:
        _tell_devices(operation.tenant_id, joined)
    return written


def _tell_devices(tenant_id: int, joined: list[int]) -> None:
    """The joined devices' inboxes changed: their next poll must not answer 304."""
    if len(joined) > BUMP_DEVICES_MAX:
        inbox_cache.bump_tenant(tenant_id)
        return
    for device_pk in joined:
        inbox_cache.forget_device(device_pk)


def _still_joinable(operation_id: Any) -> bool:
    """Whether devices may still join, holding ``FOR KEY SHARE`` on the operation row until the
    chunk commits: a close or a stop locks it ``FOR UPDATE``, so it waits for the chunk in
    flight, and chunks after it see it (as the fan-out's ``_still_resolving``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Operation._meta.db_table} WHERE id = %s AND state = ANY(%s) "
            "AND continuous_closed_at IS NULL AND (continuous_until IS NULL OR continuous_until > now()) "
            "FOR KEY SHARE",
            [operation_id, sorted(int(state) for state in JOINABLE_STATES)],
        )
        return cursor.fetchone() is not None


def close(operation: Operation, reason: str, actor: str) -> Operation:
    """PUT ``COMPLETED`` on a continuous operation: no device joins from now on; it finishes
    when its commands do (at once if they all have). 400 naming ``state`` otherwise."""
    with transaction.atomic():
        current = Operation.objects.select_for_update().get(pk=operation.pk)
        if current.target_selection != TargetSelection.CONTINUOUS:
            raise DomainError(
                {
                    "state": [
                        "only a CONTINUOUS operation can be closed with COMPLETED; it completes by itself"
                    ]
                },
                code="invalid_transition",
            )
        if current.state in TERMINAL_STATES:
            raise DomainError(
                {"state": [f"the operation is already {S(current.state).name}, a final state"]},
                code="invalid_transition",
            )
        if current.continuous_closed_at is not None:
            raise DomainError({"state": ["the operation is already closed"]}, code="invalid_transition")
        _mark_closed(current.pk, reason or "closed: no device joins from now on", actor)
    _finish_if_done(current.pk, actor)
    current.refresh_from_db()
    return current


def close_due(operation: Operation) -> int:
    """Close an open continuous operation whose ``end_datetime`` passed; 1 if this call did."""
    with transaction.atomic():
        marked = _mark_closed(
            operation.pk, "end_datetime passed: no device joins from now on", "system", due=True
        )
    if marked:
        _finish_if_done(operation.pk, "system")
    return marked


def _mark_closed(operation_id: Any, reason: str, actor: str, due: bool = False) -> int:
    now = timezone.now()
    still_open = Q(pk=operation_id, continuous_closed_at__isnull=True)
    if due:
        still_open &= Q(continuous_until__lte=now)
    # select_for_update first: FOR UPDATE waits for a chunk in flight (FOR KEY SHARE).
    if not Operation.objects.select_for_update().filter(still_open).exists():
        return 0
    return Operation.objects.filter(still_open).update(
        continuous_closed_at=now, reason=reason, updated_at=now, updated_by=actor
    )


def _finish_if_done(operation_id: Any, actor: str) -> None:
    """A closed operation whose commands have all finished completes now; one that no device
    ever joined fails, as a snapshot that matched no device does."""
    progress.move(
        operation_id,
        S.FAILURE,
        "closed before any device joined",
        actor,
        only_from=[S.SCHEDULED, S.DISPATCHED, S.PROCESSING],
        when=Q(resolved_count=0),
    )
    progress.advance(operation_id, actor=actor)
