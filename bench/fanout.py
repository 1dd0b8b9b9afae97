"""Benchmark of an operation's fan-out on PostgreSQL, for fleets of N devices.

    .venv/bin/python bench/fanout.py [--devices 10000 100000 1000000] [--runs 3]
        [--creates 20] [--gets 50] [--chunk-size N] [--explain] [--skip-worker]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_fanout]
        [--redis-url redis://127.0.0.1:6379/9] [--keep]

For each N it loads N active devices into a tenant with one ``INSERT ... SELECT
generate_series`` (the load is not measured), serves the project with gunicorn
(``config.wsgi``, 2 sync workers) and measures, with ``{"all": true}`` REBOOT operations:

(a) ``POST /v0/operations/`` over real HTTP (``requests``, loopback), with no Celery worker
    running, so nothing competes for the CPU: the answer is 201 CREATED at once; the
    fan-out message waits in Redis and is purged afterwards.
(b) create -> DISPATCHED wall time, two ways:
    - in-process: ``operations.fanout.fan_out(op_id)`` called directly in this process
      (``--chunk-size`` sets the setting ``FANOUT_CHUNK_SIZE`` here, and
      ``FANOUT_CHUNK_SIZE`` in the worker's environment);
    - first after worker start: a new ``celery -A config worker -c 1`` for each run, the
      POST sent as soon as it logged "ready"; its first operation pays for whatever the
      worker does lazily (imports, connections, the first statements);
    - worker: a real ``celery -A config worker -c 1``, warmed up by one operation that is
      not counted; the clock starts before the POST
      is sent and stops when this script, polling the operation row every 5 ms, sees
      DISPATCHED. This is the honest end-to-end figure. The activity log's timestamps
      split it into queue pick-up, resolve (the INSERT ... SELECT chunks) and dispatch.
    Rows/s = command statuses written / wall time. The command table is emptied
    (TRUNCATE) before each run, so every run writes into the same, empty table.
(c) ``GET /v0/operations/{id}/`` of the dispatched operation (with its stats), over HTTP.

``--index-costs`` measures, for the largest N, what each index a fan-out writes costs it: the
in-process ``fan_out()`` with the table as migrated, then with each index dropped in turn (on
the partitioned table, so from every partition; made again, on the emptied table, after its
run), ``--runs`` rounds, the variants alternated within each round so that the machine's
drift hits them alike. The partial indexes a Queued command does not enter (the sweeps') are
not written by an immediate fan-out and are not measured.

``--explain`` runs, for the largest N, EXPLAIN (ANALYZE, BUFFERS, WAL) of one chunk's
INSERT ... SELECT with the table's indexes as they are, and again with every index but
the primary key and the unique (operation, device) one dropped (inside a transaction that
is rolled back), to show what index maintenance costs.

``--pgbench-seconds`` (10; 0 for none): ``pgbench -N -c2 -j2`` on a scratch database of the
same server before each N, the write ceiling the figures stand beside.

The database and Redis DB are created/emptied at the start and dropped/flushed at the end
(``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import (
    Database,
    free_port,
    machine,
    manage,
    percentile,
    pgbench_tps,
    project_env,
    start_gunicorn,
    start_worker,
    stop,
    summary_ms,
)

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_fanout"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
DISPATCHED, FAILURE, SCHEDULED = 50, 90, 100
BODY = {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "arguments": {"reason": "bench"}}
STEP_NAMES = {10: "CREATED", 20: "RESOLVING", 30: "RESOLVED", 40: "DISPATCHING", 50: "DISPATCHED"}

LOAD_DEVICES = """
    INSERT INTO inventory_device (tenant_id, device_id, name, serial, model, os, os_version, state,
        timezone, tags, token_prefix, token_hash, token_revoked, last_seen, created_at, updated_at)
    SELECT %(tenant)s, 'dev_' || lpad(i::text, 7, '0'), 'Device ' || i, 'SN' || lpad(i::text, 10, '0'),
        'Model ' || (i %% 17), (ARRAY['android', 'ios', 'windows', 'linux'])[1 + i %% 4],
        (10 + i %% 5)::text, 'active', 'UTC', '["bench"]'::jsonb, lpad(to_hex(i), 16, '0'),
        md5(i::text) || md5(i::text), false, NULL, now(), now()
    FROM generate_series(1, %(count)s) AS i
"""


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.db = Database(options.database_url)
        self.redis_url = options.redis_url
        self.env = project_env(self.db.url, self.redis_url)
        self.work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.session = requests.Session()
        self.tenant_id = 0
        self.results: list[dict[str, Any]] = []

    # --- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        self.db.recreate()
        redis.Redis.from_url(self.redis_url).flushdb()
        manage(self.env, "migrate", "--noinput", "-v0")
        manage(self.env, "create_tenant", "bench")
        key = (
            manage(self.env, "create_api_key", "--tenant", "bench", "--role", "admin")
            .strip()
            .splitlines()[-1]
        )
        self.session.headers["Authorization"] = f"Bearer {key}"
        with self.db.connect() as conn:
            row = conn.execute("SELECT id FROM inventory_tenant WHERE slug = 'bench'").fetchone()
            assert row is not None
            self.tenant_id = int(row[0])
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.server = start_gunicorn(self.env, port, ["-w", "2"], self.work / "gunicorn.log")
        # In-process Django for the direct fan_out() calls and --explain.
        os.environ.update(self.env)
        import django

        django.setup()

    def teardown(self) -> None:
        stop(self.worker)
        stop(self.server)
        if not self.options.keep:
            self.db.drop()
            redis.Redis.from_url(self.redis_url).flushdb()

    def purge_queue(self) -> None:
        redis.Redis.from_url(self.redis_url).delete("celery")

    def sql(self, statement: str, params: dict[str, Any] | None = None) -> None:
        with self.db.connect() as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def empty_operations(self) -> None:
        from django.db import connection

        connection.close()  # TRUNCATE waits for no idle session of ours
        self.sql("TRUNCATE operations_operation, commands_commandstatus CASCADE")
        self.sql("VACUUM ANALYZE commands_commandstatus")

    def load_devices(self, count: int) -> None:
        self.sql("TRUNCATE inventory_device CASCADE")
        start = time.perf_counter()
        self.sql(LOAD_DEVICES, {"tenant": self.tenant_id, "count": count})
        self.sql("VACUUM ANALYZE inventory_device")
        print(f"  loaded {count:,} devices in {time.perf_counter() - start:.1f} s (not measured)")

    # --- measurements -----------------------------------------------------------------------

    def create(self) -> tuple[str, float]:
        start = time.perf_counter()
        response = self.session.post(f"{self.base}/v0/operations/", json=BODY, timeout=60)
        elapsed = time.perf_counter() - start
        if response.status_code != 201:
            raise SystemExit(f"create answered {response.status_code}: {response.text[:500]}")
        content = response.json()["content"]
        assert content["state"] == "CREATED", content["state"]
        return content["id"], elapsed

    def measure_create(self, count: int) -> list[float]:
        for _ in range(4):  # warm-up: both gunicorn workers, their connections and imports
            self.create()
        times = [self.create()[1] for _ in range(self.options.creates)]
        self.purge_queue()
        self.empty_operations()
        print(f"  (a) POST /v0/operations/: {summary_ms(times)}")
        return times

    def steps(self, operation_id: str) -> dict[int, float]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT state, extract(epoch FROM created_at) FROM operations_operationactivity "
                "WHERE operation_id = %s ORDER BY id",
                [operation_id],
            ).fetchall()
        return {int(state): float(at) for state, at in rows}

    def resolved(self, operation_id: str) -> tuple[int, int]:
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT state, resolved_count FROM operations_operation WHERE id = %s", [operation_id]
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def measure_in_process(self, count: int) -> list[float]:
        from operations import fanout

        if self.options.chunk_size:
            from django.conf import settings

            settings.FANOUT_CHUNK_SIZE = self.options.chunk_size
        times = []
        for run in range(self.options.runs):
            self.empty_operations()
            operation_id, _ = self.create()
            self.purge_queue()
            start = time.perf_counter()
            fanout.fan_out(operation_id)
            elapsed = time.perf_counter() - start
            state, rows = self.resolved(operation_id)
            assert state == DISPATCHED and rows == count, (state, rows)
            times.append(elapsed)
            print(
                f"  (b) in-process fan_out() run {run + 1}: {elapsed:.2f} s, {rows / elapsed:,.0f} rows/s"
                f" (CHUNK_SIZE {fanout.chunk_size():,}); {self.describe_steps(operation_id)}"
            )
        return times

    def describe_steps(self, operation_id: str) -> str:
        steps = self.steps(operation_id)
        parts = []
        previous = steps.get(10)
        for state in (20, 30, 40, 50):
            if state in steps and previous is not None:
                parts.append(f"->{STEP_NAMES[state]} +{(steps[state] - previous) * 1000:.0f} ms")
                previous = steps[state]
        return " ".join(parts)

    def worker_env(self) -> dict[str, str]:
        env = dict(self.env)
        if self.options.chunk_size:  # read by operations.fanout since FANOUT_CHUNK_SIZE exists
            env["FANOUT_CHUNK_SIZE"] = str(self.options.chunk_size)
        return env

    def post_and_wait(self, count: int, label: str) -> tuple[float, str]:
        """POST an operation and poll its row every 5 ms until DISPATCHED; the wall time."""
        with self.db.connect() as conn:
            start = time.perf_counter()
            operation_id, create_time = self.create()
            deadline = start + 600
            while True:
                row = conn.execute(
                    "SELECT state FROM operations_operation WHERE id = %s", [operation_id]
                ).fetchone()
                assert row is not None
                if row[0] >= DISPATCHED:
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit(f"operation {operation_id} still in state {row[0]}")
                time.sleep(0.005)
            elapsed = time.perf_counter() - start
        state, rows = self.resolved(operation_id)
        assert state == DISPATCHED and rows == count, (state, rows)
        print(
            f"  {label}: {elapsed:.2f} s create->DISPATCHED, "
            f"{rows / elapsed:,.0f} rows/s (POST {create_time * 1000:.0f} ms); "
            f"{self.describe_steps(operation_id)}"
        )
        return elapsed, operation_id

    def measure_first(self, count: int) -> list[float]:
        """The first operation a freshly started worker runs: a new ``celery worker`` for each
        run, and the POST sent as soon as it logged "ready" (what an operator sees after a
        deploy or a restart), so its imports, connections and first statements are timed."""
        times = []
        for run in range(self.options.runs):
            self.empty_operations()
            self.worker = start_worker(self.worker_env(), self.work / "worker.log", concurrency=1)
            try:
                elapsed, _ = self.post_and_wait(count, f"(b) first after worker start, run {run + 1}")
            finally:
                stop(self.worker)
                self.worker = None
            times.append(elapsed)
        return times

    def measure_worker(self, count: int) -> tuple[list[float], str]:
        self.empty_operations()
        self.worker = start_worker(self.worker_env(), self.work / "worker.log", concurrency=1)
        times = []
        operation_id = ""
        try:
            self.post_and_wait(count, "(b) worker warm-up (not counted)")
            for run in range(self.options.runs):
                self.empty_operations()
                elapsed, operation_id = self.post_and_wait(count, f"(b) worker run {run + 1}")
                times.append(elapsed)
        finally:
            stop(self.worker)
            self.worker = None
        return times, operation_id

    def measure_get(self, operation_id: str) -> list[float]:
        url = f"{self.base}/v0/operations/{operation_id}/"
        for _ in range(5):
            self.session.get(url, timeout=30)
        times = []
        for _ in range(self.options.gets):
            start = time.perf_counter()
            response = self.session.get(url, timeout=30)
            times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.status_code
        stats = response.json()["content"]["operation_stats"]["device_operation_statuses_count"]
        print(f"  (c) GET /v0/operations/{{id}}/: {summary_ms(times)}; stats {stats}")
        return times

    def explain(self, count: int) -> None:
        from django.db import connection, transaction
        from django.utils import timezone

        from operations import fanout
        from operations.device_query import DeviceQuery
        from operations.models import Operation

        self.empty_operations()
        operation_id, _ = self.create()
        self.purge_queue()
        operation = Operation.objects.get(pk=operation_id)
        devices = DeviceQuery.parse(operation.device_query).queryset(operation.tenant_id)
        chunk = self.options.chunk_size or fanout.chunk_size()
        low = devices.order_by("pk").values_list("pk", flat=True).first()
        assert low is not None
        devices = devices.filter(pk__gte=low, pk__lt=low + chunk)

        def run_explained() -> str:
            plans: list[str] = []

            def wrapper(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
                if sql.lstrip().startswith("INSERT INTO commands_commandstatus"):
                    result = execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + sql, params, many, context)
                    plans.append("\n".join(row[0] for row in context["cursor"].fetchall()))
                    return result
                return execute(sql, params, many, context)

            with connection.execute_wrapper(wrapper):
                base = fanout.commands_of(operation, None)
                fanout._insert(dataclasses.replace(base, dispatched_at=timezone.now()), devices)
            return plans[0]

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'commands_commandstatus' "
                "ORDER BY indexname"
            )
            indexes = {name: definition.split(" USING ", 1)[1] for name, definition in cursor.fetchall()}
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'commands_commandstatus'::regclass "
                "AND contype = 'f' ORDER BY conname"
            )
            foreign_keys = [row[0] for row in cursor.fetchall()]
        print("--- indexes of commands_commandstatus:")
        for name, definition in indexes.items():
            print(f"    {name}: {definition}")
        print(f"--- foreign keys: {', '.join(foreign_keys)}")
        keep = {"commands_commandstatus_pkey", "commands_commandstatus_unique_operation_device"}
        # The single-column indexes Django adds for each ForeignKey; each one is the leading
        # column of a composite index (tenant, id), (device, id) or unique (operation, device).
        single = [
            name
            for name, d in indexes.items()
            if d in ("btree (tenant_id)", "btree (device_id)", "btree (operation_id)")
        ]
        tenant_fk = [name for name in foreign_keys if "tenant" in name]
        variants: list[tuple[str, list[str], list[str]]] = [
            (f"as migrated ({len(indexes)} indexes, {len(foreign_keys)} foreign keys)", [], []),
            *([(f"without the {len(single)} single-column FK indexes", single, [])] if single else []),
            ("without the tenant foreign key", single, tenant_fk),
            ("without any foreign key", single, foreign_keys),
            (
                "floor: primary key and unique (operation, device) only, no foreign key",
                [n for n in indexes if n not in keep],
                foreign_keys,
            ),
        ]
        print(
            f"--- EXPLAIN ANALYZE of one chunk's INSERT ... SELECT ({chunk:,} devices), each in a "
            "transaction rolled back, with SET CONSTRAINTS ALL IMMEDIATE (Django's foreign keys are "
            "DEFERRABLE INITIALLY DEFERRED: their checks run at COMMIT, which a rolled-back EXPLAIN "
            "never reaches; this makes them run, and be timed, in the statement)"
        )
        for number, (label, drop_indexes, drop_fks) in enumerate(variants):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    for name in drop_fks:
                        cursor.execute(f'ALTER TABLE commands_commandstatus DROP CONSTRAINT "{name}"')
                    for name in drop_indexes:
                        cursor.execute(f'DROP INDEX "{name}"')
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                plan = run_explained()
                transaction.set_rollback(True)
            if number == 0:
                print(plan)
            total = next(line for line in plan.splitlines() if line.startswith("Execution Time"))
            triggers = [line.split(": ", 1)[1] for line in plan.splitlines() if line.startswith("Trigger")]
            wal = next(line.strip() for line in plan.splitlines() if line.strip().startswith("WAL"))
            print(f"  {label}: {total}; {wal}; FK triggers: {'; '.join(triggers) or 'none'}")
        self.empty_operations()

    def index_costs(self, count: int) -> None:
        """``fan_out()`` with each index a Queued command enters dropped in turn (see the
        module's docstring); prints each variant's times and its difference to the baseline."""
        from operations import fanout

        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname",
                ["commands_commandstatus"],
            ).fetchall()
            unique = conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'commands_commandstatus'::regclass AND contype = 'u'"
            ).fetchall()
        # A partitioned index's definition reads ``ON ONLY``: made so it would have no partitions.
        definitions = {name: sql.replace(" ON ONLY ", " ON ") for name, sql in rows}
        written = ["commands_tenant_id", "commands_device_id", "commands_operation_id", "commands_inbox"]
        variants: list[tuple[str, list[str], list[str]]] = [("as migrated", [], [])]
        variants += [(f"without {name}", [f"DROP INDEX {name}"], [definitions[name]]) for name in written]
        for name, definition in unique:
            variants.append(
                (
                    f"without the unique {name} (exactly-once: not droppable)",
                    [f"ALTER TABLE commands_commandstatus DROP CONSTRAINT {name}"],
                    [f"ALTER TABLE commands_commandstatus ADD CONSTRAINT {name} {definition}"],
                )
            )
        times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        for round_ in range(self.options.runs):
            for label, drop, restore in variants:
                self.empty_operations()
                operation_id, _ = self.create()
                self.purge_queue()
                for statement in drop:
                    self.sql(statement)
                try:
                    start = time.perf_counter()
                    fanout.fan_out(operation_id)
                    elapsed = time.perf_counter() - start
                    state, rows_written = self.resolved(operation_id)
                    assert state == DISPATCHED and rows_written == count, (state, rows_written)
                finally:
                    self.empty_operations()
                    for statement in restore:
                        self.sql(statement)
                times[label].append(elapsed)
                print(f"  index cost, round {round_ + 1}, {label}: {elapsed:.2f} s")
        base = statistics.median(times["as migrated"])
        print(f"\n--- fan_out() of {count:,} devices, each index a Queued command enters dropped in turn")
        print("| variant | runs | median | against as migrated |")
        print("|---|---|---:|---:|")
        for label, values in times.items():
            median = statistics.median(values)
            runs = ", ".join(f"{v:.2f}" for v in values)
            change = median - base
            print(f"| {label} | {runs} s | {median:.2f} s | {change:+.2f} s ({change / base:+.0%}) |")

    # --- the whole run ----------------------------------------------------------------------

    def run(self) -> None:
        print(f"machine: {machine(self.db.admin_url)}")
        print(f"database {self.db.url}, redis {self.redis_url}, logs in {self.work}")
        try:
            self.setup()
            for count in self.options.devices:
                print(f"\nN = {count:,} devices")
                self.load_devices(count)
                self.empty_operations()
                result: dict[str, Any] = {"devices": count}
                if self.options.pgbench_seconds:
                    # The ceiling beside the figures: two writers, as two chunks at a time.
                    tps = pgbench_tps(self.db, self.options.pgbench_seconds, clients=2, threads=2)
                    print(f"  ceiling: pgbench -N -c2 -j2 {tps:,.0f} tps ({os.getloadavg()[0]:.2f} load)")
                result["create"] = self.measure_create(count)
                if not self.options.skip_in_process:
                    result["in_process"] = self.measure_in_process(count)
                operation_id = ""
                if not self.options.skip_worker:
                    result["first"] = self.measure_first(count)
                    result["worker"], operation_id = self.measure_worker(count)
                else:
                    operation_id, _ = self.create()
                    self.purge_queue()
                    from operations import fanout

                    fanout.fan_out(operation_id)
                result["get"] = self.measure_get(operation_id)
                self.results.append(result)
                if self.options.index_costs and count == max(self.options.devices):
                    self.index_costs(count)
                if self.options.explain and count == max(self.options.devices):
                    self.explain(count)
            self.table()
        finally:
            self.teardown()

    def table(self) -> None:
        print(
            "\n| devices | POST create median / p95 | fan_out() in-process (best, median) "
            "| first after worker start (best, worst) "
            "| create -> DISPATCHED, worker (best, median) | rows/s (worker, best) "
            "| GET median / p95 |"
        )
        print("|---:|---|---|---|---|---:|---|")
        for r in self.results:
            n = r["devices"]

            def spread(times: list[float] | None, n: int = n) -> str:
                if not times:
                    return "-"
                best = min(times)
                return f"{best:.2f} s, {statistics.median(times):.2f} s ({n / best:,.0f} rows/s)"

            create = r["create"]
            get = r["get"]
            worker = r.get("worker")
            first = f"{min(r['first']):.2f} s, {max(r['first']):.2f} s" if r.get("first") else "-"
            print(
                f"| {n:,} | {statistics.median(create) * 1000:.1f} / "
                f"{percentile(create, 0.95) * 1000:.1f} ms "
                f"| {spread(r.get('in_process'))} "
                f"| {first} "
                f"| {spread(worker)} "
                f"| {f'{n / min(worker):,.0f}' if worker else '-'} "
                f"| {statistics.median(get) * 1000:.1f} / {percentile(get, 0.95) * 1000:.1f} ms |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3, help="fan-outs per N and per way (default 3)")
    parser.add_argument("--creates", type=int, default=20)
    parser.add_argument("--gets", type=int, default=50)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=0,
        help="FANOUT_CHUNK_SIZE: the setting in-process, the environment variable in the worker's",
    )
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--pgbench-seconds", type=float, default=10, help="pgbench -N -c2 -j2 before each N (0: none)"
    )
    parser.add_argument("--index-costs", action="store_true", help="fan_out() without each index in turn")
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--keep", action="store_true", help="keep the database and Redis DB")
    options = parser.parse_args()
    options.devices = sorted(options.devices)
    Bench(options).run()


if __name__ == "__main__":
    main()
