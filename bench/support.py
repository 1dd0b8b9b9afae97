"""Helpers shared by ``bench/fanout.py`` and ``bench/inbox_load.py``: a scratch PostgreSQL
database, the project's processes (gunicorn, a Celery worker) started as the operator
would start them, a free port, percentiles and a one-line description of the machine."""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        self.name = parsed.path.lstrip("/")
        self.admin_url = parsed._replace(path="/postgres").geturl()

    def recreate(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)


def project_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of conformance/run.sh: PostgreSQL, Redis as cache and broker."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "DEBUG": "0",
        "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
        "ALLOWED_HOSTS": "*",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def start_gunicorn(env: dict[str, str], port: int, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """The project's WSGI application served on ``port``: by gunicorn with ``args``, or by
    granian when ``args`` starts with ``granian`` (the rest are granian's options)."""
    if args[:1] == ["granian"]:
        command = [
            str(BIN / "granian"),
            "--interface",
            "wsgi",
            "config.wsgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args[1:],
        ]
    else:
        command = [str(BIN / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}", "--timeout", "600", *args]
    with log.open("ab") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/")
    return server


def start_worker(
    env: dict[str, str],
    log: Path,
    concurrency: int = 1,
    queues: str = "celery,webhooks",
    name: str = "worker",
) -> subprocess.Popen[bytes]:
    """``celery -A config worker -c N -Q QUEUES``; returns once it logged that it is ready."""
    start = log.stat().st_size if log.exists() else 0
    command = [str(BIN / "celery"), "-A", "config", "worker", "-l", "info", "-c", str(concurrency)]
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [*command, "-Q", queues, "-n", f"{name}@%h"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with log.open("rb") as handle:
            handle.seek(start)
            if b" ready." in handle.read():
                return worker
        if worker.poll() is not None:
            raise SystemExit(f"the Celery worker exited; see {log}")
        time.sleep(0.1)
    raise SystemExit(f"the Celery worker did not become ready; see {log}")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"median {statistics.median(ms):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
        f"min {min(ms):.1f} ms, max {max(ms):.1f} ms (n={len(ms)})"
    )


def machine(admin_url: str) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    pg = row[0] if row else "?"
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem_kb // 1024 // 1024} GiB RAM, PostgreSQL {pg}, "
        f"Python {sys.version.split()[0]}; load average {' '.join(load)}; code at {revision()}"
    )


def revision() -> str:
    """The commit measured, and whether the working tree had uncommitted application changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip()

    head = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    dirty = [path for path in dirty if not path.startswith(("bench/", "docs/", "tests/"))]
    return f"{head}" + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")


def pgbench_tps(database: Database, seconds: float, clients: int = 1, threads: int = 1) -> float:
    """``pgbench -N -c<clients> -j<threads>`` for ``seconds`` (at least 2) on a scratch database
    of ``database``'s server, dropped after: the write ceiling a figure stands beside."""
    scratch = Database(database.url + "_pgbench")
    scratch.recreate()
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "10", scratch.url], check=True, capture_output=True)
        done = subprocess.run(
            ["pgbench", "-N", f"-c{clients}", f"-j{threads}", f"-T{max(2, round(seconds))}", scratch.url],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        scratch.drop()
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    return float(found.group(1)) if found else 0.0
