"""The weekly partitions of command statuses and command history (migration 0005), and the
set-based deletes retention uses where a partition cannot go whole (docs/retention.md).

A partition holds one week, Monday 00:00 UTC to the next, of the table's key
(``created_on`` for command statuses, ``created_at`` for history) and is named
``<table>_pYYYYMMDD`` after its first day; ``<table>_default`` catches rows outside every
range (an operation created before the oldest partition, or after the newest one made).

Raw SQL, kept here: only this module changes the shape of the command tables. Statements
that take the parent table's ACCESS EXCLUSIVE lock (creating a partition, detaching one) run
with ``lock_timeout`` = ``PARTITION_LOCK_TIMEOUT_MS``: a poll or report waits at most that
long behind them, and when they cannot get the lock they give up until the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import QuerySet

from commands.choices import UNFINISHED_STATES
from commands.models import CommandHistory, CommandStatus

logger = logging.getLogger(__name__)

WEEK = dt.timedelta(days=7)
#: The partitioned tables and their keys.
KEYS: dict[type[models.Model], str] = {CommandStatus: "created_on", CommandHistory: "created_at"}
_NAME = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True)
class Partition:
    name: str
    start: dt.datetime
    end: dt.datetime


def week_start(moment: dt.datetime) -> dt.datetime:
    """Monday 00:00 UTC of ``moment``'s week: the lower bound of its partition."""
    day = moment.astimezone(dt.UTC).date()
    return dt.datetime.combine(day - dt.timedelta(days=day.weekday()), dt.time(), dt.UTC)


def partitions(model: type[models.Model]) -> list[Partition]:
    """The weekly partitions of ``model``'s table, oldest first (not the default one)."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.search(name)
        if match:
            start = dt.datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
            found.append(Partition(name, start, start + WEEK))
    return sorted(found, key=lambda part: part.start)


def default_partition(model: type[models.Model]) -> str:
    return f"{model._meta.db_table}_default"


def _set_lock_timeout(cursor: object) -> None:
    cursor.execute("SET LOCAL lock_timeout = %s", [f"{settings.PARTITION_LOCK_TIMEOUT_MS}ms"])  # type: ignore[attr-defined]


def make_ahead(now: dt.datetime, weeks: int | None = None) -> list[str]:
    """Create the missing partitions from ``now``'s week to ``weeks`` ahead
    (``COMMAND_PARTITIONS_AHEAD``); returns the names made.

    Creating one checks that the default partition holds no row of its range, so it is made
    while the range is still in the future. A week whose rows already went to the default
    partition (the maker did not run for that long) is left there and logged.
    """
    weeks = settings.COMMAND_PARTITIONS_AHEAD if weeks is None else weeks
    made = []
    for model in KEYS:
        table = model._meta.db_table
        existing = {part.name for part in partitions(model)}
        start = week_start(now)
        for _ in range(weeks + 1):
            name = f"{table}_p{start:%Y%m%d}"
            if name not in existing:
                try:
                    with transaction.atomic(), connection.cursor() as cursor:
                        _set_lock_timeout(cursor)
                        cursor.execute(
                            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)",
                            [start, start + WEEK],
                        )
                    made.append(name)
                except DatabaseError as error:
                    logger.warning("partition %s not made: %s", name, error)
            start += WEEK
    return made


def drop(model: type[models.Model], partition: Partition) -> bool:
    """Detach the partition (the parent's lock, for a catalog change only, with
    ``lock_timeout``), then drop it as a table of its own, which no query of the parent
    waits for. False when the lock was not had in time: the next run tries again."""
    table = model._meta.db_table
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            _set_lock_timeout(cursor)
            cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {partition.name}")
    except DatabaseError as error:
        logger.info("partition %s not detached this time: %s", partition.name, error)
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partition.name}")
    logger.info("dropped partition %s", partition.name)
    return True


def unfinished_internal_commands(partition: Partition) -> bool:
    """Whether the partition holds an internal command not yet finished (commands_request_ref)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {partition.name} WHERE request_ref <> '' AND state = ANY(%s) LIMIT 1",
            [sorted(int(s) for s in UNFINISHED_STATES)],
        )
        return cursor.fetchone() is not None


def delete_commands(commands: QuerySet[CommandStatus], limit: int) -> int:
    """Delete up to ``limit`` of ``commands`` with their history, in one statement and one
    transaction; returns how many commands went.

    Rows another transaction holds (a device's report of a finished command) are skipped,
    never waited for: the next batch takes them.
    """
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    # Joined on the key too, so each row is looked up in its own partition (run-time pruning),
    # not in each of the 24 partitions' keys as a delete by id alone does (EXPLAIN ANALYZE on
    # bench/capacity.py's database). A batch still took 2.6 s there against 0.17 s in one
    # table (docs/scaling.md): deleting through the week's own partition is the next step.
    sql = f"""
        WITH picked AS ({{picked}}), gone AS (
            DELETE FROM {table} cs USING picked
            WHERE cs.id = picked.id AND cs.created_on = picked.created_on
            RETURNING cs.id, cs.created_on
        ), history AS (
            DELETE FROM {history} h USING gone
            WHERE h.command_id = gone.id AND h.created_at >= gone.created_on
        )
        SELECT count(*) FROM gone
    """
    with transaction.atomic(), connection.cursor() as cursor:
        picked = commands.order_by().values("id", "created_on").select_for_update(skip_locked=True)[:limit]
        picked_sql, picked_params = picked.query.sql_with_params()
        cursor.execute(sql.replace("{picked}", picked_sql), picked_params)
        return int(cursor.fetchone()[0])


def delete_old_history(before: dt.datetime, limit: int) -> int:
    """Delete up to ``limit`` history rows older than ``before`` from the default partition
    (the weekly ones go whole); returns how many went."""
    name = default_partition(CommandHistory)
    sql = f"""
        DELETE FROM {name} WHERE ctid IN (
            SELECT ctid FROM {name} WHERE created_at < %s LIMIT %s FOR UPDATE SKIP LOCKED
        )
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [before, limit])
        return int(cursor.rowcount)
