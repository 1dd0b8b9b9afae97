"""What an idle device's poll costs while Redis is down (issue 23): the 304 with Redis up (one
Redis round trip, no database) against the poll answered from PostgreSQL with Redis stopped
(the token looked up there, the hand-out statement, a 200 with nothing), through the whole view
stack (Django's test client), in one process, rounds interleaved. Starts a Redis of its own.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_redis503 SECRET_KEY=x \\
        .venv/bin/python bench/cache_outage_poll.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

POLLS = 1000
ROUNDS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        time.sleep(0.01)
    return proc


def main() -> None:
    port = free_port()
    redis_proc = start_redis(port)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    os.environ["RATE_LIMIT_DEVICE_PER_MINUTE"] = "0"
    import django

    django.setup()
    import logging

    from django.test import Client
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases

    from config.errors import CacheUnavailable
    from inventory.services import create_device, get_or_create_tenant

    logging.disable(logging.WARNING)  # one warning per request would be timed too
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        tenant, _ = get_or_create_tenant("bench")
        _, token = create_device(tenant.pk, {"device_id": "bench-1"})
        client = Client()
        headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        params = {"device_id": "bench-1"}

        def rate(expected: int, etag: str | None) -> float:
            extra: dict[str, Any] = {**headers, "HTTP_IF_NONE_MATCH": etag} if etag else headers
            started = time.perf_counter()
            for _ in range(POLLS):
                status = client.get("/v2/command-inbox/", params, **extra).status_code
                assert status == expected, status
            return (time.perf_counter() - started) / POLLS * 1e6

        results: dict[str, list[float]] = {"304, Redis up": [], "200 from PostgreSQL, Redis down": []}
        for _ in range(ROUNDS):
            etag = client.get("/v2/command-inbox/", params, **headers)["ETag"]
            results["304, Redis up"].append(rate(304, etag))
            redis_proc.kill()
            redis_proc.wait()
            results["200 from PostgreSQL, Redis down"].append(rate(200, etag))
            redis_proc = start_redis(port)
            from django.core.cache import cache

            while True:  # the cache tries Redis again a second after its last failure
                try:
                    cache.get("probe")
                    break
                except CacheUnavailable:
                    time.sleep(0.05)
        for name, values in results.items():
            median = statistics.median(values)
            print(f"{name:32} median {median:7.1f} µs/poll  rounds {[round(v) for v in values]}")
    finally:
        teardown_databases(old, verbosity=0)
        redis_proc.kill()


if __name__ == "__main__":
    main()
