"""Devices' ``last_seen`` without a database write, or a round trip, on every poll.

Each web process collects the polls it answers in memory (:func:`record_seen`, a dict write
under a lock) and adds them to a shared hash in the cache at most every ``PUSH_SECONDS``
(one ``HSET`` on Redis for all of them). A periodic task (:func:`flush_seen`, beat entry
``flush-last-seen``) takes the hash whole and writes it to the device table as one
``UPDATE ... FROM (VALUES ...)`` per 5,000 devices. The same path runs whatever cache is
configured (``config.cache``: Redis, or files for the zero-config run).

What is kept outside the database, and what a crash loses: a web process holds at most the
last ``PUSH_SECONDS`` of its sightings (lost if it dies); the hash holds at most one flush
period of everyone's (lost if Redis is). A device's next poll records it again, so
``last_seen`` is late by at most one poll interval plus those periods, never wrong. While
the cache cannot be reached a process keeps its sightings and adds them once it answers.
"""

from __future__ import annotations

import threading
import time

from django.core.cache import cache
from django.db import connection

from config.cache import degraded
from config.errors import CacheUnavailable
from inventory.models import Device

HASH = "presence:last_seen"
#: Seconds a web process keeps its sightings before adding them to the shared hash.
PUSH_SECONDS = 5.0
#: Devices per UPDATE statement of a flush.
FLUSH_CHUNK = 5000

_buffer: dict[int, float] = {}
_buffer_lock = threading.Lock()
_last_push = [0.0]


def record_seen(device_pk: int) -> None:
    """Note that the device polled now; pushed to the shared hash within ``PUSH_SECONDS``."""
    now = time.time()
    with _buffer_lock:
        _buffer[device_pk] = now
        if now - _last_push[0] < PUSH_SECONDS:
            return
    push_buffered()


def push_buffered() -> None:
    """Add this process's collected sightings to the shared hash (one round trip)."""
    with _buffer_lock:
        batch, _last_push[0] = dict(_buffer), time.time()
        _buffer.clear()
    if not batch:
        return
    try:
        cache.hash_add(HASH, {str(pk): seen for pk, seen in batch.items()})  # type: ignore[attr-defined]
    except CacheUnavailable:
        # Kept for the next push (PUSH_SECONDS on): a poll must not fail for its sighting.
        degraded("presence", "devices' sightings are kept in each web process")
        with _buffer_lock:
            for pk, seen in batch.items():
                _buffer[pk] = max(seen, _buffer.get(pk, seen))


def flush_seen() -> int:
    """Write everyone's pushed sightings (and this process's own) to the device table;
    returns devices updated. Each flush takes the hash whole, so two at once never write
    the same sightings twice."""
    push_buffered()
    seen = cache.hash_take(HASH)  # type: ignore[attr-defined]
    return write_sightings({int(pk): ts for pk, ts in seen.items()})


def write_sightings(seen: dict[int, float]) -> int:
    """Set ``last_seen`` from ``{device pk: Unix time}``, never moving it backwards
    (``GREATEST``); returns devices updated (those deleted since are not counted)."""
    rows = sorted(seen.items())
    table = Device._meta.db_table
    updated = 0
    for start in range(0, len(rows), FLUSH_CHUNK):
        chunk = rows[start : start + FLUSH_CHUNK]
        values = ", ".join(["(%s, to_timestamp(%s))"] * len(chunk))
        params = [p for row in chunk for p in row]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} d SET last_seen = GREATEST(COALESCE(d.last_seen, v.ts), v.ts) "
                f"FROM (VALUES {values}) AS v(id, ts) WHERE d.id = v.id",
                params,
            )
            updated += cursor.rowcount
    return updated
