"""Devices' ``last_seen`` without a database write on every poll.

With Redis, a poll is one HSET into a hash that a periodic task flushes into the device
table as one UPDATE. Without Redis (development), a poll writes at most once a minute per
device.
"""

from __future__ import annotations

import datetime as dt
import functools
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


def record_seen(device_pk: int) -> None:
    client = _client()
    if client is not None:
        client.hset(HASH, str(device_pk), repr(time.time()))
    elif cache.add(f"presence:{device_pk}", 1, FALLBACK_RESOLUTION):
        Device.objects.filter(pk=device_pk).update(last_seen=timezone.now())


def flush_seen() -> int:
    """Write the buffered ``last_seen`` times to the database; returns devices updated."""
    client = _client()
    if client is None:
        return 0
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
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        if connection.vendor == "postgresql":
            values = ", ".join(["(%s, to_timestamp(%s))"] * len(chunk))
            params = [p for row in chunk for p in row]
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} d SET last_seen = GREATEST(COALESCE(d.last_seen, v.ts), v.ts) "
                    f"FROM (VALUES {values}) AS v(id, ts) WHERE d.id = v.id",
                    params,
                )
        else:
            for device_pk, ts in chunk:
                Device.objects.filter(pk=device_pk).update(last_seen=dt.datetime.fromtimestamp(ts, tz=dt.UTC))
    return len(rows)
