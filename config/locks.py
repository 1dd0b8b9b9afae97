"""Session advisory locks: "one run of this at a time", across every worker and machine.

A lock taken here lives as long as the database session, so a worker killed mid-run frees
it with its connection, and a sweep that can take it knows no run is under way (the fan-out
and the stop of an operation use it so, ``operations.fanout`` and ``operations.stopping``).

Keys: PostgreSQL's two-integer form, ``(space, objid)``. ``space`` is the kind of lock, one
number of :class:`LockSpace` each, so locks of two kinds can never share a key (they once
shared one crc32 key space: the fan-out of one operation and the stop of another could take
the same key, and one waited on, or skipped for, the other). ``objid`` is a stable 32-bit
hash of the name within its kind (BLAKE2b): two names of one kind may still share one, which
costs a wait or a skip that the callers' sweeps recover from, never a wrong result. The two
forms are distinct key spaces in PostgreSQL, so an old process's one-integer keys (a rolling
deploy) never meet these; fan-outs and stops are idempotent, so the overlap is harmless.

A waiting lock (:func:`advisory_lock`) waits at most ``ADVISORY_LOCK_TIMEOUT_MS``
(PostgreSQL's ``lock_timeout`` for that one statement), then raises :class:`LockTimeout`
with the caller's transaction usable; it had no limit but the statement timeout.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg import errors as pg_errors


@enum.unique
class LockSpace(enum.IntEnum):
    """Every kind of advisory lock and its number (PostgreSQL's ``classid`` in ``pg_locks``).

    A number is never reused for another kind; ``enum.unique`` refuses two kinds with one.
    """

    #: ``operations.fanout``: one run of an operation's fan-out (the name: the operation's id).
    FAN_OUT = 1
    #: ``operations.stopping``: one run of an operation's stop (the name: the operation's id).
    STOP = 2
    #: ``commands.rows``: one chunk at a time takes a block of command ids.
    COMMAND_ID_BLOCK = 3
    #: ``operations.continuous``: one look at device changes per continuous operation.
    CONTINUOUS_LOOK = 4
    #: ``inventory.broker_logins``: one change of the broker's device logins at a time.
    BROKER_LOGINS = 5


class LockTimeout(Exception):
    """:func:`advisory_lock` waited ``ADVISORY_LOCK_TIMEOUT_MS`` and did not get the lock."""


def lock_key(space: LockSpace, name: str) -> tuple[int, int]:
    """``name``'s key in ``space``: (the space's number, a signed 32-bit hash of ``name``)."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return int(space), int.from_bytes(digest, "big", signed=True)


@contextmanager
def try_advisory_lock(space: LockSpace, name: str) -> Iterator[bool]:
    """Take the session advisory lock ``name`` of ``space`` if it is free; yields whether it
    was taken, and releases it on leaving if so. Never waits."""
    key = lock_key(space, name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


@contextmanager
def advisory_lock(space: LockSpace, name: str, timeout_ms: int | None = None) -> Iterator[None]:
    """Take the session advisory lock ``name`` of ``space``, waiting at most ``timeout_ms``
    (default ``ADVISORY_LOCK_TIMEOUT_MS``), and release it on leaving; :class:`LockTimeout`
    when it was not had in time.

    For short critical sections only. The limit is the session's ``lock_timeout``, set for
    the lock's statement and put back after it, inside a savepoint (a transaction when there
    is none): a timeout rolls the savepoint back, which puts the setting back too and leaves
    the caller's transaction usable, and PostgreSQL keeps a session lock past a commit or a
    rollback of the transaction it was taken in.
    """
    key = lock_key(space, name)
    limit = settings.ADVISORY_LOCK_TIMEOUT_MS if timeout_ms is None else timeout_ms
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('lock_timeout')")
            before = str(cursor.fetchone()[0])
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{int(limit)}ms"])
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
            cursor.execute("SELECT set_config('lock_timeout', %s, false)", [before])
    except OperationalError as error:
        if isinstance(error.__cause__, pg_errors.LockNotAvailable):
            raise LockTimeout(f"advisory lock {space.name} {name!r}: not had within {limit} ms") from None
        raise
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)
