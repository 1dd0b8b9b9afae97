"""What idempotency keys cost a POST, what sealing the kept answer costs, and the purge.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_idem REDIS_URL=redis://127.0.0.1:6379/12 \\
        SECRET_KEY=x .venv/bin/python bench/idempotency.py [--requests 300] [--rounds 3] \\
        [--bulk-devices 100000] [--purge-rows 20000]

In one process (Django's test client, the full middleware and DRF stack, a test database
``test_<name>`` made and dropped by the script), interleaved in ``--rounds`` rounds so that
drift in the machine hits every variant alike:

1. ``POST /v0/groups/`` and ``POST /v0/devices/`` without a key (the ceiling: what the same
   request costs without the feature), with a new key each time (claim, the view in a
   transaction, the answer sealed and kept), and replayed (the same key and body again).
2. ``seal`` and ``unseal`` (``config.encryption``) of a kept device answer and of a bulk
   import's answer of ``--bulk-devices`` ids and tokens, beside ``json.dumps`` of the same
   answer; then that bulk import itself through the API, without and with a key (one each).
3. ``purge_expired`` of ``--purge-rows`` expired rows of ~1 KB, per batch of ``PURGE_BATCH_SIZE``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Thousands of requests from one key in a minute: the rate limit would answer 429. One log
# line per request would be most of what is printed.
os.environ.setdefault("RATE_LIMIT_KEY_PER_MINUTE", "0")
os.environ.setdefault("LOG_REQUESTS", "off")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def ms(values: list[float]) -> str:
    """Median (p90), in ms, or in µs below a millisecond."""
    median, p90 = statistics.median(values), sorted(values)[int(len(values) * 0.9)]
    if p90 < 0.001:
        return f"{median * 1e6:.1f} µs (p90 {p90 * 1e6:.1f})"
    return f"{median * 1000:.2f} ms (p90 {p90 * 1000:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bulk-devices", type=int, default=100_000, help="0 skips the bulk import")
    parser.add_argument("--purge-rows", type=int, default=20_000)
    options = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases

    from bench.support import machine
    from config.encryption import seal, unseal
    from config.idempotency.models import IdempotentRequest
    from config.idempotency.store import PURGE_BATCH_SIZE, purge_expired
    from inventory.services import create_api_key, get_or_create_tenant

    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        db = connection.settings_dict
        print(
            "machine:",
            machine(f"postgres://{db['USER'] or 'postgres'}@{db['HOST']}:{db['PORT'] or 5432}/postgres"),
        )
        tenant, _ = get_or_create_tenant("bench")
        _, key = create_api_key(tenant, "admin", "bench")
        client = Client()
        auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
        counter = iter(range(10**9))

        def post(path: str, body: Any, idempotency_key: str | None = None) -> Any:
            extra: dict[str, Any] = dict(auth)
            if idempotency_key is not None:
                extra["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
            response = client.post(path, json.dumps(body), content_type="application/json", **extra)
            assert 200 <= response.status_code < 300, response.content[:300]
            return response

        bodies: dict[str, Callable[[], Any]] = {
            "/v0/groups/": lambda: {"name": f"group-{next(counter)}"},
            "/v0/devices/": lambda: {"id": f"dev-{next(counter)}", "name": "Bench", "tags": ["a", "b"]},
        }
        results: dict[tuple[str, str], list[float]] = {}

        def one_of_each(path: str, make: Callable[[], Any]) -> None:
            """The same request without a key, with a new key, and that key again."""
            results.setdefault((path, "no key (ceiling)"), []).append(timed(lambda: post(path, make())))
            fresh, body = secrets.token_hex(16), make()
            results.setdefault((path, "new key"), []).append(timed(lambda: post(path, body, fresh)))
            results.setdefault((path, "replay"), []).append(timed(lambda: post(path, body, fresh)))

        for round_ in range(options.rounds):
            for path, make in bodies.items():
                for _ in range(20):  # warm-up
                    post(path, make())
                for _ in range(options.requests):
                    one_of_each(path, make)
            print(f"round {round_ + 1} done; load {os.getloadavg()[0]:.2f}")

        print(f"\n| request | variant | median (p90), {options.rounds} x {options.requests} |\n|---|---|---|")
        for (path, variant), values in results.items():
            print(f"| POST {path} | {variant} | {ms(values)} |")

        # --- sealing --------------------------------------------------------------------------
        device_answer = post("/v0/devices/", bodies["/v0/devices/"]()).content.decode()
        samples: list[tuple[str, str]] = [(f"device create answer ({len(device_answer)} B)", device_answer)]
        if options.bulk_devices:
            bulk = {
                "code": 0,
                "message": "success",
                "content": {
                    "created": options.bulk_devices,
                    "skipped": [],
                    "devices": [
                        {"id": f"dev_{i:07d}", "token": f"ddt_{secrets.token_urlsafe(32)}"}
                        for i in range(options.bulk_devices)
                    ],
                },
            }
            text = json.dumps(bulk)
            samples.append((f"bulk answer, {options.bulk_devices:,} tokens ({len(text) / 1e6:.1f} MB)", text))
        print("\n| kept body | json.dumps (ceiling) | seal | unseal | sealed size |\n|---|---|---|---|---|")
        for label, text in samples:
            reps = 2000 if len(text) < 10_000 else 5
            parsed = json.loads(text)
            dump = [timed(lambda: json.dumps(parsed)) for _ in range(reps)]  # noqa: B023
            sealed = seal(text)
            seal_t = [timed(lambda: seal(text)) for _ in range(reps)]  # noqa: B023
            unseal_t = [timed(lambda: unseal(sealed)) for _ in range(reps)]  # noqa: B023
            print(
                f"| {label} | {ms(dump)} | {ms(seal_t)} | {ms(unseal_t)} | "
                f"{len(sealed) / max(1, len(text)):.2f} x |"
            )

        if options.bulk_devices:
            rows = [{"id": f"bulk-{i:07d}"} for i in range(options.bulk_devices)]
            plain = timed(lambda: post("/v0/devices/bulk/", rows))
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE inventory_device CASCADE")
            keyed = timed(lambda: post("/v0/devices/bulk/", rows, "bulk-key"))
            replayed = timed(lambda: post("/v0/devices/bulk/", rows, "bulk-key"))
            print(
                f"\nPOST /v0/devices/bulk/ of {options.bulk_devices:,} devices, in process: no key "
                f"{plain:.2f} s (ceiling), new key {keyed:.2f} s, replay {replayed:.2f} s; "
                f"load {os.getloadavg()[0]:.2f}"
            )

        # --- purge ---------------------------------------------------------------------------------
        table = IdempotentRequest._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (tenant_id, principal, key, fingerprint, method, path, claim, "
                "status_code, content_type, body, created_at, expires_at) "
                "SELECT 1, 'key:1', 'purge-' || n, repeat('f', 64), 'POST', '/v0/devices/', "
                "gen_random_uuid(), 201, 'application/json', repeat('x', 1000), "
                "now() - interval '2 days', now() - interval '1 day' "
                "FROM generate_series(1, %s) AS n",
                [options.purge_rows],
            )
            cursor.execute(f"VACUUM ANALYZE {table}")
        spent = timed(purge_expired)
        batches = -(-options.purge_rows // PURGE_BATCH_SIZE)
        print(
            f"\npurge of {options.purge_rows:,} expired rows of ~1 KB: {spent:.2f} s in {batches} batches of "
            f"{PURGE_BATCH_SIZE}: {spent / batches * 1000:.1f} ms per batch; load {os.getloadavg()[0]:.2f}"
        )
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
