"""Writing command rows in sets: a fan-out's chunk, a rollout's waves.

The floor above decides what to write (which devices, which state, which window) and passes
it here as data (:class:`NewCommands`, a queryset of devices, wave sizes); the SQL over the
command table is written only in ``commands``. Set moves of existing rows are
``commands.services.move_commands``; a device's report and the hand-out are there too.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from commands import push
from commands.choices import CommandState, Priority
from commands.models import CommandStatus
from config.locks import LockSpace, LockTimeout, advisory_lock
from inventory.models import Device

logger = logging.getLogger(__name__)

TABLE = CommandStatus._meta.db_table


@dataclass(frozen=True)
class NewCommands:
    """What every command of one INSERT shares: its operation's command and the delivery
    knobs a rollout puts on each row (its wave, retry budget and in-progress timeout).

    ``created_on`` is the operation's creation time, the partition key
    (``commands.partitions``): the same on every retry of a chunk, so the unique
    (operation, device, created_on) still stops a second row, and all of an operation's
    commands share one partition.
    """

    tenant_id: int
    operation_id: uuid.UUID
    command: str
    arguments: dict[str, Any]
    state: CommandState
    created_on: dt.datetime
    reason: str = ""
    not_before: dt.datetime | None = None
    window_closes_at: dt.datetime | None = None
    deadline: dt.datetime | None = None
    dispatched_at: dt.datetime | None = None
    wave: int = 1
    max_attempts_on_failure: int = 1
    max_attempts_on_timeout: int = 1
    progress_timeout: int | None = None


#: What every new row of an operation starts with, beside :class:`NewCommands`.
_STARTING = {
    "request_ref": "",
    "is_internal": False,
    "priority": int(Priority.NORMAL),
    "delivery_count": 0,
    "version": 1,
}


def write(
    devices: QuerySet[Device],
    new: NewCommands,
    first_run: bool = False,
    reserve_ids: bool = False,
    notify: bool = False,
) -> int:
    """INSERT ... SELECT one command per device of ``devices``; returns the rows written.

    A resumed run (not ``first_run``) may find some of its rows written by a run before it:
    ``ON CONFLICT DO NOTHING`` skips them. The first run cannot (no run wrote anything before
    it, and the caller's lock keeps any other run out while it writes), so it writes a plain
    INSERT: speculative insertion costs an index probe of both unique indexes and an extra WAL
    record per row, 35 % of a chunk's time (1.18-1.23 s against 0.78-0.82 s per 100,000 rows
    on one connection). The unique (operation, device) index is still checked: a duplicate
    that should not be there raises, the run fails and the next one, not first, skips it.

    ``reserve_ids``: the rows take their ids from a block reserved for this statement
    (:func:`_reserve_ids`) instead of one ``nextval`` each.

    ``notify``: the commands are available to their devices now (the caller knows: Queued, in
    an open wave), so each device written gets its push outbox row (``commands.push``) in
    the same statement, when MQTT is on: one more INSERT ... SELECT over the rows written,
    no round trip and no Python per row.
    """
    ops = connection.ops
    sub_sql, sub_params = devices.order_by().values_list("pk").query.sql_with_params()
    values: dict[str, Any] = asdict(new)
    values["operation_id"] = CommandStatus._meta.get_field("operation").get_db_prep_value(  # type: ignore[union-attr]
        new.operation_id, connection
    )
    values["arguments"] = json.dumps(new.arguments)
    values["state"] = int(new.state)
    for name, value in values.items():
        if isinstance(value, dt.datetime):
            values[name] = ops.adapt_datetimefield_value(value)
    values |= _STARTING
    values["updated_on"] = ops.adapt_datetimefield_value(timezone.now())
    columns = [*values, "device_id"]
    placeholders = ", ".join("%s::jsonb" if name == "arguments" else "%s" for name in values)
    id_column, id_sql, rows_sql = "", "", f"({sub_sql}) AS sub WHERE true"
    id_params: list[Any] = []
    if reserve_ids:
        first, reserved = _reserve_ids(sub_sql, sub_params)
        # Row n (in device key order) takes the n-th reserved id; a device that appeared since
        # the count (past the block) takes its own nextval, as without a reservation.
        id_column = "id, "
        id_sql = "CASE WHEN sub.rn <= %s THEN %s + sub.rn - 1 ELSE nextval(%s::regclass) END, "
        id_params = [reserved, first, _id_sequence()]
        rows_sql = (
            f"(SELECT s.pk, row_number() OVER (ORDER BY s.pk) AS rn FROM ({sub_sql}) AS s) AS sub WHERE true"
        )
    sql = f"""
        INSERT INTO {TABLE} ({id_column}{", ".join(columns)})
        SELECT {id_sql}{placeholders}, sub.pk
        FROM {rows_sql}
        {"" if first_run else "ON CONFLICT DO NOTHING"}
    """
    if notify and push.enabled():
        # One outbox row per device written (each device once in a chunk): the statement's
        # row count is then the outbox's, which is the number of commands written.
        written = "SELECT device_id AS device_pk, tenant_id FROM written"
        sql = f"WITH written AS ({sql} RETURNING device_id, tenant_id) {push.upsert_sql(written)}"
    with connection.cursor() as cursor:
        # The SELECT list's parameters come before the subquery's in the statement.
        cursor.execute(sql, [*id_params, *values.values(), *sub_params])
        return int(cursor.rowcount)


@functools.cache
def _id_sequence() -> str:
    """The sequence of the command table's ids (its column default, migration 0007)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
        row = cursor.fetchone()
    if row is None or row[0] is None:  # not cached then: the next call asks again
        raise RuntimeError(f"{TABLE}.id has no sequence")
    return str(row[0])


def _reserve_ids(sub_sql: str, sub_params: Any) -> tuple[int, int]:
    """Reserve consecutive ids for the rows of the devices' query: (first id, how many),
    (0, 0) if the block came out with a hole.

    Ids from ``nextval`` row by row interleave the rows of parallel chunks in id order, so
    both backends insert at the same right-most leaf of every index ordered by id among the
    chunks' rows (primary key, (tenant, id), (operation, id)) and wait for each other's
    buffer lock there: 24 % of their time sampled in ``pg_stat_activity``
    (LWLock:BufferContent, two chunks of 50,000 at a time); with a block each, 1 %. The
    block is taken under a session advisory lock so the other chunk's block does not
    interleave with it; a ``nextval`` of another writer (an internal command) can still land
    inside it, and the hole is seen here: the chunk then takes ``nextval`` for each row. Ids
    are never handed out twice by the sequence, so the block is this statement's alone;
    unused ones are skipped, as a rolled-back insert skips its own.
    """
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sub_sql}) AS s", sub_params)
        count = int(cursor.fetchone()[0])
        if not count:
            return 0, 0
        # The savepoint: should the statement fail, the transaction is usable again for the unlock.
        try:
            with advisory_lock(LockSpace.COMMAND_ID_BLOCK, TABLE), transaction.atomic():
                cursor.execute(
                    "SELECT min(v), max(v) "
                    "FROM (SELECT nextval(%s::regclass) AS v FROM generate_series(1, %s)) AS s",
                    [_id_sequence(), count],
                )
                low, high = cursor.fetchone()
        except LockTimeout:
            # Another chunk held the block's lock past ADVISORY_LOCK_TIMEOUT_MS (it holds it for
            # one nextval statement): this chunk takes nextval for each row instead, as for a hole.
            logger.warning("no block of %s ids for %s rows: the lock was busy", TABLE, count)
            return 0, 0
    if high - low + 1 != count:
        return 0, 0
    return int(low), count


def assign_waves(operation_id: uuid.UUID, ends: list[int]) -> None:
    """Give each command of the operation its wave: wave k holds the devices ranked after
    ``ends[k-2]`` up to ``ends[k-1]`` in a stable, spread order (the MD5 of the device's id,
    so a wave is a sample of the fleet, not the first ids alphabetically)."""
    cases = " ".join(f"WHEN ranked.r <= {int(end)} THEN {number}" for number, end in enumerate(ends, 1))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH ranked AS (
                SELECT cs.id, row_number() OVER (ORDER BY md5(d.device_id), cs.device_id) AS r
                FROM {TABLE} cs JOIN {Device._meta.db_table} d ON d.id = cs.device_id
                WHERE cs.operation_id = %s
            )
            UPDATE {TABLE} cs SET wave = CASE {cases} ELSE {len(ends)} END
            FROM ranked WHERE cs.id = ranked.id
            """,
            [operation_id],
        )
