"""Session advisory locks: "one run of this at a time", across every worker and machine.

A lock taken here lives as long as the database session, so a worker killed mid-run frees
it with its connection, and a sweep that can take it knows no run is under way (the fan-out
and the stop of an operation use it so, ``operations.fanout`` and ``operations.stopping``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def lock_key(name: str) -> int:
    """``name``'s key in PostgreSQL's bigint advisory key space."""
    return zlib.crc32(name.encode()) - 2**31


@contextmanager
def try_advisory_lock(name: str) -> Iterator[bool]:
    """Take the session advisory lock ``name`` if it is free; yields whether it was taken,
    and releases it on leaving if so. Never waits."""
    key = lock_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@contextmanager
def advisory_lock(name: str) -> Iterator[None]:
    """Take the session advisory lock ``name``, waiting for it, and release it on leaving.

    For short critical sections only: the wait has no limit but the statement timeout."""
    key = lock_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
