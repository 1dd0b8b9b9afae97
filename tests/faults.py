"""Throwaway servers for fault tests: a PostgreSQL and a Redis of the test's own, which it
may stop, kill and restart without touching the shared ones other test runs use, and the
project's processes (web, worker, beat) pointed at them through the environment.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from tests.conftest import ALL_QUEUES, ROOT, _process_env, beat_args, kill_group


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """``redis-server`` on a free port, keeping nothing on disk: a restart loses every message."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"redis-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.port)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        _stop(self.proc, sig)
        self.proc = None


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory (trust auth, owned by ``postgres`` since
    initdb refuses root), on a free port."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N"])

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=self.user, group=self.user)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self.starts += 1
        log = (self.dir / f"postgres-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
            group=self.user,
            start_new_session=True,
        )
        end = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT is PostgreSQL's fast shutdown (sessions are cut); SIGQUIT, a crash."""
        _stop(self.proc, sig)
        self.proc = None

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        self.stop(signal.SIGQUIT)
        shutil.rmtree(self.dir, ignore_errors=True)


class Processes:
    """The project's processes with a given environment on top of the test run's."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = {**_process_env(), **env}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def celery(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, "-m", "celery", "-A", "config", *args, **env)

    def worker(
        self, name: str = "worker", concurrency: int = 2, queues: str = ALL_QUEUES, **env: str
    ) -> subprocess.Popen[bytes]:
        """A worker of ``queues`` (every queue by default; see ``CeleryProcesses.worker``)."""
        return self.celery(
            name,
            "worker",
            "-l",
            "info",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            **env,
        )

    def beat(self, name: str = "beat", **env: str) -> subprocess.Popen[bytes]:
        return self.celery(name, *beat_args(self.tmp, name), **env)

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group (a worker and its pool children)."""
        proc = self.procs.pop(name, None)
        if proc is not None:
            kill_group(proc, sig, timeout=20)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)
