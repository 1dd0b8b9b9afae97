"""Advisory locks (``config.locks``): one key space per kind of lock, and a limit on waiting.

Before (issue 23, item 9): every lock's key was the crc32 of its name in one bigint space, so
the fan-out of one operation and the stop of another could share a key, and ``advisory_lock``
waited without a limit but the statement timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from django.db import connection, transaction

from commands import rows
from config.locks import LockSpace, LockTimeout, advisory_lock, lock_key
from operations import fanout, stopping

pytestmark = pytest.mark.django_db

# Two operation ids whose old keys were one: crc32(FAN_OUT) == crc32("stop:" + STOPPED) ==
# 1444304921 (found once among uuid5 ids; crc32 is deterministic).
FAN_OUT = "b4aee4af-2db5-56e7-9944-fb3b89bac139"
STOPPED = "30632b4d-fb3e-5a47-9801-11d2c0c6f22d"


@contextmanager
def held_elsewhere(lock: Callable[[], AbstractContextManager[Any]]) -> Iterator[list[Any]]:
    """Hold ``lock()`` on another database session (a thread's connection) meanwhile; yields
    what it gave (``try_advisory_lock``'s bool) in a list."""
    taken, release, given, errors = threading.Event(), threading.Event(), [], []

    def hold() -> None:
        try:
            with lock() as got:
                given.append(got)
                taken.set()
                release.wait(timeout=60)
        except BaseException as error:
            errors.append(error)
            taken.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(timeout=60), "the other session did not take its lock"
    try:
        yield given
    finally:
        release.set()
        thread.join(timeout=60)
    assert not errors, errors


@contextmanager
def statement_timeout(milliseconds: int) -> Iterator[None]:
    """A guard on this session, so a lock that waits for ever fails the test instead of hanging it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{milliseconds}ms"])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', '0', false)")


def test_a_fan_out_and_another_operations_stop_never_share_a_lock() -> None:
    with (
        held_elsewhere(lambda: fanout.exclusive(FAN_OUT)) as fan_out_got,
        stopping._exclusive(STOPPED) as stop_got,
    ):
        assert fan_out_got == [True]
        assert stop_got, "the stop waited on another operation's fan-out"


def test_one_name_in_two_spaces_is_two_keys_and_each_space_has_its_own_number() -> None:
    name = "0b6f7a1c-0000-4000-8000-000000000001"

    keys = {lock_key(space, name) for space in LockSpace}

    assert len(keys) == len(LockSpace) == len({int(space) for space in LockSpace})
    assert all(-(2**31) <= objid < 2**31 for _, objid in keys)
    assert lock_key(LockSpace.FAN_OUT, name) == lock_key(LockSpace.FAN_OUT, name)  # stable


def test_a_waiting_lock_gives_up_after_its_timeout_and_leaves_the_transaction_usable() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        before = cursor.fetchone()[0]

    with (
        held_elsewhere(lambda: advisory_lock(LockSpace.COMMAND_ID_BLOCK, "busy")),
        statement_timeout(10_000),
        transaction.atomic(),
    ):
        with pytest.raises(LockTimeout), advisory_lock(LockSpace.COMMAND_ID_BLOCK, "busy", timeout_ms=100):
            pytest.fail("the lock was had while another session held it")
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] == before  # put back

    with advisory_lock(LockSpace.COMMAND_ID_BLOCK, "busy", timeout_ms=100):
        pass  # free again once the other session let go


def test_a_chunk_whose_id_block_lock_is_busy_takes_ids_one_by_one(settings: Any) -> None:
    settings.ADVISORY_LOCK_TIMEOUT_MS = 100

    with (
        held_elsewhere(lambda: advisory_lock(LockSpace.COMMAND_ID_BLOCK, rows.TABLE)),
        statement_timeout(10_000),
    ):
        busy = rows._reserve_ids("SELECT 1 FROM generate_series(1, 5)", [])
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the transaction is usable

    free = rows._reserve_ids("SELECT 1 FROM generate_series(1, 5)", [])

    assert busy == (0, 0)  # no block: nextval for each row, as for a block with a hole
    assert free[1] == 5
