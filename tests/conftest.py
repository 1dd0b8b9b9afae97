"""Shared fixtures: actors of two tenants (admin, operator, viewer, a device, a stranger),
an API client per actor, logged-in console (Django admin) clients, and real Celery
worker/beat processes for end-to-end tests.

Tests run against PostgreSQL and Redis (``make test`` sets DATABASE_URL and REDIS_URL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client

from config import mosquitto
from inventory.models import ConsoleUser, Device, Tenant
from inventory.services import create_api_key, create_device, get_or_create_tenant

ROOT = Path(__file__).resolve().parent.parent
#: ``-Q`` of a worker that runs everything: the default queue and the webhooks' (config/settings.py).
ALL_QUEUES = "celery,webhooks"


class Api:
    """A JSON client that carries one bearer token."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, Any]:
        headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(path, params or {}, **self._headers(headers))

    def _send(
        self, method: str, path: str, body: Any, raw: str | bytes | None, headers: dict[str, str]
    ) -> Any:
        data = raw if raw is not None else json.dumps(body)
        return getattr(self.client, method)(
            path, data=data, content_type="application/json", **self._headers(headers)
        )

    def post(self, path: str, body: Any = None, raw: str | bytes | None = None, **headers: str) -> Any:
        return self._send("post", path, body, raw, headers)

    def put(self, path: str, body: Any = None, raw: str | bytes | None = None, **headers: str) -> Any:
        return self._send("put", path, body, raw, headers)

    def patch(self, path: str, body: Any = None, raw: str | bytes | None = None, **headers: str) -> Any:
        return self._send("patch", path, body, raw, headers)

    def delete(self, path: str, **headers: str) -> Any:
        return self.client.delete(path, **self._headers(headers))


@dataclass
class Org:
    tenant: Tenant
    admin: Api
    operator: Api
    viewer: Api


def make_org(slug: str) -> Org:
    tenant, _ = get_or_create_tenant(slug)
    return Org(
        tenant=tenant,
        admin=Api(create_api_key(tenant, "admin", "admin")[1]),
        operator=Api(create_api_key(tenant, "operator", "operator")[1]),
        viewer=Api(create_api_key(tenant, "viewer", "viewer")[1]),
    )


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """Cached token lookups and inbox ETags must not leak between tests."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def org(db: None) -> Org:
    """Alice's organisation: the tenant under test."""
    return make_org("acme")


@pytest.fixture
def other_org(db: None) -> Org:
    """Another tenant, whose keys must never see ``org``'s objects."""
    return make_org("globex")


@dataclass
class DeviceActor:
    device: Device
    token: str
    api: Api


def add_device(tenant: Tenant, device_id: str, **fields: Any) -> DeviceActor:
    device, token = create_device(tenant.pk, {"device_id": device_id, **fields})
    return DeviceActor(device=device, token=token, api=Api(token))


def add_devices(tenant: Tenant, count: int) -> list[DeviceActor]:
    """``count`` devices ``dev-000``, ``dev-001``, ... of ``tenant``, each with its token."""
    return [add_device(tenant, f"dev-{i:03d}") for i in range(count)]


@pytest.fixture
def device(org: Org) -> DeviceActor:
    return add_device(org.tenant, "dev-1")


@pytest.fixture
def anonymous() -> Api:
    return Api(None)


# --- the console (Django admin) --------------------------------------------------------------


def superuser_console(username: str = "root") -> Client:
    """A client logged in to the console as a (new) superuser: every tenant, every screen."""
    client = Client()
    client.force_login(User.objects.create_superuser(username, "", "pw"))
    return client


def staff_console(username: str, tenant: Tenant | None) -> Client:
    """A client logged in as a staff user with every model permission, linked to ``tenant``
    (none: a staff user without a tenant), so that only the tenant scoping stands in the way."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    if tenant is not None:
        ConsoleUser.objects.create(user=user, tenant=tenant)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def console(db: None) -> Client:
    """The console as the superuser (see :func:`superuser_console`)."""
    return superuser_console()


# --- real Celery processes ----------------------------------------------------------------------


def _process_env() -> dict[str, str]:
    """The environment of worker/beat processes: the test database, this run's Redis DB."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    env["DATABASE_URL"] = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env["DB_CONN_MAX_AGE"] = "0"
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    return env


def beat_args(tmp: Path, name: str) -> list[str]:
    """``celery beat``'s arguments: the database scheduler (django-celery-beat), logging each send."""
    return [
        "beat",
        "-l",
        "info",
        "-s",
        str(tmp / f"{name}-schedule"),
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    ]


def kill_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal a process started in a session of its own and its children (a worker and its
    pool); SIGKILL them if they are still there after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def _serving(
    name: str, args: list[str], env: dict[str, str], log: Path, listening_at: Callable[[], str | None]
) -> Iterator[str]:
    """``python -m <args>`` serving ``config.wsgi`` with ``env`` until the block ends; yields its
    base URL (``listening_at``, None until known) once ``/admin/login/`` answers 200."""
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running() -> None:
        if server.poll() is not None:
            raise AssertionError(
                f"{name} exited with {server.returncode}:\n{log.read_text(errors='replace')}"
            )

    def listening() -> str | None:
        found = listening_at()
        if found is None:
            running()
        return found

    def answers(url: str) -> bool:
        running()
        try:
            with urllib.request.urlopen(f"{url}/admin/login/", timeout=5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # slow to start: ask again
            return False

    try:
        url = wait_until(listening, timeout=60, what=f"{name} to listen")
        wait_until(lambda: answers(url), timeout=60, what=f"{name} to answer at {url}")
        yield url
    finally:
        kill_group(server, signal.SIGTERM, timeout=15)


def gunicorn(env: dict[str, str], log: Path, *options: str) -> contextlib.AbstractContextManager[str]:
    """gunicorn serving ``config.wsgi`` with ``env`` on a free port (``-b 127.0.0.1:0``, read back
    from its log) until the block ends; yields its base URL once ``/admin/login/`` answers 200."""

    def listening_at() -> str | None:
        found = re.search(r"Listening at: (http://[\d.]+:\d+)", log.read_text(errors="replace"))
        return found.group(1) if found else None

    args = ["gunicorn", "config.wsgi", "--bind", "127.0.0.1:0", *options]
    return _serving("gunicorn", args, env, log, listening_at)


def granian(env: dict[str, str], log: Path, *options: str) -> contextlib.AbstractContextManager[str]:
    """granian (the README's production server) serving ``config.wsgi`` with ``env`` on a free
    port until the block ends; yields its base URL once ``/admin/login/`` answers 200."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    args = [
        "granian",
        "--interface",
        "wsgi",
        "config.wsgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return _serving("granian", [*args, *options], env, log, lambda: f"http://127.0.0.1:{port}")


class CeleryProcesses:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=ROOT,
            env=_process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def worker(self, concurrency: int = 2, name: str = "worker", queues: str = ALL_QUEUES) -> None:
        """A worker of ``queues`` (comma-separated): by default every queue, so that e2e tests
        get their deliveries; ``queues="celery"`` and a second one with ``"webhooks"`` is the
        production layout (README), where no delivery takes a process from fan-outs."""
        self.start(
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
        )

    def beat(self, name: str = "beat") -> None:
        self.start(name, *beat_args(self.tmp, name))

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            kill_group(proc, sig, timeout=15)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def purge_broker() -> None:
    """Drop the messages of every queue the workers consume (``WORKER_QUEUES``)."""
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in settings.WORKER_QUEUES:
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def celery_processes(transactional_db: None, tmp_path: Path) -> Iterator[CeleryProcesses]:
    """Start with ``procs.worker()`` and ``procs.beat()`` (or ``procs.start(name, *celery_args)``).

    Needs ``transactional_db`` so that what the test writes is committed and visible to the
    worker, a separate process with its own connection.
    """
    purge_broker()
    procs = CeleryProcesses(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def celery_worker(celery_processes: CeleryProcesses) -> CeleryProcesses:
    celery_processes.worker()
    return celery_processes


def wait_until(check: Any, timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


@pytest.fixture
def fresh_rate_window() -> None:
    """Start the test early in a rate-limit window: the counters are per minute of the clock,
    and a test that counts requests up to a limit must not see the window end between them."""
    from inventory import ratelimit

    if ratelimit.seconds_left_in_window() < 15:
        wait_until(
            lambda: ratelimit.seconds_left_in_window() >= 15, timeout=20, interval=0.2, what="a rate window"
        )


# --- a real Mosquitto broker (contract section 14) -----------------------------------------------


@pytest.fixture(scope="session")
def mosquitto_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mosquitto.Broker]:
    """A Mosquitto 2 of this test session's own, with the dynamic-security plugin, on a free port.

    ``.ci/run`` installs Debian's package; the broker is started as ``make run`` starts it
    (``config/mosquitto.py``). Tests point the settings at it with :func:`mqtt_settings`."""
    if not mosquitto.available():
        raise AssertionError("Mosquitto 2 with its dynamic-security plugin is needed (apt install mosquitto)")
    broker = mosquitto.prepare(tmp_path_factory.mktemp("mosquitto"), mosquitto.free_port())
    process = mosquitto.start(broker)
    yield broker
    mosquitto.stop(process)


@pytest.fixture
def mqtt_settings(mosquitto_broker: mosquitto.Broker, settings: Any) -> mosquitto.Broker:
    """The settings' ``MQTT_URL`` pointing at the session's broker, for this test."""
    settings.MQTT_URL = mosquitto_broker.url
    return mosquitto_broker
