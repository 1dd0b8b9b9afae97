"""Issue 23: a 1-device fan-out's time (create → DISPATCHED) with slowloris webhook receivers busy.

    .venv/bin/python bench/webhook_isolation.py [--runs 5] [--slow-endpoints 4]
        [--layouts split,shared] [--database-url postgres://postgres@127.0.0.1:5432/bench_isolation]
        [--redis-url redis://127.0.0.1:6379/10] [--keep]

In a scratch database: tenant ``ops`` with one device, tenant ``slowco`` with ``--slow-endpoints``
webhook endpoints (``["*"]``) pointing at receivers on 127.0.0.1 that answer a body byte a
second (``tests/webhook_receiver.py``'s slowloris: each attempt is held until its deadline,
``WEBHOOK_TIMEOUT_SECONDS``, 10 s). ``WEBHOOK_RETRY_SCHEDULE`` is 50 zero waits, so a failed
attempt is tried again at the next kick and the slow endpoints keep the delivery processes
busy for the whole run.

For each layout, real Celery processes and beat (``WEBHOOK_POLL_SECONDS=1``):

- ``split`` (the README's production layout, and runstack's): ``worker -Q celery -c 2`` and
  ``worker -Q webhooks -c 2``;
- ``shared``: one ``worker -Q celery,webhooks -c 2``, which is what one queue for everything
  amounts to (deliveries and fan-outs taking the same two processes).

``--runs`` operations on the one device are created one after another, first with no webhook
owed ("quiet"), then with the slow receivers trickling ("slowloris busy"); each time is the
DISPATCHED activity row's ``created_at`` minus the operation's ``created_at`` (both written by
the database's processes, so polling adds nothing). "trickling" is how many slow deliveries
were under way when the operation was DISPATCHED.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_isolation"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
LAYOUTS = {"split": [("default", "celery"), ("hooks", "webhooks")], "shared": [("both", "celery,webhooks")]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slow-endpoints", type=int, default=4)
    parser.add_argument("--layouts", default="split,shared")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()

    db = support.Database(options.database_url)
    var = tempfile.mkdtemp(prefix="bench-isolation-var-")
    env = support.project_env(
        db.url,
        options.redis_url,
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="1",
        WEBHOOK_POLL_SECONDS="1",
        WEBHOOK_RETRY_SCHEDULE=",".join(["0"] * 50),
        VAR_DIR=var,
    )
    os.environ.update(env)
    print(f"machine: {support.machine(db.admin_url)}")
    db.recreate()
    redis.Redis.from_url(options.redis_url).flushdb()

    import django

    django.setup()
    from django.core.management import call_command

    from inventory.services import create_device, get_or_create_tenant
    from inventory.webhooks.services import create_endpoint
    from operations.choices import OperationState
    from operations.models import Operation, OperationActivity
    from operations.services import create_operation
    from tests.webhook_receiver import Slowloris, slowloris

    call_command("migrate", "--noinput", verbosity=0)
    ops, _ = get_or_create_tenant("ops")
    create_device(ops.pk, {"device_id": "bench-1"})
    slowco, _ = get_or_create_tenant("slowco")

    def fan_out_once(receivers: list[Slowloris]) -> tuple[float | None, int]:
        operation = create_operation(
            ops.pk, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}, "bench"
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = OperationActivity.objects.filter(
                operation=operation, state=OperationState.DISPATCHED
            ).first()
            if done is not None:
                trickling = sum(1 for r in receivers if r.busy())
                created = Operation.objects.get(pk=operation.pk).created_at
                return (done.created_at - created).total_seconds(), trickling
            time.sleep(0.05)
        return None, sum(1 for r in receivers if r.busy())

    def report(label: str, results: list[tuple[float | None, int]]) -> None:
        times = [f"{t:.2f}" if t is not None else ">180" for t, _ in results]
        trickling = ", ".join(str(n) for _, n in results)
        print(f"  {label}: create → DISPATCHED (s): {', '.join(times)}; trickling at DISPATCHED: {trickling}")

    @contextlib.contextmanager
    def processes(layout: str) -> Iterator[Path]:
        log = Path(var) / f"celery-{layout}.log"
        started = [
            support.start_worker(env, log, concurrency=2, queues=queues, name=name)
            for name, queues in LAYOUTS[layout]
        ]
        with log.open("ab") as out:
            beat = subprocess.Popen(
                [str(support.BIN / "celery"), "-A", "config", "beat", "-l", "warning",
                 "-s", str(Path(var) / f"beat-{layout}")],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            yield log
        finally:
            support.stop(beat)
            for worker in started:
                support.stop(worker)

    try:
        for layout in options.layouts.split(","):
            print(
                f"layout {layout}: "
                + " + ".join(f"worker -Q {q} -c 2" for _, q in LAYOUTS[layout])
                + " + beat"
            )
            with processes(layout):
                fan_out_once([])  # warm up: the workers' first task imports and connects
                report("quiet", [fan_out_once([]) for _ in range(options.runs)])
                with contextlib.ExitStack() as stack:
                    receivers = [
                        stack.enter_context(slowloris(part="body", interval=1.0, limit=100_000))
                        for _ in range(options.slow_endpoints)
                    ]
                    endpoints = [create_endpoint(slowco.pk, r.url, ["*"])[0] for r in receivers]
                    create_device(slowco.pk, {"device_id": f"slow-{layout}"})  # one event owed to each
                    busy = min(options.slow_endpoints, 2)
                    end = time.monotonic() + 120
                    while sum(1 for r in receivers if r.busy()) < busy and time.monotonic() < end:
                        time.sleep(0.1)
                    report(
                        f"{options.slow_endpoints} slowloris receivers busy",
                        [fan_out_once(receivers) for _ in range(options.runs)],
                    )
                    for endpoint in endpoints:
                        endpoint.delete()
    finally:
        if not options.keep:
            from django.db import connections

            connections.close_all()
            db.drop()
            redis.Redis.from_url(options.redis_url).flushdb()


if __name__ == "__main__":
    main()
