"""Benchmark of webhook delivery: 100,000 ``command.state_changed`` events to a local receiver.

    .venv/bin/python bench/webhooks.py [--events 100000] [--batch-size 500] [--skip-worker]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_webhooks]
        [--redis-url redis://127.0.0.1:6379/11] [--keep]

Made in a scratch database: a tenant with N devices, an operation on all of them fanned out
(N command statuses), and an endpoint that takes ``command.state_changed`` and points at
``bench/webhook_receiver.py`` (a process of its own on 127.0.0.1). Then, in one run:

(a) emit: cancelling the operation moves its N commands in one set move, whose statement also
    writes N events and N pending deliveries; timed beside the same cancel of a second operation
    of the same size while the endpoint is off (nothing written: the cost of the subscription
    check alone).
(b) ceiling: the receiver hit directly by a plain loop of N POSTs of a body of the events' size,
    on one kept-alive urllib3 connection (as the deliverer uses one per endpoint), no signing.
(c) in-process: ``inventory.webhooks.delivery.deliver`` called in this process until nothing is
    owed: claim, read a batch, sign, POST, record attempts, batch after batch.
(d) worker: the same N owed again, delivered by a real ``celery -A config worker -c 1`` and
    ``celery beat`` (``kick_webhooks`` every second); the rate is N over the time from the first
    attempt to the last one (their ``created_at``), and the wall time from the worker's start.

Events/s are what the receiver got per second. The database and Redis DB are dropped/flushed
at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_webhooks"
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    receiver = subprocess.Popen([sys.executable, str(ROOT / "bench" / "webhook_receiver.py"), str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            received(port)
            return receiver
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the receiver did not come up")


def received(port: int) -> int:
    return int(urllib3.request("GET", f"http://127.0.0.1:{port}/count", retries=False).data)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    n = options.events

    db = support.Database(options.database_url)
    env = support.project_env(
        db.url,
        options.redis_url,
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="1",
        WEBHOOK_BATCH_SIZE=str(options.batch_size),
        WEBHOOK_POLL_SECONDS="1",
        VAR_DIR=tempfile.mkdtemp(prefix="bench-webhooks-var-"),
    )
    os.environ.update(env)
    print(f"machine: {support.machine(db.admin_url)}")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    db.recreate()
    redis.Redis.from_url(options.redis_url).flushdb()
    port = support.free_port()
    receiver = start_receiver(port)
    worker = beat = None
    log = Path(env["VAR_DIR"]) / "celery.log"
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from commands.choices import CommandState
        from commands.models import CommandStatus
        from commands.services import move_and_settle
        from inventory.models import PendingDelivery, WebhookDelivery, WebhookEndpoint, WebhookEvent
        from inventory.services import bulk_import_devices, get_or_create_tenant
        from inventory.webhooks import delivery
        from inventory.webhooks.services import create_endpoint
        from operations.fanout import fan_out
        from operations.services import create_operation

        call_command("migrate", "--noinput", verbosity=0)
        tenant, _ = get_or_create_tenant("bench")
        bulk_import_devices(tenant.pk, [{"device_id": f"dev_{i:07d}"} for i in range(n)])
        url = f"http://127.0.0.1:{port}/hooks"
        endpoint, _ = create_endpoint(tenant.pk, url, ["command.state_changed"])

        def operation() -> str:
            op = create_operation(
                tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}, "bench"
            )
            fan_out(op.pk)
            return str(op.pk)

        # (a) emit, with the endpoint off and then on
        quiet, loud = operation(), operation()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
        started = time.perf_counter()
        move_and_settle(CommandStatus.objects.filter(operation_id=quiet), CommandState.CANCELLED, "bench")
        off = time.perf_counter() - started
        assert WebhookEvent.objects.count() == 0
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=True)
        started = time.perf_counter()
        move_and_settle(CommandStatus.objects.filter(operation_id=loud), CommandState.CANCELLED, "bench")
        on = time.perf_counter() - started
        events = WebhookEvent.objects.count()
        assert events == n and PendingDelivery.objects.count() == n, (events, n)
        print(f"(a) emit: cancel {n:,} commands, endpoint off: {off:.2f} s; on (+{n:,} events): {on:.2f} s")

        # (b) ceiling: a plain loop of POSTs of the same size
        sample = WebhookEvent.objects.order_by("id").first()
        assert sample is not None
        body = json.dumps(sample.body(), separators=(",", ":")).encode()
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)
        headers = {"content-type": "application/json"}
        before = received(port)
        started = time.perf_counter()
        for _ in range(n):
            answer = pool.urlopen("POST", "/hooks", body=body, headers=headers)
            assert answer.status == 200
        ceiling = time.perf_counter() - started
        assert received(port) - before == n
        print(
            f"(b) ceiling: {n:,} plain POSTs of {len(body)} bytes in {ceiling:.2f} s = {n / ceiling:,.0f}/s"
        )

        # (c) in-process delivery
        before = received(port)
        started = time.perf_counter()
        while PendingDelivery.objects.filter(endpoint=endpoint).exists():
            delivery.deliver(endpoint.pk)
        inproc = time.perf_counter() - started
        got = received(port) - before
        assert got == n and WebhookDelivery.objects.filter(status_code=200).count() == n, got
        print(
            f"(c) in-process: {n:,} events delivered in {inproc:.2f} s = {n / inproc:,.0f}/s "
            f"({100 * ceiling / inproc:.0f}% of the ceiling)"
        )

        if not options.skip_worker:
            # (d) the same N owed again, delivered by a real worker and beat
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE inventory_webhookdelivery")
                cursor.execute(
                    "INSERT INTO inventory_pendingdelivery (endpoint_id, event_id, attempt, due_at) "
                    "SELECT %s, id, 1, now() FROM inventory_webhookevent",
                    [endpoint.pk],
                )
            before = received(port)
            started = time.perf_counter()
            worker = support.start_worker(env, log, concurrency=1)
            with log.open("ab") as out:
                beat = subprocess.Popen(
                    [str(support.BIN / "celery"), "-A", "config", "beat", "-l", "warning",
                     "-s", str(Path(env["VAR_DIR"]) / "beat-schedule")],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            while received(port) - before < n:
                if time.perf_counter() - started > 1800:
                    raise SystemExit(f"not done after 30 min; see {log}")
                time.sleep(0.5)
            wall = time.perf_counter() - started
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT extract(epoch FROM max(created_at) - min(created_at)) "
                    "FROM inventory_webhookdelivery"
                )
                row = cursor.fetchone()
            span = float(row[0]) if row and row[0] else wall
            print(
                f"(d) worker -c 1 + beat: {n:,} events in {span:.2f} s from first to last attempt = "
                f"{n / span:,.0f}/s ({100 * ceiling / span:.0f}% of the ceiling); "
                f"{wall:.2f} s wall from start"
            )
        # (e) what deciding "does anyone subscribe?" costs a device's report when nobody does:
        # as shipped (a flag in the cache, then the statement without the outbox CTEs),
        # alternating with the statement that always carries the CTEs (they check inside);
        # beside them, one cache read.
        import statistics

        from django.core.cache import cache

        import commands.services as command_services

        support.stop(beat)
        support.stop(worker)
        beat = worker = None
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
        cache.clear()
        k = min(n, 4000)
        devices = [f"dev_{i:07d}" for i in range(k)]
        op = create_operation(
            tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"devices": devices}}, "bench"
        )
        fan_out(op.pk)
        ids = list(
            CommandStatus.objects.filter(operation_id=op.pk).order_by("id").values_list("id", flat=True)
        )
        timings: dict[str, list[float]] = {"flag": [], "always": []}
        for index, pk in enumerate(ids):
            variant = "flag" if index % 2 == 0 else "always"
            scope = tenant.pk if variant == "flag" else None  # no tenant: the CTEs always go in
            started = time.perf_counter()
            command_services.report(pk, CommandState.ACKNOWLEDGED, actor="bench", tenant_id=scope)
            timings[variant].append(time.perf_counter() - started)
        assert WebhookEvent.objects.count() == n  # nobody subscribed: nothing written either way
        cache.set("bench-webhook-flag", 1)
        reads = []
        for _ in range(2000):
            started = time.perf_counter()
            cache.get("bench-webhook-flag")
            reads.append(time.perf_counter() - started)
        med = {name: statistics.median(values) * 1000 for name, values in timings.items()}
        print(
            f"(e) report, no subscriber, median of {len(ids) // 2:,} each: as shipped (cache flag, "
            f"no CTEs) {med['flag']:.3f} ms; with the outbox CTEs always {med['always']:.3f} ms; "
            f"one Redis cache read {statistics.median(reads) * 1000:.3f} ms"
        )
    finally:
        support.stop(beat)
        support.stop(worker)
        support.stop(receiver)
        if not options.keep:
            from django.db import connections

            connections.close_all()
            db.drop()
            redis.Redis.from_url(options.redis_url).flushdb()


if __name__ == "__main__":
    main()
