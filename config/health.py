"""``GET /healthz`` (the process answers) and ``GET /readyz`` (what it needs answers too).

Both are plain Django views without authentication, for load balancers and orchestrators.

- ``/healthz`` is liveness: 200 as long as the process serves requests. It touches no
  database, cache or broker, so a PostgreSQL outage never makes an orchestrator restart
  every web process (which would not help).
- ``/readyz`` is readiness: the database, the cache and the Celery broker are each asked
  a trivial question (``SELECT 1``, a cache read, a broker ping) at the same time, each
  within ``READYZ_TIMEOUT_SECONDS``. 200 when all answer; 503 with ``{"status":
  "unavailable", "down": [...], "checks": {...}}`` naming what is down otherwise (the
  error's class only: the body is public; the message goes to the log).

``GET /`` still answers ``{"status": "ok"}`` (server/urls.py), as before.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)

#: How long each check of ``/readyz`` may take before it counts as down (they run at once).
READYZ_TIMEOUT_SECONDS = 2.0

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@functools.cache
def broker_redis(url: str) -> redis.Redis:
    """One client (and connection pool) per broker URL for this process, with short timeouts:
    ``/readyz`` pings it and ``/metrics`` reads the queue's length with it."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=READYZ_TIMEOUT_SECONDS, socket_timeout=READYZ_TIMEOUT_SECONDS
    )


def check_database() -> None:
    """``SELECT 1`` on a connection of this check's own thread, closed afterwards."""
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def check_cache() -> None:
    cache.get("readyz:probe")


def check_broker() -> None:
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith(REDIS_SCHEMES):
        broker_redis(url).ping()
    elif url.startswith("filesystem://"):
        folder = str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if not os.access(folder, os.W_OK):
            raise OSError(f"broker folder {folder} is not writable")
    elif not url.startswith("memory://"):
        from kombu import Connection  # amqp:// and the like, rarely used here

        with Connection(url, connect_timeout=READYZ_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, timeout=READYZ_TIMEOUT_SECONDS)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}


def run_checks(timeout: float = READYZ_TIMEOUT_SECONDS) -> dict[str, dict[str, Any]]:
    """Each check's ``{"ok": bool, "ms": float, "error": str}``, all run at once; one still
    running after ``timeout`` counts as down ("timed out") and is left to finish on its own."""
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="readyz")
    started = time.monotonic()

    def timed(check: Callable[[], None]) -> float:
        check()
        return round((time.monotonic() - started) * 1000, 1)

    futures = {name: pool.submit(timed, check) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=timeout)
    pool.shutdown(wait=False)
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        if not future.done():
            logger.warning("readyz: %s did not answer within %gs", name, timeout)
            results[name] = {"ok": False, "error": f"timed out after {timeout:g}s"}
        elif (error := future.exception()) is not None:
            # The answer is public: the error's class only. Its message, which may name hosts
            # and ports, goes to the log.
            logger.warning("readyz: %s is down: %s: %s", name, type(error).__name__, error)
            results[name] = {"ok": False, "error": type(error).__name__}
        else:
            results[name] = {"ok": True, "ms": future.result()}
    return results


@csrf_exempt
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. No database, cache or broker."""
    return JsonResponse({"status": "ok"})


@csrf_exempt
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 if the database, the cache and the broker answer, else 503 naming them."""
    checks = run_checks()
    down = [name for name, result in checks.items() if not result["ok"]]
    if down:
        body = {"status": "unavailable", "down": down, "checks": checks}
        response = JsonResponse(body, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"status": "ok", "down": [], "checks": checks})
