"""Devices' ``last_seen`` without a database write, or a round trip, on every poll.

With Redis, each web process collects the polls it answers in memory and pushes them into
a Redis hash at most every ``PUSH_SECONDS`` (one HSET for all of them); a periodic task
flushes the hash into the device table as one UPDATE. A process that dies loses at most
those seconds of sightings, which the devices' next polls record again. Without Redis
(development), a poll writes at most once a minute per device.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from inventory.models import Device

HASH = "presence:last_seen"
FALLBACK_RESOLUTION = 60


@functools.cache
def _client() -> Any:
    return redis.Redis.from_url(settings.REDIS_URL) if settings.REDIS_URL else None


PUSH_SECONDS = 5.0
_buffer: dict[int, float] = {}
_buffer_lock = threading.Lock()
_last_push = [0.0]


def record_seen(device_pk: int) -> None:
    client = _client()
    if client is None:
        if cache.add(f"presence:{device_pk}", 1, FALLBACK_RESOLUTION):
            Device.objects.filter(pk=device_pk).update(last_seen=timezone.now())
        return
    now = time.time()
    with _buffer_lock:
        _buffer[device_pk] = now
        if now - _last_push[0] < PUSH_SECONDS:
            return
    push_buffered()


def push_buffered() -> None:
    """Send this process's collected sightings to Redis (one HSET)."""
    client = _client()
    with _buffer_lock:
        batch, _last_push[0] = dict(_buffer), time.time()
        _buffer.clear()
    if client is not None and batch:
        client.hset(HASH, mapping={str(pk): repr(seen) for pk, seen in batch.items()})


def flush_seen() -> int:
    """Write the buffered ``last_seen`` times to the database; returns devices updated."""
    client = _client()
    if client is None:
        return 0
    push_buffered()
    pending = f"{HASH}:flushing:{uuid.uuid4().hex}"  # each flush its own batch, even when two run at once
    try:
        client.rename(HASH, pending)
    except redis.ResponseError:  # nothing buffered
        return 0
    seen = {int(k): float(v) for k, v in client.hgetall(pending).items()}
    client.delete(pending)
    if not seen:
        return 0
    rows = sorted(seen.items())
    table = Device._meta.db_table
    updated = 0
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        values = ", ".join(["(%s, to_timestamp(%s))"] * len(chunk))
        params = [p for row in chunk for p in row]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} d SET last_seen = GREATEST(COALESCE(d.last_seen, v.ts), v.ts) "
                f"FROM (VALUES {values}) AS v(id, ts) WHERE d.id = v.id",
                params,
            )
            updated += cursor.rowcount
    return updated  # devices deleted since they were seen are not counted
