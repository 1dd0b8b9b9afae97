"""The console and the device list at fleet scale (issue 26, item 6), black box through gunicorn.

    flock /tmp/bench.lock .venv/bin/python bench/console_scale.py [--devices 1000000] [--runs 5]
        [--database-url postgres://postgres@127.0.0.1:5432/devops_fs_bench]
        [--redis-url redis://127.0.0.1:6379/14] [--explain] [--history] [--drop]

The database is built once and reused by later runs (``--drop`` removes it at the end):
N devices in one tenant, named ``s_1`` … ``s_N`` as in the issue's black box (loaded with one
``INSERT ... SELECT generate_series``, as ``bench/fanout.py`` loads them, then
``VACUUM ANALYZE``), and one ``{"all": true}`` REBOOT operation fanned out to all of them by the
project's own ``create_operation`` and ``fan_out`` (``commands.rows`` writes its N command
statuses, with their real indexes). The operation is cancelled at the end of each run, so a
run that finds no dispatched operation of N commands empties the operation and command tables
and fans a new one out (not measured).

Then ``gunicorn config.wsgi -w 2 --threads 4`` (``bench.settings``: the project plus
``/bench/bare/``) serves it, and each row is requested ``--runs`` times after one warm-up; the
median is printed beside a ceiling measured just before it in the same run: the median of as
many ``GET /bench/bare/`` (a Django view answering ``{}`` through the same middleware). The
console rows are timed twice, as a superuser (every tenant) and as a staff user of the tenant
(scoped by ``inventory.scoping``). The last row is ``PUT /v0/operations/{id}/ CANCELLED``: its
answer only (no worker runs; the stop's batches are ``bench/lists.py``'s). With ``--history``
the cancelled operation's commands are then moved by the project's ``stop_commands`` (in this
process, as its worker would: a million history rows in the chart's last 24 hours) and the
dashboard is timed again.

``--explain`` also runs the dashboard, the search and the deepest device page in this process
(Django's test client on the same database), prints their query count and each query's time,
and ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest three.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import LOAD_DEVICES
from bench.support import Database, free_port, machine, manage, project_env, start_gunicorn, stop

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/devops_fs_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
BODY = {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "arguments": {"reason": "bench"}}
PASSWORD = "bench-console-pw-0123456789"
#: The issue's black box named its devices ``s_<n>`` and searched the console for ``s_4242``.
LOAD_S_DEVICES = LOAD_DEVICES.replace("'dev_' || lpad(i::text, 7, '0')", "'s_' || i")
assert LOAD_S_DEVICES != LOAD_DEVICES
SEARCH = "s_4242"
#: What a new operation starts from: the history has no foreign key to its commands (partitioned
#: tables), so TRUNCATE ... CASCADE of the commands would leave it, and the dashboard's chart
#: would count an earlier run's stop.
EVERYTHING = "operations_operation, commands_commandstatus, commands_commandhistory"


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.db = Database(options.database_url)
        self.env = project_env(self.db.url, options.redis_url, DJANGO_SETTINGS_MODULE="bench.settings")
        self.work = Path(tempfile.mkdtemp(prefix="bench-console-scale-"))
        self.server: subprocess.Popen[bytes] | None = None
        self.api = requests.Session()
        self.superuser = requests.Session()
        self.staff = requests.Session()
        self.base = ""
        self.tenant_id = 0
        self.lines: list[str] = []

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.db.connect() as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    # --- the data ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Reuse the database when it is there (migrated to this code), else create it."""
        try:
            psycopg.connect(self.db.url).close()
        except psycopg.OperationalError:
            self.db.recreate()
        manage(self.env, "migrate", "--noinput", "-v0")
        os.environ.update(self.env)
        import django

        django.setup()
        from django.contrib.auth.models import Permission, User

        from inventory.models import ConsoleUser
        from inventory.services import get_or_create_tenant

        tenant, _ = get_or_create_tenant("bench")
        self.tenant_id = tenant.pk
        key = (
            manage(self.env, "create_api_key", "--tenant", "bench", "--role", "admin")
            .strip()
            .splitlines()[-1]
        )
        self.api.headers["Authorization"] = f"Bearer {key}"
        if not User.objects.filter(username="root").exists():
            User.objects.create_superuser("root", "root@example.com", PASSWORD)
        if not User.objects.filter(username="staff").exists():
            staff = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
            staff.user_permissions.set(Permission.objects.all())
            ConsoleUser.objects.create(user=staff, tenant=tenant)

    def build(self, devices: int) -> str:
        """N devices and one dispatched operation to all of them; returns its id."""
        from django.db import connection

        from operations.fanout import fan_out
        from operations.services import create_operation

        have = int(
            self.sql("SELECT count(*) FROM inventory_device WHERE tenant_id = %s", [self.tenant_id])[0][0]
        )
        if have != devices:
            connection.close()
            start = time.perf_counter()
            self.sql(f"TRUNCATE {EVERYTHING}, inventory_device CASCADE")
            self.sql(LOAD_S_DEVICES, {"tenant": self.tenant_id, "count": devices})
            self.sql("VACUUM ANALYZE inventory_device")
            print(f"  loaded {devices:,} devices in {time.perf_counter() - start:.1f} s (not measured)")
        ready = self.sql(
            "SELECT id FROM operations_operation WHERE state = 50 AND operation_type = 'REBOOT' "
            "AND dispatched_count = %s",
            [devices],
        )
        if len(ready) == 1 and int(self.sql("SELECT count(*) FROM operations_operation")[0][0]) == 1:
            print("  reusing the dispatched operation")
            return str(ready[0][0])
        connection.close()
        self.sql(f"TRUNCATE {EVERYTHING} CASCADE")
        start = time.perf_counter()
        operation = create_operation(self.tenant_id, BODY, "bench")
        fan_out(operation.pk)
        connection.close()
        print(f"  fanned out to {devices:,} devices in {time.perf_counter() - start:.1f} s (not measured)")
        return str(operation.pk)

    # --- serving and timing -----------------------------------------------------------------

    def login(self, session: requests.Session, username: str) -> None:
        page = session.get(f"{self.base}/admin/login/", timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token is not None, page.text[:300]
        answer = session.post(
            f"{self.base}/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password": PASSWORD,
                "next": "/admin/",
            },
            headers={"Referer": f"{self.base}/admin/login/"},
            timeout=120,
        )
        assert answer.status_code == 200 and "logout" in answer.text.lower(), answer.text[:300]

    def start_server(self) -> None:
        redis.Redis.from_url(self.options.redis_url).flushdb()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.server = start_gunicorn(
            self.env, port, ["-w", "2", "--threads", "4"], self.work / "gunicorn.log"
        )
        self.login(self.superuser, "root")
        self.login(self.staff, "staff")

    def timed(
        self, session: requests.Session, path: str, params: dict[str, Any] | None = None
    ) -> list[float]:
        url = f"{self.base}{path}"
        session.get(url, params=params, timeout=120)  # warm-up
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

    def row(self, name: str, goal: str, times: list[float], ceiling: list[float]) -> None:
        line = f"| {name} | {goal} | {median_ms(times):.1f} | {median_ms(ceiling):.1f} |"
        self.lines.append(line)
        print(line, flush=True)

    def measure(self, devices: int, operation_id: str) -> None:
        deep = devices - 20
        header = [
            "",
            f"{devices:,} devices, one operation to all of them; {machine(self.db.admin_url)}",
            f"medians of {self.options.runs} requests, ms",
            "",
            "| request | goal | median | ceiling (bare view) median |",
            "|---|---|---:|---:|",
        ]
        self.lines.extend(header)
        print("\n".join(header), flush=True)
        rows: list[tuple[str, str, requests.Session, str, dict[str, Any] | None]] = [
            ("console: dashboard `/admin/` (superuser)", "< 300", self.superuser, "/admin/", None),
            ("console: dashboard `/admin/` (tenant staff)", "< 300", self.staff, "/admin/", None),
            (
                f"console: device search `?q={SEARCH}` (superuser)",
                "< 300",
                self.superuser,
                "/admin/inventory/device/",
                {"q": SEARCH},
            ),
            (
                f"console: device search `?q={SEARCH}` (tenant staff)",
                "< 300",
                self.staff,
                "/admin/inventory/device/",
                {"q": SEARCH},
            ),
            ("console: device list (tenant staff)", "< 300", self.staff, "/admin/inventory/device/", None),
            (f"`GET /v0/devices/?offset={deep}`", "< 200", self.api, "/v0/devices/", {"offset": deep}),
            (
                f"`GET /v0/devices/?cursor=` (the page at {deep})",
                "< 200",
                self.api,
                "/v0/devices/",
                {"cursor": self.device_cursor(deep)},
            ),
            ("`GET /v0/operations/{id}/`", "", self.api, f"/v0/operations/{operation_id}/", None),
            (
                "console: the operation's page (tenant staff)",
                "",
                self.staff,
                f"/admin/operations/operation/{operation_id}/change/",
                None,
            ),
            (
                "`GET /commands/v0/status/?request={id}`",
                "",
                self.api,
                "/commands/v0/status/",
                {"request": operation_id},
            ),
            (
                "console: command statuses (tenant staff)",
                "",
                self.staff,
                "/admin/commands/commandstatus/",
                None,
            ),
        ]
        for name, goal, session, path, params in rows:
            ceiling = self.timed(self.api, "/bench/bare/")
            self.row(name, goal, self.timed(session, path, params), ceiling)

    def device_cursor(self, offset: int) -> str:
        """The ``next_cursor`` of the page before ``offset``: the key of the row before it."""
        from config.api.pagination import encode_cursor

        key = self.sql(
            "SELECT id FROM inventory_device WHERE tenant_id = %s ORDER BY id OFFSET %s LIMIT 1",
            [self.tenant_id, offset - 1],
        )[0][0]
        return encode_cursor(int(key))

    def cancel(self, operation_id: str) -> None:
        ceiling = self.timed(self.api, "/bench/bare/")
        start = time.perf_counter()
        answer = self.api.put(
            f"{self.base}/v0/operations/{operation_id}/",
            json={"state": "CANCELLED", "reason": "bench"},
            timeout=120,
        )
        answered = time.perf_counter() - start
        assert answer.status_code == 200, answer.text[:300]
        self.row("`PUT /v0/operations/{id}/` CANCELLED (the answer; one request)", "", [answered], ceiling)

    def after_the_stop(self, operation_id: str) -> None:
        """The dashboard again once the cancelled operation's commands are moved (by the
        project's ``stop_commands``, in this process, as its worker would): a million history
        rows in the chart's last 24 hours."""
        from django.db import connection

        from operations.stopping import stop_commands

        start = time.perf_counter()
        moved = stop_commands(operation_id)
        connection.close()
        print(f"  the stop moved {moved:,} commands in {time.perf_counter() - start:.1f} s (not measured)")
        self.sql("ANALYZE commands_commandhistory")
        for name, session in (("superuser", self.superuser), ("tenant staff", self.staff)):
            ceiling = self.timed(self.api, "/bench/bare/")
            times = self.timed(session, "/admin/")
            self.row(
                f"console: dashboard after the stop, {moved:,} history rows ({name})", "< 300", times, ceiling
            )

    # --- where the time goes ----------------------------------------------------------------

    def explain(self, devices: int) -> None:
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        key = (
            manage(self.env, "create_api_key", "--tenant", "bench", "--role", "viewer")
            .strip()
            .splitlines()[-1]
        )
        api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        superuser, staff = Client(), Client()
        superuser.force_login(User.objects.get(username="root"))
        staff.force_login(User.objects.get(username="staff"))
        pages: list[tuple[str, Client, str, dict[str, Any]]] = [
            ("dashboard (superuser)", superuser, "/admin/", {}),
            ("dashboard (tenant staff)", staff, "/admin/", {}),
            (f"search {SEARCH} (superuser)", superuser, "/admin/inventory/device/", {"q": SEARCH}),
            (f"search {SEARCH} (tenant staff)", staff, "/admin/inventory/device/", {"q": SEARCH}),
            ("devices at the deepest offset", api, "/v0/devices/", {"offset": devices - 20}),
        ]
        for name, client, path, params in pages:
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                answer = client.get(path, params, HTTP_HOST="localhost")
                took = time.perf_counter() - start
            print(f"\n== {name}: {answer.status_code}, {took * 1000:.0f} ms, {len(captured)} queries")
            queries = sorted(captured.captured_queries, key=lambda q: -float(q["time"]))
            for query in queries:
                print(f"  {float(query['time']) * 1000:7.1f} ms  {query['sql'][:160]}")
            for query in queries[:3]:
                if not query["sql"].lstrip().upper().startswith(("SELECT", "WITH")):
                    continue
                print(f"-- EXPLAIN of: {query['sql'][:400]}")
                with connection.cursor() as cursor:
                    cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query['sql']}")
                    print("\n".join(f"   {row[0]}" for row in cursor.fetchall()))
        connection.close()

    def run(self) -> None:
        self.setup()
        try:
            operation_id = self.build(self.options.devices)
            if self.options.explain:
                self.explain(self.options.devices)
            self.start_server()
            self.measure(self.options.devices, operation_id)
            self.cancel(operation_id)
            if self.options.history:
                self.after_the_stop(operation_id)
        finally:
            stop(self.server)
            from django.db import connection

            connection.close()
            if self.options.drop:
                self.db.drop()
        print("\n".join(self.lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--explain", action="store_true", help="query counts and EXPLAIN ANALYZE")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument(
        "--history", action="store_true", help="then move the cancelled commands and time the dashboard again"
    )
    Bench(parser.parse_args()).run()


if __name__ == "__main__":
    main()
