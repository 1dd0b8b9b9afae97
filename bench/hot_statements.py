"""The device's two hot statements in one process, prepared (generic plans) against planned
every time, interleaved in rounds so that drift hits both alike.

    .venv/bin/python bench/hot_statements.py [--devices 10000] [--operations 3] [--rounds 3]
        [--per-round 500] [--database-url postgres://postgres@127.0.0.1:5432/bench_hot]
        [--redis-url redis://127.0.0.1:6379/5]

It creates the database, migrates it (the command tables partitioned by week), imports the
devices and fans out the operations in process, then times ``commands.services.hand_out``
(one command per call) and ``commands.services.report`` (Initiated -> Acknowledged) with
``PREPARE_THRESHOLD`` as shipped and with preparing off (``None``), per call, median and p90.
The ceiling of the same run is ``SELECT 1`` on the same connection.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Database, machine, manage, percentile, project_env

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_hot"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"


def timed(calls: list[Callable[[], object]]) -> list[float]:
    spent = []
    for call in calls:
        start = time.perf_counter()
        call()
        spent.append((time.perf_counter() - start) * 1000)
    return spent


def summary(name: str, values: list[float]) -> str:
    p90 = percentile(values, 0.9)
    return f"| {name} | {statistics.median(values):.3f} ms | {p90:.3f} ms | {len(values):,} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--operations", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=500)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    options = parser.parse_args()

    db = Database(options.database_url)
    env = project_env(db.url, options.redis_url)
    print(f"machine: {machine(db.admin_url)}")
    db.recreate()
    redis.Redis.from_url(options.redis_url).flushdb()
    try:
        manage(env, "migrate", "--noinput", "-v0")
        os.environ.update(env)
        import django

        django.setup()
        from django.db import connection

        from commands import services
        from commands.choices import CommandState
        from commands.models import CommandStatus
        from inventory.models import Device
        from inventory.services import bulk_import_devices, get_or_create_tenant
        from operations import fanout
        from operations import services as operations

        tenant, _ = get_or_create_tenant("bench")
        bulk_import_devices(tenant.pk, [{"device_id": f"dev_{i:05d}"} for i in range(options.devices)])
        for _ in range(options.operations):
            operation = operations.create_operation(
                tenant.pk, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}, "bench"
            )
            fanout.fan_out(operation.pk)
        devices = list(Device.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True))
        shipped = services.PREPARE_THRESHOLD

        def acknowledge(pk: int) -> None:
            services.report(pk, CommandState.ACKNOWLEDGED, actor="bench")

        results: dict[str, list[float]] = {}

        def select_one() -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")

        position = 0
        for _round in range(options.rounds):
            for label, threshold in (("prepared", shipped), ("planned every time", None)):
                services.PREPARE_THRESHOLD = threshold
                batch = devices[position : position + options.per_round]
                position += options.per_round
                hand = timed([functools.partial(services.hand_out, pk, 1, "bench", "bench") for pk in batch])
                results.setdefault(f"hand-out, {label}", []).extend(hand)
                initiated = CommandStatus.objects.filter(device_id__in=batch, state=CommandState.INITIATED)
                handed = list(initiated.values_list("pk", flat=True))
                reports = timed([functools.partial(acknowledge, pk) for pk in handed])
                results.setdefault(f"report Acknowledged, {label}", []).extend(reports)
                results.setdefault("ceiling: SELECT 1", []).extend(timed([select_one] * options.per_round))
        services.PREPARE_THRESHOLD = shipped
        print("\n| statement | median | p90 | calls |\n|---|---:|---:|---:|")
        for name, values in sorted(results.items()):
            print(summary(name, values))
    finally:
        db.drop()
        redis.Redis.from_url(options.redis_url).flushdb()


if __name__ == "__main__":
    main()
