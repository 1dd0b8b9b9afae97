"""The partial index of the window's close (``commands_window_closes``, issue 28): queued
commands with a ``window_closes_at``, for ``operations.sweeps.close_windows``.

Built without locking out the devices' polls and reports on a big table. PostgreSQL 15 cannot
``CREATE INDEX CONCURRENTLY`` on a partitioned table, so it is made the way its manual says:
the parent's index ``ON ONLY`` the parent (invalid, and no work), each partition's own index
``CONCURRENTLY``, each attached to the parent's, which is valid once every partition has
one. Partitions made later (``commands.partitions.make_ahead``) get theirs from the parent.
A migration run that dies half way is run again: every step is ``IF NOT EXISTS`` or checked.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

TABLE = "commands_commandstatus"
NAME = "commands_window_closes"
#: Queued (1) with a close: the model's condition.
DEFINITION = '("window_closes_at") WHERE ("state" = 1 AND "window_closes_at" IS NOT NULL)'


def forward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON ONLY {TABLE} {DEFINITION}")
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [TABLE],
        )
        for (partition,) in cursor.fetchall():
            index = f"{partition}_window_closes"
            cursor.execute(
                "SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass AND c.relname = %s",
                [NAME, index],
            )
            if cursor.fetchone():
                continue  # attached by a run that died later
            # An invalid index left by a concurrent build that died is made again.
            cursor.execute(
                "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) AND NOT indisvalid", [index]
            )
            if cursor.fetchone():
                cursor.execute(f"DROP INDEX CONCURRENTLY {index}")
            cursor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {partition} {DEFINITION}")
            cursor.execute(f"ALTER INDEX {NAME} ATTACH PARTITION {index}")


def backward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("commands", "0008_push_outbox"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="commandstatus",
                    index=models.Index(
                        condition=models.Q(("state", 1), ("window_closes_at__isnull", False)),
                        fields=["window_closes_at"],
                        name="commands_window_closes",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        ),
    ]
