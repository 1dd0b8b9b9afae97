"""``/readyz`` behind a real gunicorn while its PostgreSQL is stopped and started again.

The test runs its own PostgreSQL and Redis (tests/faults.py), never the shared ones: with
the database stopped, ``/readyz`` answers 503 naming ``database`` (and only it), within its
short timeout, while ``/healthz`` keeps answering 200; once PostgreSQL is back, the same
web process answers ready again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_until
from tests.faults import PostgresServer, Processes, RedisServer, free_port, wait_port

pytestmark = pytest.mark.faults

TIMEOUT = 10.0  # seconds; /readyz gives each check 2 s, so this is a hang


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, PostgresServer]]:
    pg = PostgresServer()
    redis_server = RedisServer(tmp_path)
    procs: Processes | None = None
    try:
        pg.start()
        redis_server.start()
        procs = Processes(
            tmp_path,
            {
                "DATABASE_URL": pg.create_database("readyz"),
                "REDIS_URL": redis_server.url(0),
                "CELERY_BROKER_URL": redis_server.url(1),
                "DB_CONN_MAX_AGE": "60",  # persistent connections, as in production
            },
        )
        port = free_port()
        procs.start("web", "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1")
        wait_port(port)
        yield f"http://127.0.0.1:{port}", pg
    finally:
        if procs is not None:
            procs.stop_all()
        redis_server.stop()
        pg.cleanup()


def test_readyz_names_the_database_while_postgresql_is_stopped(served: tuple[str, PostgresServer]) -> None:
    base, pg = served
    ready = requests.get(f"{base}/readyz", timeout=TIMEOUT)
    assert ready.status_code == 200, ready.text
    assert ready.json()["down"] == []

    pg.stop()
    down = requests.get(f"{base}/readyz", timeout=TIMEOUT)
    assert down.status_code == 503, down.text
    body = down.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["database"]
    assert body["checks"]["cache"]["ok"] and body["checks"]["broker"]["ok"]
    assert down.headers["Retry-After"]
    alive = requests.get(f"{base}/healthz", timeout=TIMEOUT)
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})

    pg.start()
    wait_until(
        lambda: requests.get(f"{base}/readyz", timeout=TIMEOUT).status_code == 200,
        timeout=30,
        what="/readyz ready again after PostgreSQL restarted",
    )
