"""The plans of the queries that read the command table, on a table a 1,000,000-device fan-out
filled: which index each one walks (issue 28, item 3: the index set decided from its queries).

    .venv/bin/python bench/command_plans.py [--devices 1000000] [--operations 2] [--reuse]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_fanout]
        [--redis-url redis://127.0.0.1:6379/11]

The database is built (not timed): a tenant of N devices and ``--operations`` fan-outs of all of
them (``operations.fanout.fan_out``, as a worker runs it), so a device has one command per
operation, as after weeks of operations; a second tenant of 1,000 devices with one fan-out of its
own; then a few thousand commands moved into each state a sweep looks for (handed out long ago,
acknowledged past their in-progress deadline, scheduled with an opened window, queued past a
window's close, with a passed deadline) and ten internal commands, then ``VACUUM ANALYZE``.
``--reuse`` skips the build and uses the database as it is.

Each query is the project's own: a list through the API's view (Django's test client, the
tenant's admin key), the hand-out, the sweeps, the stop's batch, the recount, the retention's
delete, the fleet figures, a report. Every statement they send that names the command table is
printed with its plan: ``EXPLAIN (ANALYZE, BUFFERS)`` for a read, plain ``EXPLAIN`` for a write
(it then runs as the code sent it), all inside a transaction rolled back at the end of each
query, so the table stays as built. No lock is taken: the timings are what the plans say, for
reading, not for comparing (run it under ``flock /tmp/bench.lock`` when they matter).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.fanout import LOAD_DEVICES
from bench.support import Database, machine, manage, project_env

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_fanout"
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"
TABLE = "commands_commandstatus"
BODY = {"operation_type": "REBOOT", "operation_device_query": {"all": True}, "arguments": {"reason": "bench"}}

#: The second tenant's devices: other keys and token prefixes than the first's.
SMALL_DEVICES = """
    INSERT INTO inventory_device (tenant_id, device_id, name, serial, model, os, os_version, state,
        timezone, tags, token_prefix, token_hash, token_revoked, last_seen, created_at, updated_at)
    SELECT %(tenant)s, 'small_' || i, 'Small ' || i, 'SM' || i, 'Model 1', 'linux', '12', 'active', 'UTC',
        '[]'::jsonb, 'f' || lpad(to_hex(i), 15, '0'), md5(i::text) || md5(i::text), false, NULL, now(), now()
    FROM generate_series(1, %(count)s) AS i
"""

#: A few thousand commands put in each state a sweep looks for (bench set-up only).
VARIETY = [
    # handed out an hour ago, never acknowledged: the redelivery sweep's
    f"UPDATE {TABLE} SET state = 2, delivered_at = now() - interval '1 hour', delivery_count = 1 "
    f"WHERE id IN (SELECT id FROM {TABLE} WHERE state = 1 ORDER BY id LIMIT 2000)",
    # acknowledged, past the in-progress deadline: the in-progress sweep's
    f"UPDATE {TABLE} SET state = 3, progress_deadline = now() - interval '1 minute' "
    f"WHERE id IN (SELECT id FROM {TABLE} WHERE state = 1 ORDER BY id DESC LIMIT 2000)",
    # scheduled, the window opened a minute ago: the window sweep's
    f"UPDATE {TABLE} SET state = 8, not_before = now() - interval '1 minute', "
    f"window_closes_at = now() + interval '1 hour', deadline = now() + interval '1 day' "
    f"WHERE id IN (SELECT id FROM {TABLE} WHERE state = 1 ORDER BY id LIMIT 2000 OFFSET 500000)",
    # queued, the window closed a minute ago: the window's close
    f"UPDATE {TABLE} SET window_closes_at = now() - interval '1 minute', deadline = now() + interval '1 day' "
    f"WHERE id IN (SELECT id FROM {TABLE} WHERE state = 1 ORDER BY id LIMIT 2000 OFFSET 600000)",
    # past its deadline: the timeout sweep's
    f"UPDATE {TABLE} SET deadline = now() - interval '1 minute' "
    f"WHERE id IN (SELECT id FROM {TABLE} WHERE state = 1 ORDER BY id LIMIT 2000 OFFSET 700000)",
]


class Plans:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.db = Database(options.database_url)
        self.env = project_env(self.db.url, options.redis_url)
        self.key = ""
        self.tenant_id = 0
        self.small_tenant_id = 0

    def build(self) -> None:
        self.db.recreate()
        redis.Redis.from_url(self.options.redis_url).flushdb()
        manage(self.env, "migrate", "--noinput", "-v0")
        for slug in ("bench", "small"):
            manage(self.env, "create_tenant", slug)
        manage(self.env, "create_api_key", "--tenant", "small", "--role", "admin")
        with self.db.connect() as conn:
            self.read_tenants(conn)
            conn.execute(LOAD_DEVICES, {"tenant": self.tenant_id, "count": self.options.devices})
            conn.execute(SMALL_DEVICES, {"tenant": self.small_tenant_id, "count": 1000})
            conn.execute("VACUUM ANALYZE inventory_device")

    def read_tenants(self, conn: Any) -> None:
        rows = dict(conn.execute("SELECT slug, id FROM inventory_tenant").fetchall())
        self.tenant_id, self.small_tenant_id = int(rows["bench"]), int(rows["small"])

    def django(self) -> None:
        os.environ.update(self.env)
        import django

        django.setup()

    def fan_outs(self) -> None:
        from django.test import Client

        from operations.fanout import fan_out

        client = Client()
        for tenant, count in [("bench", self.options.operations), ("small", 1)]:
            key = (
                manage(self.env, "create_api_key", "--tenant", tenant, "--role", "admin")
                .strip()
                .splitlines()[-1]
            )
            for _ in range(count):
                response = client.post(
                    "/v0/operations/",
                    BODY,
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {key}",
                )
                assert response.status_code == 201, response.content
                started = time.perf_counter()
                fan_out(response.json()["content"]["id"])
                print(f"  fan-out for {tenant}: {time.perf_counter() - started:.1f} s (set-up, not a figure)")
        redis.Redis.from_url(self.options.redis_url).delete("celery")
        from commands.services import issue_internal_command
        from inventory.models import Device

        for device in Device.objects.filter(tenant_id=self.tenant_id).order_by("pk")[:10]:
            issue_internal_command(self.tenant_id, device.pk, "REBOOT", {}, f"headless:bench-{device.pk}")
        with self.db.connect() as conn:
            for statement in VARIETY:
                conn.execute(statement)
            conn.execute(f"VACUUM ANALYZE {TABLE}")

    def explained(self, label: str, call: Callable[[], Any]) -> None:
        """Run ``call`` in a transaction rolled back; print the plan of each of its statements
        that names the command table."""
        from django.db import connection, transaction

        print(f"\n### {label}")

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
            if TABLE in sql and not many and not sql.lstrip().upper().startswith("EXPLAIN"):
                head = sql.lstrip().split(None, 1)[0].upper()
                reads = head == "SELECT" and "FOR UPDATE" not in sql.upper()
                options = "(ANALYZE, BUFFERS)" if reads else ""
                execute(f"EXPLAIN {options} {sql}", params, many, context)
                plan = [row[0] for row in context["cursor"].fetchall()]
                print("```")
                print(re.sub(r"\s+", " ", sql.strip())[:400])
                print("\n".join(plan))
                print("```")
            return execute(sql, params, many, context)

        try:
            with transaction.atomic(), connection.execute_wrapper(wrapper):
                call()
                transaction.set_rollback(True)
        except Exception as error:  # the bench's made-up rows (e.g. a window's close on an
            # operation that has no window): its statements' plans above are what is shown
            print(f"(then raised {type(error).__name__}: {error}; rolled back)")

    def queries(self) -> None:
        import datetime as dt

        from django.test import Client
        from django.utils import timezone

        from commands import counting, partitions, services, sweeps
        from commands.choices import UNFINISHED_STATES, CommandState
        from commands.models import CommandStatus
        from inventory import fleet
        from inventory.models import Device
        from operations.models import Operation

        key = (
            manage(self.env, "create_api_key", "--tenant", "bench", "--role", "admin")
            .strip()
            .splitlines()[-1]
        )
        small_key = (
            manage(self.env, "create_api_key", "--tenant", "small", "--role", "admin")
            .strip()
            .splitlines()[-1]
        )
        client = Client()
        operation = Operation.objects.filter(tenant_id=self.tenant_id).order_by("created_at").first()
        assert operation is not None
        device = Device.objects.filter(tenant_id=self.tenant_id).order_by("pk")[1234]
        queued = CommandStatus.objects.filter(device_id=device.pk, state=1).count()
        print(f"device {device.device_id}: {queued} queued commands")
        middle = CommandStatus.objects.filter(operation_id=operation.pk).order_by("id")[500_000].pk

        def get(path: str, api_key: str = key) -> Callable[[], Any]:
            def call() -> None:
                response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {api_key}")
                assert response.status_code == 200, response.content[:300]

            return call

        from config.api.pagination import encode_cursor

        cursor = encode_cursor(middle)
        later = timezone.now() + dt.timedelta(seconds=1)
        unfinished = sorted(UNFINISHED_STATES)
        self.explained(
            "tenant's list, first page (GET /commands/v0/status/)", get("/commands/v0/status/?limit=50")
        )
        self.explained(
            "tenant's list, the page after the 500,000th command (cursor)",
            get(f"/commands/v0/status/?limit=50&cursor={cursor}"),
        )
        self.explained(
            "the small tenant's list (1,000 of its own among 2,000,000 others)",
            get("/commands/v0/status/?limit=50", small_key),
        )
        self.explained(
            "an operation's list, first page (?request=)",
            get(f"/commands/v0/status/?request={operation.pk}&limit=50"),
        )
        self.explained(
            "an operation's list, after the 500,000th (cursor)",
            get(f"/commands/v0/status/?request={operation.pk}&limit=50&cursor={cursor}"),
        )
        self.explained(
            "a device's list (?device=)", get(f"/commands/v0/status/?device={device.device_id}&limit=50")
        )
        self.explained(
            "the hand-out (the inbox's poll)",
            lambda: services.hand_out(device.pk, 10, "bench", "bench", device_ref=device.device_id),
        )
        self.explained("redelivery sweep", lambda: sweeps.redeliver_unacknowledged(now=later))
        self.explained("timeout sweep (deadline)", lambda: sweeps.time_out_overdue(now=later))
        self.explained("in-progress timeout sweep", lambda: sweeps.time_out_in_progress(now=later))

        from operations import sweeps as operation_sweeps

        self.explained("window opening sweep", lambda: operation_sweeps.open_windows(now=later))
        self.explained("window closing sweep", lambda: operation_sweeps.close_windows(now=later))
        self.explained(
            "the stop's batch (operations.stopping: unfinished by (operation, id))",
            lambda: list(
                CommandStatus.objects.filter(operation_id=operation.pk, state__in=unfinished)
                .filter(pk__gt=0)
                .order_by("operation_id", "pk")
                .values_list("pk", flat=True)[:1000]
            ),
        )
        self.explained("the recount of an operation", lambda: counting.recount(operation.pk))
        self.explained(
            "retention: one batch of an operation's commands deleted",
            lambda: partitions.delete_commands(CommandStatus.objects.filter(operation_id=operation.pk), 1000),
        )
        self.explained(
            "an internal command by its issuer (?request=headless:…)",
            get(f"/commands/v0/status/?request=headless:bench-{device.pk - 1234}"),
        )
        self.explained("fleet figures of a tenant (sampled)", lambda: fleet.figures(self.tenant_id))
        command = CommandStatus.objects.filter(device_id=device.pk, state=1).first()
        assert command is not None
        self.explained(
            "a device's report (PUT Acknowledged) by key",
            lambda: services.report(
                command.pk,
                CommandState.ACKNOWLEDGED,
                actor="bench",
                tenant_id=self.tenant_id,
                device_pk=device.pk,
            ),
        )

    def run(self) -> None:
        print(f"machine: {machine(self.db.admin_url)}")
        if not self.options.reuse:
            self.build()
        else:
            with self.db.connect() as conn:
                self.read_tenants(conn)
        self.django()
        if not self.options.reuse:
            self.fan_outs()
        self.queries()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--operations", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="the database as a run before left it")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    Plans(parser.parse_args()).run()


if __name__ == "__main__":
    main()
