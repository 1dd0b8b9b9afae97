"""Benchmark of continuous operations (issue 24), served for real: gunicorn, a Celery worker and
beat, PostgreSQL and Redis, as ``make run`` starts them.

    .venv/bin/python bench/continuous.py [--devices 100000] [--operations 10] [--changes 100]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_continuous]
        [--redis-url redis://127.0.0.1:6379/14]

(a) **The ceiling**: ``POST /v0/devices/bulk/`` of N devices into a tenant without continuous
    operations (the import's own speed), then K snapshot operations over them, created at once:
    the seconds until all N x K commands are written (the fan-out's speed on this machine).
(b) **Continuous**: the devices emptied, K CONTINUOUS operations whose query matches every one
    of them (``tags__contains: ["bench"]``) created and dispatched empty, then the same import:
    its answer time (against (a)'s: the goal is at least 0.5 of its speed) and the seconds from
    its answer until all N x K commands are written (the goal: 30 s), read from the operations'
    counters, which each chunk commits with its rows.
(c) **One device change**: M times, a device created with the matching tag
    (``POST /v0/devices/``), then its inbox polled (``GET /v2/command-inbox/``, its own token)
    every 20 ms until it has handed out the K operations' commands: the time from sending the
    create to the poll that completes them (goal: p99 5 s). Its ceiling: M times, a snapshot
    operation on one device created and its command polled the same way.

The script creates the database named in ``--database-url``, migrates it and drops it at the end
(``--keep`` leaves it); it empties the Redis database of ``--redis-url``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402  (the repository root is on the path only now)
from bench.import_devices import make_devices  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_continuous"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
QUERY = {"filters": {"tags__contains": ["bench"]}, "device_type": "all"}


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.db = support.Database(options.database_url)
        self.work = Path(tempfile.mkdtemp(prefix="bench-continuous-"))
        self.env = support.project_env(options.database_url, options.redis_url, VAR_DIR=str(self.work))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.session = requests.Session()
        self.base = ""

    # --- set-up -------------------------------------------------------------------------------

    def start(self) -> None:
        redis.Redis.from_url(self.options.redis_url).flushdb()
        self.db.recreate()
        support.manage(self.env, "migrate", "--noinput", "-v0")
        support.manage(self.env, "create_tenant", "bench")
        key = support.manage(self.env, "create_api_key", "--tenant", "bench", "--role", "admin")
        self.session.headers["Authorization"] = f"Bearer {key.strip().splitlines()[-1]}"
        port = support.free_port()
        log = self.work / "processes.log"
        self.processes.append(support.start_gunicorn(self.env, port, ["-w", "2"], log))
        self.processes.append(support.start_worker(self.env, log, concurrency=2))
        with log.open("ab") as out:
            beat = [str(support.BIN / "celery"), "-A", "config", "beat", "-l", "warning"]
            beat += ["-s", str(self.work / "beat-schedule")]
            self.processes.append(
                subprocess.Popen(beat, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            )
        self.base = f"http://127.0.0.1:{port}"
        self.post("/v0/groups/", {"name": "bench-group"})

    def stop(self) -> None:
        for process in reversed(self.processes):
            support.stop(process)
        if not self.options.keep:
            self.db.drop()

    def post(self, path: str, body: Any) -> Any:
        response = self.session.post(f"{self.base}{path}", json=body, timeout=600)
        if response.status_code != 201:
            raise SystemExit(f"POST {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()["content"]

    def sql(self, statement: str, params: Any = None) -> Any:
        with self.db.connect() as conn:
            row = conn.execute(statement, params).fetchone()
            return row[0] if row else None

    def empty(self) -> None:
        with self.db.connect() as conn:
            conn.execute("TRUNCATE inventory_device, operations_operation CASCADE")
            conn.execute("VACUUM ANALYZE inventory_device")

    # --- the measurements ---------------------------------------------------------------------

    def import_devices(self, body: bytes) -> float:
        start = time.perf_counter()
        response = self.session.post(
            f"{self.base}/v0/devices/bulk/",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=600,
        )
        elapsed = time.perf_counter() - start
        if response.status_code != 201:
            raise SystemExit(f"bulk import answered {response.status_code}: {response.text[:300]}")
        return elapsed

    def operations(self, count: int, continuous: bool) -> list[str]:
        body = {"operation_type": "REBOOT", "operation_device_query": QUERY}
        if continuous:
            body["target_selection"] = "CONTINUOUS"
        return [self.post("/v0/operations/", body)["id"] for _ in range(count)]

    def wait_written(self, ids: list[str], total: int, timeout: float) -> float:
        """Seconds until the operations' counters say ``total`` commands are written."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            written = self.sql(
                "SELECT sum(resolved_count) FROM operations_operation WHERE id = ANY(%s)", [ids]
            )
            if int(written or 0) >= total:
                return time.perf_counter() - start
            time.sleep(0.1)
        raise SystemExit(f"only {written} of {total} commands written after {timeout} s")

    def wait_dispatched(self, ids: list[str]) -> None:
        while self.sql(
            "SELECT count(*) FROM operations_operation WHERE id = ANY(%s) AND state = 50", [ids]
        ) < len(ids):
            time.sleep(0.05)

    def to_inbox(self, make: Any, expected: int) -> float:
        """Seconds from calling ``make`` (which returns the device's id and token) to the poll
        that has handed out ``expected`` commands to it."""
        start = time.perf_counter()
        device_id, token = make()
        seen: set[int] = set()
        headers = {"Authorization": f"Bearer {token}"}
        while time.perf_counter() - start < 60:
            answer = requests.get(
                f"{self.base}/v2/command-inbox/", params={"device_id": device_id}, headers=headers, timeout=10
            )
            if answer.status_code == 200:
                seen.update(command["id"] for command in answer.json()["content"]["results"])
            if len(seen) >= expected:
                return time.perf_counter() - start
            time.sleep(0.02)
        raise SystemExit(f"{device_id}: {len(seen)} of {expected} commands after 60 s")

    def run(self) -> None:
        n, k, m = self.options.devices, self.options.operations, self.options.changes
        body = json.dumps(make_devices(n)).encode()
        print(f"machine: {support.machine(self.db.admin_url)}")
        print(f"{n:,} devices, {k} operations, {m} single changes; request body {len(body) / 1e6:.1f} MB")

        # (a) the ceiling: the import alone, then K snapshot fan-outs over its devices.
        self.empty()
        plain = self.import_devices(body)
        print(f"(a) import without continuous operations: {plain:.2f} s ({n / plain:,.0f} devices/s)")
        started = time.perf_counter()
        snapshots = self.operations(k, continuous=False)
        self.wait_written(snapshots, n * k, 600)
        fan_outs = time.perf_counter() - started
        print(f"(a) {k} snapshot fan-outs, {n * k:,} commands written in {fan_outs:.2f} s (the ceiling)")

        # (b) continuous operations, then the same import.
        self.empty()
        continuous = self.operations(k, continuous=True)
        self.wait_dispatched(continuous)
        joined = self.import_devices(body)
        written = self.wait_written(continuous, n * k, 600)
        total = self.sql(
            "SELECT count(*) FROM commands_commandstatus WHERE operation_id = ANY(%s)", [continuous]
        )
        print(
            f"(b) import with {k} continuous operations: {joined:.2f} s ({n / joined:,.0f} devices/s), "
            f"{plain / joined:.2f} of the speed without; {total:,} commands written {written:.2f} s after "
            f"its answer (goal 30 s); load {os.getloadavg()[0]:.1f}"
        )

        # (c) one device change at a time, to the inbox.
        counter = iter(range(10**9))

        def create_device() -> tuple[str, str]:
            device_id = f"single-{next(counter):05d}"
            made = self.post("/v0/devices/", {"id": device_id, "tags": ["bench"]})
            return device_id, made["token"]

        latencies = [self.to_inbox(create_device, k) for _ in range(m)]
        print(
            f"(c) a device created, to its {k} continuous commands in its inbox: "
            f"{support.summary_ms(latencies)}"
        )
        print(f"    p99 {support.percentile(latencies, 0.99) * 1000:.0f} ms (goal 5,000 ms)")

        def snapshot_on_one() -> tuple[str, str]:
            device_id = f"snap-{next(counter):05d}"
            made = self.post("/v0/devices/", {"id": device_id, "tags": ["other"]})
            self.post(
                "/v0/operations/",
                {"operation_type": "REBOOT", "operation_device_query": {"devices": [device_id]}},
            )
            return device_id, made["token"]

        ceiling = [self.to_inbox(snapshot_on_one, 1) for _ in range(m)]
        print(f"(c) ceiling: a snapshot operation on one device, to its inbox: {support.summary_ms(ceiling)}")
        print(f"    p99 {support.percentile(ceiling, 0.99) * 1000:.0f} ms")
        print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        print(f"median single change {statistics.median(latencies) * 1000:.0f} ms")
        self.empty()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--operations", type=int, default=10)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    bench = Bench(parser.parse_args())
    try:
        bench.start()
        bench.run()
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
