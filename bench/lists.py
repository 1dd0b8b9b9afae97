"""Benchmark of lists over millions of command statuses, and of cancelling a million-device
operation (issue 17), black box through gunicorn as production runs it.

    .venv/bin/python bench/lists.py [--devices 1000000] [--operations 1 10] [--runs 20]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_lists]
        [--redis-url redis://127.0.0.1:6379/13] [--keep]

For each entry of ``--operations`` (K): N devices (loaded with one INSERT ... SELECT, not
measured) and K fan-outs of an ``{"all": true}`` operation to all of them (``fan_out``
called in this process, as the worker would run it: N x K command statuses). Right after
the last fan-out, with ``gunicorn config.wsgi -w 2 --threads 4`` (``bench.settings``: the
project plus ``/bench/bare/``), each row is requested ``--runs`` times over HTTP, after two
warm-up requests, and its median and p95 are printed beside the ceiling measured in the same
run: ``GET /bench/bare/`` (a Django view answering ``{}`` through the same middleware).

Rows: the command statuses of the last operation (first page, offset 500,000, offset
N - 20, the cursor of the page at N - 20), one device's commands, the devices at offset
N - 20, and the console (superuser session): the device list, the command status list,
the last operation's page.

Then the cancel: a Celery worker (``-c 1``) is started, ``PUT /v0/operations/{id}/``
``CANCELLED`` on the last operation is timed, and the time until its worker has moved every
unfinished command (``commands_stopped_at`` set) is measured; the stored counters are then
compared with a recount from the rows.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import LOAD_DEVICES
from bench.support import (
    Database,
    free_port,
    machine,
    manage,
    percentile,
    project_env,
    start_gunicorn,
    start_worker,
    stop,
)

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_lists"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
BODY = {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "arguments": {"reason": "bench"}}
PASSWORD = "bench-console-pw-0123456789"


def ms(values: list[float]) -> tuple[float, float]:
    ordered = sorted(v * 1000 for v in values)
    return ordered[len(ordered) // 2], percentile(ordered, 0.95)


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.db = Database(options.database_url)
        self.env = project_env(
            self.db.url,
            options.redis_url,
            DJANGO_SETTINGS_MODULE="bench.settings",
            DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        )
        self.work = Path(tempfile.mkdtemp(prefix="bench-lists-"))
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.api = requests.Session()
        self.console = requests.Session()
        self.base = ""
        self.tenant_id = 0
        self.lines: list[str] = []

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.db.connect() as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def setup(self) -> None:
        self.db.recreate()
        manage(self.env, "migrate", "--noinput", "-v0")
        manage(self.env, "create_tenant", "bench")
        key = (
            manage(self.env, "create_api_key", "--tenant", "bench", "--role", "admin")
            .strip()
            .splitlines()[-1]
        )
        self.api.headers["Authorization"] = f"Bearer {key}"
        manage(self.env, "createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")
        self.tenant_id = int(self.sql("SELECT id FROM inventory_tenant WHERE slug = 'bench'")[0][0])
        os.environ.update(self.env)
        import django

        django.setup()

    def start_server(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.server = start_gunicorn(
            self.env, port, ["-w", "2", "--threads", "4"], self.work / "gunicorn.log"
        )
        login = self.console.get(f"{self.base}/admin/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert token is not None, login.text[:300]
        answer = self.console.post(
            f"{self.base}/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": "root",
                "password": PASSWORD,
                "next": "/admin/",
            },
            headers={"Referer": f"{self.base}/admin/login/"},
            timeout=30,
        )
        assert answer.status_code == 200 and "logout" in answer.text.lower(), answer.text[:300]

    def build(self, devices: int, operations: int) -> str:
        """N devices, K fan-outs to all of them; returns the last operation's id."""
        from django.db import connection

        from operations.fanout import fan_out
        from operations.services import create_operation

        connection.close()
        self.sql("TRUNCATE operations_operation, commands_commandstatus, inventory_device CASCADE")
        self.sql(LOAD_DEVICES, {"tenant": self.tenant_id, "count": devices})
        self.sql("VACUUM ANALYZE inventory_device")
        last = ""
        for index in range(operations):
            start = time.perf_counter()
            operation = create_operation(self.tenant_id, BODY, "bench")
            fan_out(operation.pk)
            last = str(operation.pk)
            print(f"  fan-out {index + 1}/{operations}: {time.perf_counter() - start:.1f} s", flush=True)
        connection.close()
        return last

    def timed(
        self, session: requests.Session, path: str, params: dict[str, Any] | None = None
    ) -> list[float]:
        url = f"{self.base}{path}"
        for _ in range(2):
            session.get(url, params=params, timeout=120)
        times = []
        for _ in range(self.options.runs):
            start = time.perf_counter()
            response = session.get(url, params=params, timeout=120)
            times.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise SystemExit(
                    f"GET {path} {params} answered {response.status_code}: {response.text[:300]}"
                )
        return times

    def row(self, name: str, times: list[float], ceiling: list[float]) -> None:
        median, p95 = ms(times)
        bare_median, bare_p95 = ms(ceiling)
        line = f"| {name} | {median:.1f} | {p95:.1f} | {bare_median:.1f} | {bare_p95:.1f} |"
        self.lines.append(line)
        print(line, flush=True)

    def measure(self, devices: int, operations: int, operation_id: str) -> None:
        total = int(self.sql("SELECT count(*) FROM commands_commandstatus")[0][0])
        print(f"\n{total:,} command statuses ({devices:,} devices x {operations} operations)")
        print(machine(self.db.admin_url))
        self.lines.append(f"\n{total:,} command statuses, {devices:,} devices x {operations} operations")
        self.lines.append("| request | median ms | p95 ms | ceiling median ms | ceiling p95 ms |")
        self.lines.append("|---|---|---|---|---|")
        deep = devices - 20
        device = "dev_" + str(devices // 2).rjust(7, "0")
        key_at = self.sql(
            "SELECT id FROM commands_commandstatus WHERE operation_id = %s ORDER BY id OFFSET %s LIMIT 1",
            [operation_id, deep - 1],
        )[0][0]
        from config.api.pagination import encode_cursor

        rows: list[tuple[str, requests.Session, str, dict[str, Any] | None]] = [
            (
                "GET /commands/v0/status/?request=&limit=20",
                self.api,
                "/commands/v0/status/",
                {"request": operation_id, "limit": 20},
            ),
            (
                "... &offset=500000",
                self.api,
                "/commands/v0/status/",
                {"request": operation_id, "limit": 20, "offset": 500_000},
            ),
            (
                f"... &offset={deep}",
                self.api,
                "/commands/v0/status/",
                {"request": operation_id, "limit": 20, "offset": deep},
            ),
            (
                f"... &cursor= (the page at {deep})",
                self.api,
                "/commands/v0/status/",
                {"request": operation_id, "limit": 20, "cursor": encode_cursor(key_at)},
            ),
            ("GET /commands/v0/status/?device={one}", self.api, "/commands/v0/status/", {"device": device}),
            (f"GET /v0/devices/?offset={deep}", self.api, "/v0/devices/", {"offset": deep}),
            ("console: device list", self.console, "/admin/inventory/device/", None),
            ("console: command statuses", self.console, "/admin/commands/commandstatus/", None),
            (
                "console: the operation's page",
                self.console,
                f"/admin/operations/operation/{operation_id}/change/",
                None,
            ),
        ]
        if self.options.explain:
            self.explain(operation_id)
        for name, session, path, params in rows:
            ceiling = self.timed(self.api, "/bench/bare/")
            self.row(name, self.timed(session, path, params), ceiling)

    def explain(self, operation_id: str) -> None:
        """EXPLAIN (ANALYZE, BUFFERS) of the statements the first page by ``request`` runs."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from rest_framework.test import APIClient

        key = (
            manage(self.env, "create_api_key", "--tenant", "bench", "--role", "viewer")
            .strip()
            .splitlines()[-1]
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        with CaptureQueriesContext(connection) as captured:
            params = {"request": operation_id, "limit": "20"}
            client.get("/commands/v0/status/", params, HTTP_HOST="localhost")
        for query in captured.captured_queries:
            if "commands_commandstatus" not in query["sql"] or query["sql"].startswith("EXPLAIN"):
                continue
            print(f"-- {query['time']} s: {query['sql'][:300]}")
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query['sql']}")
                print("\n".join(row[0] for row in cursor.fetchall()))
        connection.close()

    def cancel(self, operation_id: str) -> None:
        redis_url = self.options.redis_url
        import redis

        redis.Redis.from_url(redis_url).delete("celery")
        self.worker = start_worker(self.env, self.work / "worker.log")
        pending = int(
            self.sql(
                "SELECT count(*) FROM commands_commandstatus "
                "WHERE operation_id = %s AND state NOT IN (5, 6, 7, 9)",
                [operation_id],
            )[0][0]
        )
        ceiling = self.timed(self.api, "/bench/bare/")
        start = time.perf_counter()
        answer = self.api.put(
            f"{self.base}/v0/operations/{operation_id}/",
            json={"state": "CANCELLED", "reason": "bench"},
            timeout=120,
        )
        answered = time.perf_counter() - start
        assert answer.status_code == 200, answer.text[:300]
        content = answer.json()["content"]
        while not self.sql(
            "SELECT 1 FROM operations_operation WHERE id = %s AND commands_stopped_at IS NOT NULL",
            [operation_id],
        ):
            time.sleep(0.05)
        finished = time.perf_counter() - start
        from commands.counting import recount
        from operations.models import Operation

        stored = Operation.objects.get(pk=operation_id)
        exact = {name: getattr(stored, name) for name in recount(operation_id)} == recount(operation_id)
        line = (
            f"PUT CANCELLED of an operation with {pending:,} unfinished commands: answered in "
            f"{answered * 1000:.0f} ms (state {content['state']}, commands_stop {content['commands_stop']}; "
            f"ceiling median {ms(ceiling)[0]:.1f} ms); every command moved by the worker "
            f"{finished:.1f} s after the PUT; counters equal to the recount: {exact}"
        )
        self.lines.append("\n" + line)
        print(line, flush=True)
        stop(self.worker)
        self.worker = None

    def run(self) -> None:
        self.setup()
        try:
            for operations in self.options.operations:
                print(f"building {self.options.devices:,} devices x {operations} operations", flush=True)
                operation_id = self.build(self.options.devices, operations)
                self.start_server()
                self.measure(self.options.devices, operations, operation_id)
                self.cancel(operation_id)
                stop(self.server)
                self.server = None
        finally:
            stop(self.worker)
            stop(self.server)
            if not self.options.keep:
                from django.db import connection

                connection.close()
                self.db.drop()
        print("\n".join(self.lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--operations", type=int, nargs="+", default=[1])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--explain", action="store_true", help="also EXPLAIN the first page")
    Bench(parser.parse_args()).run()


if __name__ == "__main__":
    main()
