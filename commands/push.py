"""The push outbox: which devices must hear a ``notify`` (contract section 14), and the
publisher's side of it in the database.

A command becomes available to a device in a handful of places, every one of them a write of
``commands``: a fan-out's chunk (``rows.write``), a set move back to the queue (a window
opening, redelivery, a retry after a timeout: ``services.move_commands``), a report whose
failure the retry budget queues again (``services.report``), an internal command (a headless
run falling due: ``services.issue_internal_command``), and the floors above opening a wave or
resuming an operation (:func:`notify_operation`). Each writes the device's outbox row
(:class:`~commands.models.DeviceNotify`) **in its own statement or transaction**, as data
(:func:`upsert_sql` over the rows it moved), so the change and its notify commit together.
Only while ``MQTT_URL`` is set (:func:`enabled`): without MQTT the fan-out pays nothing.

One row per device, upserted (``ON CONFLICT DO UPDATE``): changes before the publisher gets
to the device make one message. The upsert waits for a row the publisher holds, and finds it
deleted once the publisher commits: then it inserts a new row, so a change made while its
device's notify was in flight is told in a next one, never lost.

The publisher (``commands.notifier``, run by the bridge) takes rows ``FOR UPDATE SKIP
LOCKED`` (several bridges share the work), reads what each device has waiting, publishes, and
deletes the rows after the broker's PUBACKs, in the same transaction. A crash anywhere before
that commit leaves the rows for the next publisher: at least once.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from commands.choices import CommandState
from commands.models import CommandStatus, DeviceNotify
from config.cache import degraded
from config.errors import CacheUnavailable

TABLE = DeviceNotify._meta.db_table
C = CommandState


def enabled() -> bool:
    """Whether changes write notifies: only with a broker to send them (``MQTT_URL``)."""
    return bool(settings.MQTT_URL)


def upsert_sql(select_sql: str) -> str:
    """The INSERT of outbox rows for the devices of ``select_sql`` (columns ``device_pk`` and
    ``tenant_id``; a device may appear several times), as the body of a statement or a CTE.

    Rows go in device order, so two writers that upsert overlapping devices lock them in the
    same order and cannot deadlock on each other.
    """
    return (
        f"INSERT INTO {TABLE} (device_pk, tenant_id, changed_at) "
        f"SELECT DISTINCT ON (n.device_pk) n.device_pk, n.tenant_id, statement_timestamp() "
        f"FROM ({select_sql}) AS n ORDER BY n.device_pk "
        "ON CONFLICT (device_pk) DO UPDATE SET changed_at = EXCLUDED.changed_at"
    )


def notify_devices(devices: list[tuple[int, int]]) -> None:
    """Outbox rows for ``devices`` (pairs of tenant id and device key), in the caller's
    transaction. Nothing without MQTT."""
    if not enabled() or not devices:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            upsert_sql("SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS d(tenant_id, device_pk)"),
            [[tenant for tenant, _ in devices], [device for _, device in devices]],
        )


def notify_operation(operation_id: Any, wave: int | None = None) -> int:
    """Outbox rows for every device with a queued command of the operation (of ``wave``
    only, if given): a wave opened, an operation resumed. One INSERT ... SELECT, in the
    caller's transaction; nothing without MQTT. Returns how many devices."""
    if not enabled():
        return 0
    table = CommandStatus._meta.db_table
    wave_sql = "AND cs.wave = %s" if wave is not None else ""
    params: list[Any] = [operation_id, int(C.QUEUED)] + ([wave] if wave is not None else [])
    with connection.cursor() as cursor:
        cursor.execute(
            upsert_sql(
                f"SELECT cs.device_id AS device_pk, cs.tenant_id FROM {table} cs "
                f"WHERE cs.operation_id = %s AND cs.state = %s {wave_sql}"
            ),
            params,
        )
        return int(cursor.rowcount)


# --- which devices have a live MQTT session --------------------------------------------------
#
# Mosquitto 2 tells nobody which clients are connected (only how many: $SYS). The bridge
# therefore records every device it hears from (an inbox/get, an update) in the shared cache,
# with a lifetime of two safety periods: a device that keeps its session asks inbox/get over
# MQTT when it connects and at least once per MQTT_SAFETY_POLL_SECONDS (docs/mqtt-bridge.md),
# so it stays marked, and its HTTP polls are told to come back in MQTT_SAFETY_POLL_SECONDS.
# A device that went quiet on MQTT falls back to the normal poll interval within two periods.

LIVE_KEY = "mqtt:live:{device}"


def live_seconds() -> int:
    return 2 * int(settings.MQTT_SAFETY_POLL_SECONDS) + 60


def mark_live(device_pks: set[int]) -> bool:
    """Record that these devices spoke over MQTT now (one cache round trip for a batch);
    best effort: without the cache (False), their HTTP polls keep the normal interval."""
    if not device_pks:
        return True
    try:
        cache.set_many({LIVE_KEY.format(device=pk): 1 for pk in device_pks}, timeout=live_seconds())
    except CacheUnavailable:
        degraded("mqtt_presence", "devices heard over MQTT keep the normal HTTP poll interval")
        return False
    return True


class Presence:
    """A bridge's memory of the marks it wrote: a device heard again within half of the mark's
    lifetime is not written again, since its mark outlives the next refresh anyway. A device
    reporting three times per command and asking for its inbox cost four cache writes per
    command before; now it costs one per half lifetime (in the reports bench's profile these
    writes were 7 % of the bridge's settling time)."""

    #: Devices remembered at most; past it the memory starts again (a few extra writes).
    LIMIT = 200_000

    def __init__(self) -> None:
        self._fresh_until: dict[int, float] = {}

    def heard(self, device_pks: set[int]) -> None:
        now = time.monotonic()
        due = {pk for pk in device_pks if self._fresh_until.get(pk, 0.0) <= now}
        if not due or not mark_live(due):
            return
        if len(self._fresh_until) + len(due) > self.LIMIT:
            self._fresh_until.clear()
        fresh_until = now + live_seconds() / 2
        for pk in due:
            self._fresh_until[pk] = fresh_until


def is_live(device_pk: int) -> bool:
    """Whether the device spoke over MQTT lately (False without MQTT or without the cache)."""
    if not enabled():
        return False
    try:
        return cache.get(LIVE_KEY.format(device=device_pk)) is not None
    except CacheUnavailable:
        return False
