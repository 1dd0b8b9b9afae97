"""What a fan-out's rows cost with their indexes kept up row by row, against the same rows
written into a table without indexes and the indexes built after (issue 28: the design that
would close the fan-out's gap to its goal).

    .venv/bin/python bench/index_build.py [--rows 1000000] [--rounds 2]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_fanout]

Plain SQL on scratch tables shaped like the command table (``LIKE commands_commandstatus``
of a migrated database is not needed: the columns a fan-out writes are written here with the
same types and widths), in one session, each variant in its own transaction committed:

- **row by row**: the six indexes a Queued command enters (primary key, unique (operation,
  device), (tenant, id), (device, id), (operation, id) INCLUDE tenant, the inbox's partial
  one), then ``INSERT ... SELECT`` of ``--rows`` rows;
- **built after**: the same ``INSERT ... SELECT`` into the table without indexes, then the
  six indexes made (a sorted bulk build each).

The database is created if missing and the scratch tables dropped at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.support import Database, machine

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_fanout"

TABLE = """
    CREATE TABLE {name} (
        id bigint NOT NULL, tenant_id bigint NOT NULL, operation_id uuid, request_ref varchar(64) NOT NULL,
        device_id bigint NOT NULL, command varchar(64) NOT NULL, arguments jsonb NOT NULL,
        state smallint NOT NULL, reason text NOT NULL, details jsonb, is_internal boolean NOT NULL,
        priority smallint NOT NULL, not_before timestamptz, window_closes_at timestamptz,
        deadline timestamptz, dispatched_at timestamptz, delivered_at timestamptz,
        delivery_count smallint NOT NULL, wave smallint NOT NULL DEFAULT 1,
        attempt smallint NOT NULL DEFAULT 1, max_attempts_on_failure smallint NOT NULL DEFAULT 1,
        max_attempts_on_timeout smallint NOT NULL DEFAULT 1, progress_timeout integer,
        progress_deadline timestamptz, version integer NOT NULL, created_on timestamptz NOT NULL,
        updated_on timestamptz NOT NULL
    )
"""
INDEXES = [
    "ALTER TABLE {name} ADD PRIMARY KEY (id, created_on)",
    "ALTER TABLE {name} ADD UNIQUE (operation_id, device_id, created_on)",
    "CREATE INDEX ON {name} (tenant_id, id)",
    "CREATE INDEX ON {name} (device_id, id)",
    "CREATE INDEX ON {name} (operation_id, id) INCLUDE (tenant_id)",
    "CREATE INDEX ON {name} (device_id, priority DESC, id) WHERE state = 1",
]
ROWS = """
    INSERT INTO {name} (id, tenant_id, operation_id, request_ref, device_id, command, arguments, state,
        reason, is_internal, priority, dispatched_at, delivery_count, version, created_on, updated_on)
    SELECT d, 1, %(operation)s, '', d, 'REBOOT', '{{"reason": "bench"}}'::jsonb, 1, '', false, 2, now(), 0, 1,
        %(created)s, now()
    FROM generate_series(1, %(rows)s) AS d
"""


def timed(conn: psycopg.Connection, statements: list[tuple[str, dict[str, object] | None]]) -> float:
    start = time.perf_counter()
    with conn.transaction():
        for sql, params in statements:
            conn.execute(sql, params)  # type: ignore[arg-type]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    options = parser.parse_args()
    db = Database(options.database_url)
    with psycopg.connect(db.admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db.name]).fetchone():
            admin.execute(f'CREATE DATABASE "{db.name}"')
    print(f"machine: {machine(db.admin_url)}")
    params = {
        "operation": "5b1f3c3e-0000-4000-8000-000000000001",
        "created": "2026-12-07",
        "rows": options.rows,
    }
    with db.connect() as conn:
        for round_ in range(options.rounds):
            for variant in ("row by row", "built after"):
                name = "bench_index_build"
                conn.execute(f"DROP TABLE IF EXISTS {name}")
                conn.execute(TABLE.format(name=name))
                indexes: list[tuple[str, dict[str, object] | None]] = [
                    (sql.format(name=name), None) for sql in INDEXES
                ]
                insert: list[tuple[str, dict[str, object] | None]] = [(ROWS.format(name=name), params)]
                if variant == "row by row":
                    timed(conn, indexes)
                    elapsed = timed(conn, insert)
                    print(f"round {round_ + 1}, {variant}: INSERT {elapsed:.2f} s")
                else:
                    written = timed(conn, insert)
                    built = timed(conn, indexes)
                    print(
                        f"round {round_ + 1}, {variant}: INSERT {written:.2f} s + indexes {built:.2f} s"
                        f" = {written + built:.2f} s"
                    )
                conn.execute(f"DROP TABLE {name}")


if __name__ == "__main__":
    main()
