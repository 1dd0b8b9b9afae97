"""Benchmark of the bulk device import: ``POST /v0/devices/bulk/`` over real HTTP, and
``manage.py import_devices`` on a CSV file, both on PostgreSQL.

    .venv/bin/python bench/import_devices.py [--devices 100000] [--runs 3]
        [--database-url postgres://postgres@127.0.0.1:5432/bench_import]

The script creates the database named in ``--database-url`` (or ``DATABASE_URL``), migrates
it, serves the project with gunicorn on a free port, and drops the database at the end
(``--keep`` leaves it). Each run starts from an empty device table. Figures are wall-clock
seconds seen by the client: for the API, from sending the request to having the whole
answer (with every new device token); for the command, the whole process, start-up included.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402  (the repository root is on the path only now)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_import"
OSES = ["android", "ios", "windows", "linux"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Sao_Paulo"]


def make_devices(count: int) -> list[dict[str, object]]:
    """Realistic rows: every field set, two tags, a third of them in a group."""
    return [
        {
            "id": f"dev_{i:07d}",
            "name": f"Device {i}",
            "serial": f"SN{i:010d}",
            "model": f"Model {i % 17}",
            "os": OSES[i % 4],
            "os_version": f"{10 + i % 5}.{i % 3}",
            "state": "active" if i % 10 else "inactive",
            "timezone": ZONES[i % 5],
            "tags": [f"site-{i % 50}", "bench"],
            **({"groups": ["bench-group"]} if i % 3 == 0 else {}),
        }
        for i in range(count)
    ]


def write_csv(devices: list[dict[str, object]], path: Path) -> None:
    fields = ["id", "name", "serial", "model", "os", "os_version", "state", "timezone", "tags", "groups"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for device in devices:
            row = dict(device)
            row["tags"] = ";".join(device["tags"])  # type: ignore[arg-type]
            row["groups"] = ";".join(device.get("groups", []))  # type: ignore[arg-type]
            writer.writerow(row)


class Database(support.Database):
    """The scratch database, and the device table this benchmark empties and counts."""

    def empty_devices(self) -> None:
        with self.connect() as conn:
            conn.execute("TRUNCATE inventory_device CASCADE")
            conn.execute("VACUUM ANALYZE inventory_device")

    def count_devices(self) -> int:
        with self.connect() as conn:
            row = conn.execute("SELECT count(*) FROM inventory_device").fetchone()
            return int(row[0]) if row else 0


manage, free_port = support.manage, support.free_port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_URL)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--skip-command", action="store_true")
    options = parser.parse_args()

    db = Database(options.database_url)
    env = {
        **os.environ,
        "DATABASE_URL": db.url,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-import-secret-key-0123456789",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("REDIS_URL", None)  # the auth cache and broker are not what is measured
    env.pop("CELERY_BROKER_URL", None)
    env["VAR_DIR"] = tempfile.mkdtemp(prefix="bench-import-var-")

    print(f"machine: {support.machine(db.admin_url)}")
    print(f"database: {db.url}; {options.devices:,} devices per run, {options.runs} run(s)")
    db.recreate()
    server = None
    try:
        manage(env, "migrate", "--noinput", "-v0")
        manage(env, "create_tenant", "bench")
        key = manage(env, "create_api_key", "--tenant", "bench", "--role", "admin").strip().splitlines()[-1]
        devices = make_devices(options.devices)
        results: dict[str, list[float]] = {}

        if not options.skip_api:
            port = free_port()
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "gunicorn"),
                    "config.wsgi",
                    "-b",
                    f"127.0.0.1:{port}",
                    "-w",
                    "2",
                    "--timeout",
                    "600",
                ],
                cwd=ROOT,
                env=env,
            )
            base = f"http://127.0.0.1:{port}"
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {key}"
            for _ in range(100):
                try:
                    session.get(f"{base}/", timeout=5)
                    break
                except requests.RequestException:
                    time.sleep(0.1)
            group = session.post(f"{base}/v0/groups/", json={"name": "bench-group"}, timeout=10)
            group.raise_for_status()
            body = json.dumps(devices).encode()
            print(f"request body: {len(body) / 1e6:.1f} MB")
            for run in range(options.runs):
                db.empty_devices()
                start = time.perf_counter()
                response = session.post(
                    f"{base}/v0/devices/bulk/",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=600,
                )
                elapsed = time.perf_counter() - start
                if response.status_code != 201:
                    raise SystemExit(f"bulk import answered {response.status_code}: {response.text[:500]}")
                created = response.json()["content"]["created"]
                assert created == options.devices == db.count_devices(), created
                results.setdefault("POST /v0/devices/bulk/", []).append(elapsed)
                print(
                    f"  api run {run + 1}: {elapsed:.2f} s ({options.devices / elapsed:,.0f} devices/s)"
                    f"; load {os.getloadavg()[0]:.1f}"
                )
            # One of the new tokens works: the import is usable, not just fast.
            token = response.json()["content"]["devices"][-1]["token"]
            probe = requests.get(
                f"{base}/v0/devices/", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert probe.status_code == 403, probe.status_code  # authenticated as a device

        if not options.skip_command:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "devices.csv"
                write_csv(devices, path)
                print(f"CSV file: {path.stat().st_size / 1e6:.1f} MB")
                for run in range(options.runs):
                    db.empty_devices()
                    start = time.perf_counter()
                    manage(env, "import_devices", "--tenant", "bench", "-v0", str(path))
                    elapsed = time.perf_counter() - start
                    assert db.count_devices() == options.devices
                    results.setdefault("manage.py import_devices (CSV)", []).append(elapsed)
                    rate = options.devices / elapsed
                    load = os.getloadavg()[0]
                    print(
                        f"  command run {run + 1}: {elapsed:.2f} s ({rate:,.0f} devices/s); load {load:.1f}"
                    )

        print()
        print("| what | devices | best | median | runs |\n|---|---|---|---|---|")
        for what, times in results.items():
            best, median = min(times), statistics.median(times)
            print(f"| {what} | {options.devices:,} | {best:.2f} s | {median:.2f} s | {len(times)} |")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not options.keep:
            db.drop()


if __name__ == "__main__":
    main()
