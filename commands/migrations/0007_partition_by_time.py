"""Command statuses and command history become tables partitioned by time (weekly ranges of
``created_on`` / ``created_at``), so retention drops whole partitions instead of deleting
rows (docs/retention.md).

The new table is built from the old one's definition, not from a column list written here:
``CREATE TABLE ... (LIKE old INCLUDING DEFAULTS INCLUDING CONSTRAINTS ...)``, then every
index of the old table is made again from ``pg_get_indexdef``, with the partition key added
to the primary key and to every unique index (PostgreSQL requires it). So columns and
indexes that other migrations added before this one come along as they are.

The rows are moved in the same transaction: the old table is locked (ACCESS EXCLUSIVE) from
the first statement to the commit, so devices' polls and reports wait for the whole
migration. docs/retention.md gives the measured time per million rows; plan a maintenance
window for a big table. A command of an operation gets its operation's ``created_at`` as
``created_on`` (what the fan-out now writes), so one operation's commands share one partition.

Not reversible: going back means copying every row again into a plain table.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import django.db.models.deletion
from django.db import migrations, models

WEEK = dt.timedelta(days=7)
#: Weeks of partitions made ahead at migrate time; the ``make-partitions`` beat task keeps
#: COMMAND_PARTITIONS_AHEAD weeks ahead from then on (commands.partitions).
AHEAD_WEEKS = 4


def week_start(moment: dt.datetime) -> dt.datetime:
    day = moment.astimezone(dt.UTC).date()
    return dt.datetime.combine(day - dt.timedelta(days=day.weekday()), dt.time(), dt.UTC)


def _with_key(columns_sql: str, key: str) -> str:
    """``UNIQUE (a, b)`` or ``... USING btree (a, b) WHERE ...`` with ``key`` added to the
    first column list."""
    match = re.search(r"\(([^()]*)\)", columns_sql)
    if match is None:
        raise RuntimeError(f"cannot add the partition key to: {columns_sql}")
    columns = [column.strip() for column in match.group(1).split(",")]
    if key in columns:
        return columns_sql
    return f"{columns_sql[: match.start()]}({', '.join([*columns, key])}){columns_sql[match.end() :]}"


def partition(cursor: Any, table: str, key: str, key_sql: str, join_sql: str = "") -> None:
    """Replace ``table`` by a table partitioned by range of ``key``, with the same rows.

    ``key_sql`` is the key's value for a row of the old table (aliased ``t``), e.g. the
    operation's creation time read through ``join_sql``.
    """
    old = f"{table}_unpartitioned"
    cursor.execute(
        "SELECT conname, conrelid::regclass::text FROM pg_constraint WHERE confrelid = %s::regclass",
        [table],
    )
    referencing = cursor.fetchall()
    if referencing:
        raise RuntimeError(f"foreign keys point at {table}; drop them first: {referencing}")
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(
        """
        SELECT pg_get_indexdef(i.indexrelid), c.conname, c.contype, pg_get_constraintdef(c.oid)
        FROM pg_index i
        LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
        WHERE i.indrelid = %s::regclass
        """,
        [table],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        [table],
    )
    columns = [row[0] for row in cursor.fetchall()]
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    sequence = cursor.fetchone()[0]
    last_id = 0
    if sequence:
        cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {sequence}")
        last_id = int(cursor.fetchone()[0])

    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f"INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ({key})"
    )
    cursor.execute(f"SELECT min({key_sql}), max({key_sql}), max(t.id) FROM {old} t {join_sql}")
    low, high, max_id = cursor.fetchone()
    now = dt.datetime.now(dt.UTC)
    start = week_start(low or now)
    end = week_start(max(high or now, now)) + AHEAD_WEEKS * WEEK
    while start <= end:
        name = f"{table}_p{start:%Y%m%d}"
        cursor.execute(
            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)", [start, start + WEEK]
        )
        start += WEEK
    cursor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")

    selected = ", ".join(key_sql if column == key else f"t.{column}" for column in columns)
    cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {selected} FROM {old} t {join_sql}")
    cursor.execute(f"DROP TABLE {old}")  # and its identity sequence

    # PostgreSQL 15 has no identity columns on partitioned tables: a sequence owned by the
    # column, which Django's sequence resets find (pg_get_serial_sequence) as they found the
    # identity.
    cursor.execute(f"CREATE SEQUENCE {table}_id_seq OWNED BY {table}.id")
    cursor.execute("SELECT setval(%s, %s, %s)", [f"{table}_id_seq", max(last_id, max_id or 0, 1), bool(last_id or max_id)])
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")

    for indexdef, conname, contype, condef in indexes:
        if contype == "p":
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {conname} {_with_key(condef, key)}")
        elif contype == "u":
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {conname} {_with_key(condef, key)}")
        elif contype is None:
            cursor.execute(_with_key(indexdef, key) if indexdef.startswith("CREATE UNIQUE") else indexdef)
        else:
            raise RuntimeError(f"cannot rebuild {conname} ({contype}) of {table}")
    cursor.execute(f"ANALYZE {table}")


def forward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        partition(
            cursor,
            "commands_commandstatus",
            "created_on",
            "COALESCE(o.created_at, t.created_on)",
            "LEFT JOIN operations_operation o ON o.id = t.operation_id",
        )
        partition(cursor, "commands_commandhistory", "created_at", "t.created_at")


class Migration(migrations.Migration):
    dependencies = [
        ("commands", "0006_operation_id_index"),
        ("inventory", "0008_headless_moves_to_operations"),
        ("operations", "0006_headless_command_without_constraint"),
    ]

    operations = [
        migrations.AlterField(
            model_name="commandhistory",
            name="command",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="history",
                to="commands.commandstatus",
            ),
        ),
        # The database's constraint is rebuilt with the key by ``partition``; only the
        # model's state changes here.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="commandstatus",
                    name="commands_commandstatus_unique_operation_device",
                ),
                migrations.AddConstraint(
                    model_name="commandstatus",
                    constraint=models.UniqueConstraint(
                        fields=("operation", "device", "created_on"),
                        name="commands_commandstatus_unique_operation_device",
                    ),
                ),
            ]
        ),
        migrations.RunPython(forward, elidable=False),
    ]
