"""The capacity benchmark: a command table of OPERATIONS x DEVICES rows (20 x 1,000,000 by
default), and what the hot paths, the operation's page, the device's list and retention cost
at that size (docs/scaling.md).

    flock /tmp/bench.lock .venv/bin/python bench/capacity.py [--operations 20] [--devices 1000000]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_capacity]
        [--redis-url redis://127.0.0.1:6379/14] [--samples 200] [--keep] [--output FILE]
        [--retention-only | --hot-only [--label NAME]]

The code measured is the checkout the script is in. To measure an older commit ("before"),
copy this file into that checkout's bench/ and run it there with its own database: it only
calls functions both have (``commands.rows.write`` and ``fan_out``, the HTTP views)
and uses ``commands.partitions`` when the checkout has it.

The build (its time is printed, not a result): a tenant with DEVICES devices (one ``INSERT ...
SELECT generate_series``), then OPERATIONS operations on every device, one per week back
from now (so that with partitions each has its own week). The first, the newest, is fanned
out for real (``fan_out``: Queued, DISPATCHED): the live one devices poll. The older ones are
finished: their commands are written Command Success by the fan-out's own INSERT ... SELECT,
with one history row each (the final report; a real command has four), and their operation
row is SUCCESS.

Measured twice, with the live operation alone (DEVICES rows) and with all of them, in this
process through Django's test client (the whole view stack, real PostgreSQL and Redis, no
HTTP socket), one request at a time, on devices picked at random (each once):

- the ceilings of the same run: ``GET /`` (the health answer, the project's middleware and
  nothing else) and ``SELECT 1`` on the same connection,
- the inbox hand-out (a poll that hands out the device's queued command),
- the status PUT (Command Acknowledged),
- the 304 poll (If-None-Match of the empty answer that follows),
- a device's command list (``GET /commands/v0/status/?device=``: one command per operation),
- GET of the newest operation and of the oldest one, with their stats;

then, at the full size, table and index sizes, and retention of the oldest operation:
dropping its week's partitions (when partitioned) against deleting its rows and their
history in batches of RETENTION_BATCH (5,000) (the second oldest is the one deleted by rows
when partitioned).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import LOAD_DEVICES
from bench.support import Database, machine, percentile, project_env

RETENTION_BATCH = 5000


def ms(values: list[float]) -> dict[str, float]:
    scaled = [v * 1000 for v in values]
    return {
        "median_ms": round(statistics.median(scaled), 2),
        "p95_ms": round(percentile(scaled, 0.95), 2),
        "max_ms": round(max(scaled), 2),
        "n": len(scaled),
    }


class Capacity:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.project = Path(__file__).resolve().parent.parent
        self.db = Database(options.database_url)
        self.env = project_env(
            options.database_url,
            options.redis_url,
            RATE_LIMIT_KEY_PER_MINUTE="0",
            RATE_LIMIT_DEVICE_PER_MINUTE="0",
        )
        self.results: dict[str, Any] = {"project": str(self.project), "options": vars(options)}

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.db.connect() as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    # --- build ----------------------------------------------------------------------------------

    def setup(self) -> None:
        if not (self.options.retention_only or self.options.hot_only):
            self.build_database()
        key = self.manage("create_api_key", "--tenant", "bench", "--role", "admin").strip().splitlines()[-1]
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
        os.environ.update(self.env)
        import django

        django.setup()
        from django.test import Client

        self.client = Client()
        from inventory.models import Tenant

        self.tenant = Tenant.objects.get(slug="bench")

    def build_database(self) -> None:
        self.db.recreate()
        redis.Redis.from_url(self.options.redis_url).flushdb()
        started = time.perf_counter()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("create_tenant", "bench")
        tenant = self.sql("SELECT id FROM inventory_tenant WHERE slug = 'bench'")[0][0]
        self.sql(LOAD_DEVICES, {"tenant": tenant, "count": self.options.devices})
        self.sql("VACUUM ANALYZE inventory_device")
        took = time.perf_counter() - started
        print(f"migrated and loaded {self.options.devices:,} devices in {took:.0f} s")

    def build(self, upto: int) -> None:
        """Operations up to ``upto`` (the first is the live one), one week apart, newest first."""
        from django.db import connection
        from django.utils import timezone

        from commands import rows
        from commands.choices import CommandState
        from inventory.models import Device
        from operations.choices import OperationState
        from operations.fanout import commands_of, fan_out
        from operations.models import Operation
        from operations.services import create_operation

        try:
            from commands import partitions
        except ImportError:
            partitions = None  # type: ignore[assignment]
        self.results["partitioned"] = partitions is not None
        existing = Operation.objects.count()
        if not hasattr(self, "now"):
            self.now = timezone.now()
        devices = Device.objects.filter(tenant=self.tenant)
        timings = self.results.setdefault("build_seconds_per_operation", [])
        for index in range(existing, upto):
            created = self.now - dt.timedelta(weeks=index)
            started = time.perf_counter()
            operation = create_operation(
                self.tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}, "bench"
            )
            Operation.objects.filter(pk=operation.pk).update(created_at=created)
            operation.refresh_from_db()
            if partitions is not None:
                partitions.make_ahead(created, weeks=0)
            if index == 0:
                fan_out(operation.pk)  # the live one, the real way
            else:
                done = replace(
                    commands_of(operation, None), state=CommandState.SUCCESS, dispatched_at=created
                )
                written = rows.write(devices, done)
                with connection.cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO commands_commandhistory (command_id, from_state, to_state, reason, "
                        "actor, created_at) SELECT id, 4, 6, '', 'bench', %s FROM commands_commandstatus "
                        "WHERE operation_id = %s",
                        [created + dt.timedelta(hours=1), operation.pk],
                    )
                Operation.objects.filter(pk=operation.pk).update(
                    state=OperationState.SUCCESS,
                    resolved_count=written,
                    dispatched_count=written,
                    success_count=written,
                    updated_at=created + dt.timedelta(days=1),
                )
            elapsed = time.perf_counter() - started
            timings.append(round(elapsed, 1))
            print(f"  operation {index + 1}/{upto}: {elapsed:.1f} s", flush=True)
        redis.Redis.from_url(self.options.redis_url).delete("celery")  # fan-out messages nobody runs
        started = time.perf_counter()
        connection.close()
        self.sql("VACUUM ANALYZE commands_commandstatus")
        self.sql("VACUUM ANALYZE commands_commandhistory")
        print(f"  vacuum analyze {time.perf_counter() - started:.0f} s", flush=True)

    # --- measurements ---------------------------------------------------------------------------

    def request(self, method: str, path: str, **extra: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        response = getattr(self.client, method)(path, **self.headers, **extra)
        return response, time.perf_counter() - started

    def hot_paths(self, label: str, picked: list[int]) -> None:
        from django.db import connection

        from operations.models import Operation

        found: dict[str, list[float]] = {
            name: []
            for name in (
                "ceiling_get_root",
                "ceiling_select_1",
                "inbox_hand_out",
                "status_put",
                "inbox_304",
                "device_command_list",
                "get_newest_operation",
                "get_oldest_operation",
            )
        }
        operations = list(Operation.objects.order_by("created_at").values_list("pk", flat=True))
        for position, number in enumerate(picked):
            device_id = f"dev_{number:07d}"  # the n-th device loaded has pk n (a new database)
            response, elapsed = self.request("get", "/")
            assert response.status_code == 200, response.content
            found["ceiling_get_root"].append(elapsed)
            with connection.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute("SELECT 1")
                cursor.fetchone()
                found["ceiling_select_1"].append(time.perf_counter() - started)
            response, elapsed = self.request("get", "/v2/command-inbox/", data={"device_id": device_id})
            assert response.status_code == 200, response.content
            results = response.json()["content"]["results"]
            assert len(results) == 1, results
            found["inbox_hand_out"].append(elapsed)
            response, elapsed = self.request(
                "put",
                f"/commands/v0/status/{results[0]['id']}/",
                data=json.dumps({"state": "Command Acknowledged"}),
                content_type="application/json",
            )
            assert response.status_code == 200, response.content
            found["status_put"].append(elapsed)
            empty, _ = self.request("get", "/v2/command-inbox/", data={"device_id": device_id})
            assert empty.status_code == 200 and not empty.json()["content"]["results"]
            response, elapsed = self.request(
                "get", "/v2/command-inbox/", data={"device_id": device_id}, HTTP_IF_NONE_MATCH=empty["ETag"]
            )
            assert response.status_code == 304, response.status_code
            found["inbox_304"].append(elapsed)
            response, elapsed = self.request("get", "/commands/v0/status/", data={"device": device_id})
            assert response.status_code == 200, response.content
            found["device_command_list"].append(elapsed)
            if position < 50:
                ends = (("get_newest_operation", operations[-1]), ("get_oldest_operation", operations[0]))
                for name, pk in ends:
                    response, elapsed = self.request("get", f"/v0/operations/{pk}/")
                    assert response.status_code == 200, response.content
                    found[name].append(elapsed)
        self.results.setdefault("hot_paths", {})[label] = {name: ms(values) for name, values in found.items()}
        print(f"  measured at {label}", flush=True)

    def sizes(self) -> None:
        sizes: dict[str, Any] = {}
        for table in ("commands_commandstatus", "commands_commandhistory"):
            rows = self.sql(
                """
                SELECT
                  (SELECT coalesce(sum(pg_table_size(relid)), 0) FROM pg_partition_tree(%(t)s::regclass))
                    + pg_table_size(%(t)s::regclass),
                  (SELECT coalesce(sum(pg_indexes_size(relid)), 0) FROM pg_partition_tree(%(t)s::regclass)
                    WHERE relid <> %(t)s::regclass) + pg_indexes_size(%(t)s::regclass),
                  0
                """,
                {"t": table},
            )
            heap, indexes, _ = rows[0]
            count = self.sql(f"SELECT count(*) FROM {table}")[0][0]
            per_index = self.sql(
                """
                SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
                FROM pg_index i WHERE i.indrelid = %(t)s::regclass
                """,
                {"t": table},
            )
            by_index = {}
            for name, size in per_index:  # a partitioned table's index: the sum of its partitions'
                tree = self.sql(
                    "SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM pg_partition_tree(%s::regclass)",
                    [name],
                )
                by_index[name] = int(tree[0][0]) or int(size)
            sizes[table] = {
                "rows": int(count),
                "table_bytes": int(heap),
                "index_bytes": int(indexes),
                "bytes_per_million_rows": int((heap + indexes) / max(count, 1) * 1_000_000),
                "indexes": by_index,
            }
        self.results["sizes"] = sizes

    def retention(self) -> None:
        from django.db import connection

        from operations.models import Operation

        oldest, second = list(Operation.objects.order_by("created_at")[:2])
        result: dict[str, Any] = {"operations_before": Operation.objects.count()}
        try:
            from commands import partitions
        except ImportError:
            partitions = None  # type: ignore[assignment]
        self.results["partitioned"] = partitions is not None
        if partitions is not None:
            from commands.models import CommandHistory, CommandStatus

            week = partitions.week_start(oldest.created_at)
            week_of_commands = next(p for p in partitions.partitions(CommandStatus) if p.start == week)
            week_of_history = next(p for p in partitions.partitions(CommandHistory) if p.start == week)
            started = time.perf_counter()
            assert partitions.drop(CommandStatus, week_of_commands)
            assert partitions.drop(CommandHistory, week_of_history)
            result["partition_drop_seconds"] = round(time.perf_counter() - started, 3)
            Operation.objects.filter(pk=oldest.pk).delete()
            target = second
        else:
            target = oldest
        batches = []
        started = time.perf_counter()
        connection.close()
        while partitions is not None:  # the project's own batched delete
            from commands.models import CommandStatus

            begun = time.perf_counter()
            deleted = partitions.delete_commands(
                CommandStatus.objects.filter(operation_id=target.pk), RETENTION_BATCH
            )
            batches.append(time.perf_counter() - begun)
            if deleted < RETENTION_BATCH:
                break
        while partitions is None:  # what a retention would run on the unpartitioned table
            begun = time.perf_counter()
            rows = self.sql(
                """
                WITH gone AS (
                    DELETE FROM commands_commandstatus WHERE id IN (
                        SELECT id FROM commands_commandstatus WHERE operation_id = %s LIMIT %s
                        FOR UPDATE SKIP LOCKED)
                    RETURNING id
                ), history AS (
                    DELETE FROM commands_commandhistory h USING gone WHERE h.command_id = gone.id
                )
                SELECT count(*) FROM gone
                """,
                [target.pk, RETENTION_BATCH],
            )
            batches.append(time.perf_counter() - begun)
            if rows[0][0] < RETENTION_BATCH:
                break
        result["row_delete_seconds"] = round(time.perf_counter() - started, 1)
        result["row_delete_batch"] = ms(batches)
        self.results["retention"] = result

    def run(self) -> None:
        self.setup()
        self.results["machine_before"] = machine(self.db.admin_url)
        if self.options.hot_only:
            # Devices not handed out yet (each measurement hands out one command per device).
            from commands.models import CommandStatus

            queued = CommandStatus.objects.filter(state=1).values_list("device_id", flat=True)
            rng = random.Random()
            picked = [int(pk) for pk in queued.order_by("?")[: self.options.samples]] if rng else []
            self.hot_paths(self.options.label or "hot paths", picked)
            self.results["machine_after"] = machine(self.db.admin_url)
            print(json.dumps(self.results, indent=2, default=str))
            if self.options.output:
                Path(self.options.output).write_text(json.dumps(self.results, indent=2, default=str))
            return
        if self.options.retention_only:
            self.retention()
            self.results["machine_after"] = machine(self.db.admin_url)
            print(json.dumps(self.results, indent=2, default=str))
            if self.options.output:
                Path(self.options.output).write_text(json.dumps(self.results, indent=2, default=str))
            return
        samples = self.options.samples
        picked = random.Random(17).sample(range(1, self.options.devices + 1), 2 * samples)
        self.build(1)
        self.hot_paths(f"{self.options.devices:,} rows", picked[:samples])
        self.build(self.options.operations)
        self.hot_paths(f"{self.options.devices * self.options.operations:,} rows", picked[samples:])
        self.sizes()
        self.retention()
        self.results["machine_after"] = machine(self.db.admin_url)
        text = json.dumps(self.results, indent=2, default=str)
        print(text)
        if self.options.output:
            Path(self.options.output).write_text(text)
        if not self.options.keep:
            from django.db import connection

            connection.close()
            self.db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=20)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_capacity")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--hot-only",
        action="store_true",
        help="on a database kept by an earlier run: measure the hot paths only, on devices still queued",
    )
    parser.add_argument("--label", default="", help="the name of a --hot-only measurement")
    parser.add_argument(
        "--retention-only",
        action="store_true",
        help="on a database kept by an earlier run: measure retention only (the oldest two operations)",
    )
    parser.add_argument("--output", help="also write the results as JSON here")
    Capacity(parser.parse_args()).run()


if __name__ == "__main__":
    main()
