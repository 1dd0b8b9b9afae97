"""A Mosquitto 2 broker of the project's own, with the dynamic-security plugin.

Contract section 14: the device channel runs on a standard MQTT broker, and Mosquitto 2 with
its dynamic-security plugin (which the server keeps in step with the devices) is the one the
project ships and tests. Three users start one the same way from here:

- ``make run`` (``runstack``) when a ``mosquitto`` binary is on the machine, under
  ``VAR_DIR/mosquitto`` like the embedded PostgreSQL;
- the test suite, on a free port in a temporary folder (``tests/conftest.py``);
- the benchmarks (``bench/``).

:func:`prepare` writes the dynamic-security file (with the server's own admin login) and the
broker's configuration; :func:`start` runs the broker and waits until it accepts connections.
The settings' ``MQTT_URL`` is then :attr:`Broker.url`.

Plumbing only: no app imports, nothing runs at import time.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from config.embedded_postgres import write_private

#: Where Debian, Ubuntu and the upstream packages put the plugin.
PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
#: The server's own broker login (a dynamic-security admin: it manages the devices' logins).
ADMIN_USER = "dos-server"
#: The first level of every topic of the device channel (contract section 14: ``dos/v1/...``).
TOPIC_ROOT = "dos"
#: QoS-1 messages the broker sends a client before its PUBACKs: room for the bridge to settle
#: one batch (``MQTT_BATCH_SIZE``, 1,000 by default) while the next ones already arrive. At
#: 1,000 the broker waited for each batch's acks before sending more, and the bridge sat idle
#: a third of its time (docs/performance.md, "Reports through MQTT"). A device never has more
#: than a few messages in flight, so the room costs nothing for them.
MAX_INFLIGHT_MESSAGES = 5000
MAX_QUEUED_MESSAGES = 100_000
#: Bytes of the largest MQTT packet the broker takes (1 MiB).
MAX_PACKET_SIZE = 1_048_576
#: The plugin's default access kinds, all denied on the project's broker.
DEFAULT_ACL_ACCESS = ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe")
#: The port devices expect; ``make run`` takes it when it is free.
DEFAULT_PORT = 1883


class MosquittoUnavailable(RuntimeError):
    """No ``mosquitto`` binary, no ``mosquitto_ctrl`` or no dynamic-security plugin here."""


@dataclass(frozen=True)
class Broker:
    """A prepared broker: its folder, port and the server's admin login."""

    folder: Path
    host: str
    port: int
    admin_user: str
    admin_password: str

    @property
    def url(self) -> str:
        """``MQTT_URL`` for the server: ``mqtt://admin:password@host:port``."""
        login = f"{quote(self.admin_user, safe='')}:{quote(self.admin_password, safe='')}"
        return f"mqtt://{login}@{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.folder / "mosquitto.conf"

    @property
    def dynsec_file(self) -> Path:
        return self.folder / "dynamic-security.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "mosquitto.log"


def binary() -> str | None:
    """The ``mosquitto`` executable (Debian installs it in /usr/sbin, often not on PATH)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def plugin() -> str | None:
    """The dynamic-security plugin's shared object, if installed."""
    for pattern in PLUGIN_GLOBS:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return str(found[0])
    return None


def available() -> bool:
    """Whether this machine can run the project's broker (binary, ``mosquitto_ctrl``, plugin)."""
    return bool(binary() and shutil.which("mosquitto_ctrl") and plugin())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nobody listens on ``host:port`` (``make run`` takes 1883 when it is)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def folder_of(var: Path) -> Path:
    """The zero-configuration run's broker folder (``make run``), beside ``var/postgres``."""
    return var / "mosquitto"


def url_file(var: Path) -> Path:
    """Where ``make run`` writes the running broker's ``MQTT_URL`` (mode 0600: it holds the admin
    password), for processes not started by it: the settings read it when neither ``MQTT_URL``
    nor ``DATABASE_URL`` is set, as they read ``var/postgres.url``."""
    return var / "mosquitto.url"


def configured_url(var: Path) -> str | None:
    """The URL ``make run``'s broker wrote, or None when none runs (or it never ran)."""
    try:
        return url_file(var).read_text().strip() or None
    except FileNotFoundError:
        return None


def prepare(folder: Path, port: int, host: str = "127.0.0.1", admin_password: str | None = None) -> Broker:
    """Write the broker's configuration and, on first use, its dynamic-security file.

    An existing dynamic-security file is kept (it holds the devices' logins the server made),
    with the admin password stored beside it (``admin-password``, mode 0600)."""
    if not available():
        raise MosquittoUnavailable("mosquitto, mosquitto_ctrl or the dynamic-security plugin is missing")
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "admin-password"
    broker = Broker(folder, host, port, ADMIN_USER, admin_password or "")
    if not broker.dynsec_file.exists():
        password = admin_password or secrets.token_urlsafe(24)
        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(broker.dynsec_file), ADMIN_USER, password],
            check=True,
            capture_output=True,
        )
        _let_admin_publish(broker.dynsec_file)
        password_file.write_text(password)
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    broker = Broker(folder, host, port, ADMIN_USER, password)
    broker.config_file.write_text(
        "\n".join(
            [
                # Started as root, Mosquitto switches to the user "mosquitto", who cannot read a
                # private folder; run as whoever starts it.
                f"user {pwd.getpwuid(os.geteuid()).pw_name}",
                f"listener {port} {host}",
                "allow_anonymous false",
                f"plugin {plugin()}",
                f"plugin_opt_config_file {broker.dynsec_file}",
                "persistence false",
                f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
                f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                # A device's largest valid update is under 100 KiB (commands.bridge): a client
                # sending a bigger packet is disconnected by the broker, unread by the bridge.
                f"max_packet_size {MAX_PACKET_SIZE}",
                "log_dest stdout",
                "",
            ]
        )
    )
    return broker


def _let_admin_publish(dynsec_file: Path) -> None:
    """Let the server's login publish on the device topics (``dos/#``): ``dynsec init`` gives its
    admin role subscribe and receive on ``#`` but publish only on ``$CONTROL``. And deny by
    default what no role allows (``dynsec init`` lets anyone receive and unsubscribe), so a
    device login reaches only what its role names (``inventory.broker_logins``). Written before
    the broker first starts, so no admin command is needed."""
    document = json.loads(dynsec_file.read_text())
    document["defaultACLAccess"] = dict.fromkeys(DEFAULT_ACL_ACCESS, False)
    for role in document["roles"]:
        if role["rolename"] == "admin":
            role["acls"].append({"acltype": "publishClientSend", "topic": f"{TOPIC_ROOT}/#", "allow": True})
    dynsec_file.write_text(json.dumps(document, indent=2))


def start(broker: Broker, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Run the prepared broker in a session of its own; return once it accepts TCP connections.

    Its output goes to :attr:`Broker.log_file`. The caller stops it (``terminate``)."""
    mosquitto = binary()
    if mosquitto is None:
        raise MosquittoUnavailable("mosquitto is not installed")
    with broker.log_file.open("ab") as log:
        process = subprocess.Popen(
            [mosquitto, "-c", str(broker.config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = broker.log_file.read_text(errors="replace")[-2000:]
            raise MosquittoUnavailable(f"mosquitto exited with {process.returncode}: {output}")
        try:
            with socket.create_connection((broker.host, broker.port), timeout=0.5):
                return process
        except OSError:
            if time.monotonic() > deadline:
                process.terminate()
                where = f"{broker.host}:{broker.port}"
                raise MosquittoUnavailable(f"mosquitto did not listen on {where}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a broker :func:`start` returned (SIGTERM, then SIGKILL)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


@dataclass(frozen=True)
class Local:
    """The zero-configuration run's broker, running: stop it with :func:`stop_local`."""

    broker: Broker
    process: subprocess.Popen[bytes]
    var: Path

    @property
    def device_url(self) -> str:
        """Where devices connect (the URL without the admin login)."""
        return f"mqtt://{self.broker.host}:{self.broker.port}"


def _pid_file(folder: Path) -> Path:
    return folder / "mosquitto.pid"


def _stop_leftover(folder: Path) -> None:
    """Stop a broker a previous run left behind (its launcher killed before it could), known by
    the pid it wrote and by its command line naming this folder's configuration."""
    try:
        pid = int(_pid_file(folder).read_text().strip())
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ValueError, OSError):
        return
    if str(folder / "mosquitto.conf") in command_line:
        try:
            os.kill(pid, 15)
        except ProcessLookupError:  # it ended meanwhile
            return
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def start_local(var: Path, host: str = "127.0.0.1") -> Local:
    """``make run``'s broker: prepared under ``var/mosquitto`` (logins kept from run to run), on
    1883 when it is free and else on any free port, its URL written to :func:`url_file`.
    Raises :class:`MosquittoUnavailable` when this machine has no Mosquitto or it fails."""
    folder = folder_of(var)
    _stop_leftover(folder)
    port = DEFAULT_PORT if port_free(DEFAULT_PORT, host) else free_port(host)
    broker = prepare(folder, port, host)
    process = start(broker)
    _pid_file(folder).write_text(f"{process.pid}\n")
    write_private(url_file(var), broker.url + "\n")  # it holds the admin password
    return Local(broker, process, var)


def stop_local(local: Local) -> None:
    """Stop :func:`start_local`'s broker and remove its URL file (processes started later see no
    broker rather than a dead one)."""
    url_file(local.var).unlink(missing_ok=True)
    stop(local.process)
    _pid_file(local.broker.folder).unlink(missing_ok=True)


def running_on(dynsec_file: Path) -> int | None:
    """The pid of a Mosquitto on this machine whose configuration loads ``dynsec_file``, or
    None. Why: the plugin keeps its logins in memory and writes them back over its file on its
    next change, so a file changed under a running broker is lost (and the broker would not
    know the new logins anyway): ``mqtt_sync_logins --offline`` refuses then. Reads each
    ``mosquitto -c CONFIG`` process's configuration for ``plugin_opt_config_file``."""
    wanted = dynsec_file.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not argv or Path(argv[0].decode()).name != "mosquitto" or b"-c" not in argv[:-1]:
                continue
            cwd = (entry / "cwd").resolve()
            config = cwd / argv[argv.index(b"-c") + 1].decode()
            lines = config.read_text(errors="replace").splitlines()
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            continue
        for line in lines:
            key, _, value = line.strip().partition(" ")
            if key == "plugin_opt_config_file" and (cwd / value.strip()).resolve() == wanted:
                return int(entry.name)
    return None
