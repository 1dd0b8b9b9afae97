"""Devices' ``last_seen`` without a database write, or a round trip, on every poll.

Each process that answers polls keeps, in memory, when it last saw each device
(:func:`record_seen`, a dict write under a lock). A daemon thread of that process writes them
to the device table every ``PRESENCE_FLUSH_SECONDS`` as one ``UPDATE ... FROM (VALUES ...)``
per 5,000 devices, on its own database connection, so no poll waits for it. The same path
runs whatever cache and broker are configured.

What is kept in a web process, and what a crash loses: at most the last
``PRESENCE_FLUSH_SECONDS`` of sightings of that process (a graceful stop writes them, see
:func:`flush_buffered` at exit). A device's next poll records it again, so ``last_seen`` is
late by at most one poll interval plus that period, never wrong.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time

from django.conf import settings
from django.db import connection

from inventory.models import Device

#: Devices per UPDATE statement of a flush.
FLUSH_CHUNK = 5000

logger = logging.getLogger(__name__)
_buffer: dict[int, float] = {}
_buffer_lock = threading.Lock()
_flusher_pid: list[int] = []  # the process whose thread runs; a forked child starts its own


def record_seen(device_pk: int) -> None:
    """Note that the device polled now; the flusher thread writes it shortly."""
    with _buffer_lock:
        _buffer[device_pk] = time.time()
        if _flusher_pid != [os.getpid()]:
            _start_flusher()


def _start_flusher() -> None:
    """Start this process's flusher (called with the lock held, once per process)."""
    _flusher_pid[:] = [os.getpid()]
    threading.Thread(target=_flush_forever, name="presence-flush", daemon=True).start()
    atexit.register(_flush_at_exit)


def _flush_forever() -> None:
    while True:
        time.sleep(float(settings.PRESENCE_FLUSH_SECONDS))
        _flush_once()


def _flush_at_exit() -> None:
    """A graceful stop writes what is buffered. Nothing is left to retry at exit, and logging
    may be closed already: a failure here only loses these last sightings."""
    with contextlib.suppress(Exception):
        flush_buffered()


def _flush_once() -> None:
    try:
        flush_buffered()
    except Exception:  # a database that is down: the sightings wait for the next round
        logger.warning("last_seen flush failed; the sightings are kept for the next one", exc_info=True)
    finally:
        connection.close()  # this thread's own connection: nothing is held between flushes


def flush_buffered() -> int:
    """Write this process's collected sightings to the device table; returns devices updated.

    Sightings that could not be written (the database is down) go back into the buffer,
    unless a newer one came meanwhile.
    """
    with _buffer_lock:
        batch = dict(_buffer)
        _buffer.clear()
    try:
        return write_sightings(batch)
    except Exception:
        with _buffer_lock:
            for device_pk, seen in batch.items():
                _buffer[device_pk] = max(seen, _buffer.get(device_pk, seen))
        raise


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
