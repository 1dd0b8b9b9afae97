"""Database faults: PostgreSQL restarted under load behind a real gunicorn.

The test runs its own PostgreSQL (and Redis, for the cache), migrated from scratch, so it
may stop and restart them; the shared servers other test runs use are never touched.
Threads poll the API (DRF views, the plain inbox view) and a device reports (its PUT, settled
in the web process's batches, ``commands.coalesce``; of a command that does not exist, so its
answer is a 404 while the database is up) while PostgreSQL goes down and comes back: every
answer is the path's usual one or a clean 503 JSON envelope with ``Retry-After``, never a 500
or a hang, and the same web processes answer as usual again once the database is back.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import wait_until
from tests.faults import PostgresServer, Processes, RedisServer, free_port, wait_port

pytestmark = pytest.mark.faults

TIMEOUT = 10.0  # seconds; a request that takes longer counts as a hang
AFTER_RECOVERY = 25  # answers on each path after the recovery, all of which must be usual
#: A device's report of a command that does not exist: 404 while the database answers.
REPORT = "/commands/v0/status/2147483000/"
REPORTED = {"state": "Command Acknowledged"}


def usual(path: str) -> int:
    """The status of ``path``'s answer while the database is up."""
    return 404 if path == REPORT else 200


@dataclass
class Server:
    base: str
    procs: Processes
    admin_key: str
    device_id: str
    device_token: str
    pg: PostgresServer
    web: Any = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    pg = PostgresServer()
    cache = RedisServer(tmp_path)
    procs: Processes | None = None
    try:
        pg.start()
        cache.start()
        url = pg.create_database("faults")
        procs = Processes(
            tmp_path,
            {
                "DATABASE_URL": url,
                "REDIS_URL": cache.url(0),
                "CELERY_BROKER_URL": cache.url(1),
                "DB_CONN_MAX_AGE": "60",  # persistent connections, as in production
                "AUTH_CACHE_SECONDS": "0",  # every request looks its token up in the database
                "CELERY_TASK_ALWAYS_EAGER": "0",
                "RATE_LIMIT_KEY_PER_MINUTE": "0",  # the pollers are the load, not abuse
                "RATE_LIMIT_DEVICE_PER_MINUTE": "0",
            },
        )
        started = time.monotonic()
        procs.manage("migrate", "--noinput", "-v0")
        procs.manage("create_tenant", "acme")
        admin_key = (
            procs.manage("create_api_key", "--tenant", "acme", "--role", "admin").strip().splitlines()[-1]
        )
        print(f"own PostgreSQL migrated in {time.monotonic() - started:.1f}s")
        port = free_port()
        web = procs.start(
            "web",
            "-m",
            "gunicorn",
            "config.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "-k",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "30",
        )
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        created = requests.post(
            f"{base}/v0/devices/",
            json={"id": "dev-db-1", "os": "android"},
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=TIMEOUT,
        )
        assert created.status_code == 201, created.text
        token = created.json()["content"]["token"]
        yield Server(base, procs, admin_key, "dev-db-1", token, pg, web)
    finally:
        if procs is not None:
            procs.stop_all()
        cache.stop()
        pg.cleanup()


@dataclass
class Poller:
    """Threads requesting ``paths`` in a loop, recording (time, path, status, body, headers)."""

    server: Server
    results: list[tuple[float, str, int, Any, dict[str, str]]] = field(default_factory=list)
    errors: list[tuple[float, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def targets(self) -> list[tuple[str, str]]:
        """(path, token) of each poller; a path of :data:`REPORT` is PUT, the others GET."""
        s = self.server
        return [
            (REPORT, s.device_token),
            ("/v0/operations/", s.admin_key),
            ("/v0/devices/", s.admin_key),
            (f"/v2/command-inbox/?device_id={s.device_id}", s.device_token),
            (f"/commands/v0/status/?device={s.device_id}", s.device_token),
        ]

    def run(self, path: str, token: str) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            started = time.monotonic()
            headers = {"Authorization": f"Bearer {token}"}
            try:
                if path == REPORT:
                    resp = session.put(
                        self.server.base + path, json=REPORTED, headers=headers, timeout=TIMEOUT
                    )
                else:
                    resp = session.get(self.server.base + path, headers=headers, timeout=TIMEOUT)
            except requests.RequestException as exc:
                self.errors.append((started, path, repr(exc)))
                continue
            try:
                body = resp.json()
            except ValueError:
                body = resp.text[:500]
            self.results.append((started, path, resp.status_code, body, dict(resp.headers)))
            time.sleep(0.02)

    def __enter__(self) -> Poller:
        self.threads = [threading.Thread(target=self.run, args=t, daemon=True) for t in self.targets()]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(TIMEOUT + 5)

    def since(self, moment: float) -> list[tuple[float, str, int, Any, dict[str, str]]]:
        return [r for r in list(self.results) if r[0] >= moment]


def _summary(results: list[tuple[float, str, int, Any, dict[str, str]]]) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for _, path, status, _, _ in results:
        counts[path, status] = counts.get((path, status), 0) + 1
    return counts


def _answers_since(poller: Poller, moment: float, paths: set[str]) -> int:
    """The fewest answers any of ``paths`` has had to requests started since ``moment``."""
    recent = [r[1] for r in poller.since(moment)]
    return min(recent.count(path) for path in paths)


def _all_ok_since(poller: Poller, moment: float, paths: set[str]) -> bool:
    recent = poller.since(moment)
    return {r[1] for r in recent if r[2] == usual(r[1])} >= paths


def test_postgresql_restart_under_load_answers_503_then_recovers_by_itself(server: Server) -> None:
    with Poller(server) as poller:
        paths = {path for path, _ in poller.targets()}
        try:
            wait_until(lambda: _all_ok_since(poller, 0, paths), timeout=30, what="200s before the fault")
        except AssertionError:
            print([r[1:4] for r in poller.results[-8:]], poller.errors[-4:])
            raise

        down = time.monotonic()
        server.pg.stop(signal.SIGINT)  # fast shutdown: open sessions are cut
        try:
            wait_until(
                lambda: {r[1] for r in poller.since(down + 0.5) if r[2] == 503} >= paths,
                timeout=30,
                what="a 503 from every path during the outage",
            )
        except AssertionError:
            print(_summary(poller.since(down)), poller.errors[:3])
            raise
        time.sleep(2)  # the outage itself: PostgreSQL stays down a while longer
        up = time.monotonic()
        server.pg.start()
        back = wait_until(
            lambda: _all_ok_since(poller, time.monotonic() - 1, paths) and time.monotonic(),
            timeout=30,
            what="200s again after the restart",
        )
        # Every path answers AFTER_RECOVERY more times (from half a second after the first 200s
        # on: requests already under way may still fail); each of those must be a 200.
        settled = back + 0.5
        wait_until(
            lambda: _answers_since(poller, settled, paths) >= AFTER_RECOVERY,
            timeout=30,
            what=f"{AFTER_RECOVERY} answers on every path after the recovery",
        )

    assert server.web.poll() is None, "the web server died"
    assert not poller.errors, poller.errors[:5]  # no hang, no dropped connection
    statuses: dict[int, int] = {}
    for _, _, status, _, _ in poller.results:
        statuses[status] = statuses.get(status, 0) + 1
    print(
        f"{len(poller.results)} requests: {statuses}; outage {up - down:.1f}s,"
        f" recovered {back - up:.1f}s after PostgreSQL started"
    )
    unusual = [r[:4] for r in poller.results if r[2] not in (usual(r[1]), 503)]
    assert not unusual, unusual[:5]
    for _, path, status, body, headers in poller.results:
        if status == 503:
            assert isinstance(body, dict), (path, body)
            assert body["code"] == 503 and body["message"] and body["errors"] == {}, (path, body)
            assert headers.get("Retry-After") == "5", (path, headers)
            assert headers.get("Content-Type", "").startswith("application/json"), (path, headers)
    assert all(r[2] == usual(r[1]) for r in poller.since(settled)), "503s after recovery"
    log = server.procs.log("web")
    assert "Traceback" not in log and "Internal Server Error" not in log, log[-3000:]
