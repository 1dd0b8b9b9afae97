"""The launcher of ``make run``: a real PostgreSQL from the wheel, in a VAR_DIR of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from config import embedded_postgres

ROOT = Path(__file__).resolve().parent.parent

#: Run by the launcher: connects through DATABASE_URL, prints what it found, exits 7.
CHILD = """
import os, sys
import psycopg
url = os.environ["DATABASE_URL"]
var = os.environ["VAR_DIR"]
with psycopg.connect(url) as connection:
    database, = connection.execute("SELECT current_database()").fetchone()
with open(os.path.join(var, "postgres", "postmaster.pid")) as pidfile:
    postmaster = pidfile.readline().strip()
with open(os.path.join(var, "postgres.url")) as urlfile:
    written = urlfile.read().strip()
print(database, postmaster, written == url)
sys.exit(7)
"""


def _gone(pid: int, seconds: float = 10) -> bool:
    """Whether the process ends within ``seconds``: ``pg_ctl stop`` returns when postmaster.pid
    is removed, a moment before the process is gone (a zombie until it is reaped counts as gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_run_starts_the_server_runs_the_command_on_it_and_stops_it(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["VAR_DIR"] = str(var)

    done = subprocess.run(
        [sys.executable, "-m", "config.embedded_postgres", "run", "--", sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 7, done.stdout + done.stderr  # the command's own status
    database, postmaster, url_written = done.stdout.split()
    assert (database, url_written) == ("devops", "True")
    assert "PostgreSQL started" in done.stderr
    assert "PostgreSQL stopped" in done.stderr
    assert _gone(int(postmaster)), f"postgres {postmaster} still runs after the command ended"
    assert not embedded_postgres.is_running(var)
    assert not (var / "postgres.url").exists()
    assert (var / "postgres" / "PG_VERSION").exists()  # the data stay for the next run
    assert all(folder.is_dir() for folder in embedded_postgres.broker_folders(var).values())


def test_run_refuses_to_start_without_a_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "config.embedded_postgres", "run", "--"],
        cwd=ROOT,
        env={**os.environ, "VAR_DIR": str(tmp_path / "var")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    assert "run needs a command" in done.stderr
    assert not (tmp_path / "var").exists()


def test_the_url_names_the_socket_directory_quoted() -> None:
    assert (
        embedded_postgres.socket_url(Path("/srv/my var/postgres"))
        == "postgresql://postgres@/devops?host=/srv/my%20var/postgres"
    )
    assert embedded_postgres.socket_url(Path("/s"), "postgres", 5433).endswith("/postgres?host=/s&port=5433")
