"""The management commands operators and scripts rely on (CONTRACT.md section 8)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from config import mosquitto
from inventory import demo
from inventory.models import ApiKey, Device, Tenant
from inventory.services import revoke_api_key, revoke_device_token
from tests.conftest import Api, purge_broker, wait_until

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_create_tenant_is_idempotent() -> None:
    out1, _ = run("create_tenant", "acme-corp", "--name", "Acme Corp")
    out2, _ = run("create_tenant", "acme-corp", "--name", "Another name")

    assert "created" in out1 and "exists" in out2
    tenant = Tenant.objects.get(slug="acme-corp")
    assert tenant.name == "Acme Corp"
    assert Tenant.objects.filter(slug="acme-corp").count() == 1


@pytest.mark.django_db
def test_create_api_key_prints_the_key_alone_on_its_last_line() -> None:
    run("create_tenant", "acme-corp")

    out, _ = run("create_api_key", "--tenant", "acme-corp", "--role", "operator", "--name", "ci")

    key = out.rstrip("\n").splitlines()[-1]
    assert key == key.strip() and " " not in key and key.startswith("dok_")
    stored = ApiKey.objects.get(tenant__slug="acme-corp")
    assert (stored.role, stored.name) == ("operator", "ci")
    api = Api(key)
    assert api.get("/v0/devices/").status_code == 200
    assert api.post("/v0/groups/", {"name": "made with the new key"}).status_code == 201


@pytest.mark.django_db
def test_a_viewer_key_from_the_command_reads_but_cannot_write() -> None:
    run("create_tenant", "acme-corp")
    out, _ = run("create_api_key", "--tenant", "acme-corp", "--role", "viewer")
    api = Api(out.splitlines()[-1])

    assert api.get("/v0/groups/").status_code == 200
    assert api.post("/v0/groups/", {"name": "x"}).status_code == 403


@pytest.mark.django_db
def test_create_api_key_for_an_unknown_tenant_says_so() -> None:
    with pytest.raises(CommandError, match="no tenant 'nope'; create it with create_tenant"):
        run("create_api_key", "--tenant", "nope", "--role", "admin")
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_create_api_key_refuses_an_unknown_role() -> None:
    run("create_tenant", "acme-corp")

    with pytest.raises(CommandError, match="invalid choice: 'root'"):
        run("create_api_key", "--tenant", "acme-corp", "--role", "root")


def test_the_commands_work_from_a_shell_as_scripts_use_them(transactional_db: None) -> None:
    """``KEY=$(manage.py create_api_key ... | tail -1)``, in real processes, as run.sh does."""
    db = settings.DATABASES["default"]
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{host}/{db['NAME']}"}

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert manage("create_tenant", "shell-org").returncode == 0
    assert manage("create_tenant", "shell-org").returncode == 0
    made = manage("create_api_key", "--tenant", "shell-org", "--role", "admin")
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert Api(key).get("/v0/devices/").status_code == 200

    failed = manage("create_api_key", "--tenant", "no-such-org", "--role", "admin")
    assert failed.returncode != 0
    assert "no tenant 'no-such-org'" in failed.stderr
    assert failed.stdout.strip() == ""


# --- setup_demo and runstack: the credentials of `make run` (issue 16) --------------------------


def _console_login(username: str, password: str) -> bool:
    """A real login on the console's form; True if it let the user in."""
    response = Client().post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR="192.0.2.9"
    )
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def var(settings: Any, tmp_path: Path) -> Path:
    """A ``VAR_DIR`` of the test's own, as ``make run`` has one."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR  # type: ignore[no-any-return]


@pytest.mark.django_db
def test_setup_demo_writes_the_block_0600_with_credentials_that_work(var: Path) -> None:
    previous = os.umask(0)  # even with a umask that lets everyone read
    try:
        out, _ = run("setup_demo", "--addr", "127.0.0.1:8123")
    finally:
        os.umask(previous)

    path = var / "credentials.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert out == path.read_text()
    assert out.startswith("+--") and "--+\ncurl -H" in out
    assert out.splitlines()[-1] == f'curl -H "Authorization: Bearer {demo.read_saved(path)["api-key"]}" ' + (
        "http://127.0.0.1:8123/v0/devices/"
    )
    saved = demo.read_saved(path)
    assert saved["server"] == "http://127.0.0.1:8123/"
    assert "console     http://127.0.0.1:8123/admin/" in out
    assert Api(saved["api-key"]).get("/v0/devices/").json()["content"]["count"] == 5
    assert _console_login(saved["user"], saved["password"])
    tokens = {
        name.removeprefix("device:"): value for name, value in saved.items() if name.startswith("device:")
    }
    assert sorted(tokens) == sorted(row["device_id"] for row in demo.DEMO_DEVICES)
    assert Api(tokens["pos-nyc-01"]).get("/v2/command-inbox/", {"device_id": "pos-nyc-01"}).status_code == 200


@pytest.mark.django_db
def test_the_demo_has_a_second_console_user_who_approves(var: Path) -> None:
    """Issue 25: ``admin`` asks for a WIPE, ``approver`` (another principal) approves it."""
    out, _ = run("setup_demo")
    saved = demo.read_saved(var / "credentials.txt")

    assert saved["approver"] == "approver" and "approver-pw" in saved
    assert _console_login("approver", saved["approver-pw"])
    approver = User.objects.get(username="approver")
    assert approver.console.tenant.slug == "default" and not approver.is_superuser
    assert approver.has_perm("operations.approve_operation")
    # the saved password is shown again on the next run
    again, _ = run("setup_demo")
    assert again == out


@pytest.mark.django_db
def test_a_second_run_shows_the_same_working_credentials(var: Path) -> None:
    first, _ = run("setup_demo", "--addr", "127.0.0.1:8123")
    (var / "credentials.txt").chmod(0o644)  # replaced by a new file, created 0600

    second, _ = run("setup_demo", "--quiet")

    path = var / "credentials.txt"
    assert second.strip() == f"Demo ready; credentials in {path}"
    assert path.read_text() == first  # same key, password, tokens, address
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = demo.read_saved(path)
    assert Api(saved["api-key"]).get("/v0/devices/").status_code == 200
    assert _console_login("admin", saved["password"])
    assert ApiKey.objects.filter(tenant__slug="default").count() == 1


@pytest.mark.django_db
def test_a_revoked_key_is_replaced_by_a_new_one_and_the_block_says_so(var: Path) -> None:
    run("setup_demo")
    old = demo.read_saved(var / "credentials.txt")
    revoke_api_key(ApiKey.objects.get(tenant__slug="default"))

    out, _ = run("setup_demo")

    new = demo.read_saved(var / "credentials.txt")
    assert new["api-key"] != old["api-key"]
    assert "New admin API key: the saved one was revoked, expired or deleted." in out
    assert Api(new["api-key"]).get("/v0/devices/").status_code == 200
    assert Api(old["api-key"]).get("/v0/devices/").status_code == 401
    assert new["password"] == old["password"]


@pytest.mark.django_db
def test_a_changed_password_is_not_overwritten_and_reset_password_makes_one(var: Path) -> None:
    run("setup_demo")
    user = User.objects.get(username="admin")
    user.set_password("chosen-by-the-user-9f3k")
    user.save()

    out, _ = run("setup_demo")

    assert "password    (unknown: see below)" in out
    assert "manage.py setup_demo --reset-password" in out
    assert _console_login("admin", "chosen-by-the-user-9f3k")

    out, _ = run("setup_demo", "--reset-password")

    saved = demo.read_saved(var / "credentials.txt")
    assert "New console password for admin." in out
    assert _console_login("admin", saved["password"])
    assert not _console_login("admin", "chosen-by-the-user-9f3k")


@pytest.mark.django_db
def test_a_revoked_device_token_is_left_out(var: Path) -> None:
    run("setup_demo")
    revoke_device_token(Device.objects.get(device_id="pos-nyc-01"))

    out, _ = run("setup_demo")

    saved = demo.read_saved(var / "credentials.txt")
    assert "device:pos-nyc-01" not in saved and "device:kiosk-berlin-01" in saved
    assert "pos-nyc-01" not in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_runstack_prints_the_block_after_the_servers_start_and_stops_on_ctrl_c(
    transactional_db: None, tmp_path: Path, settings: Any
) -> None:
    """The real three processes on the test database: the block comes once the web server
    answers and the worker is ready, after their start-up lines; SIGINT to the group (Ctrl-C)
    ends all of them."""
    settings.VAR_DIR = tmp_path
    block, _ = run("setup_demo")
    addr = f"127.0.0.1:{_free_port()}"
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        "VAR_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    purge_broker()
    log_path = tmp_path / "runstack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runstack", "--show-credentials", addr],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: block in log_path.read_text(), timeout=90, what="the credentials block")
        with urllib.request.urlopen(f"http://{addr}/", timeout=5) as answer:
            assert answer.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    output = log_path.read_text()
    assert output.count(block) == 1
    at = output.index(block)
    assert output.index("Quit the server with CONTROL-C.") < at
    assert output.index("[queues]") < at  # the workers' banners
    assert output.count("[queues]") == 2
    assert ".> celery " in output[:at] and ".> webhooks " in output[:at]  # each queue has its worker
    assert output.index("Configuration ->") < at  # beat's banner
    assert "No hostname was supplied" not in output
    assert "superuser privileges" not in output
    assert "Traceback" not in output
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # the worker, its pool, beat and runserver are gone
    # Push (docs/mqtt.md): one line under the block, the broker of its own stopped with the rest.
    push = "push: on, devices connect to mqtt://127.0.0.1:" if mosquitto.available() else "push: off"
    lines = [line for line in output.splitlines() if line.startswith("push: ")]
    assert len(lines) == 1 and lines[0].startswith(push) and output.index(lines[0]) > at
    assert not mosquitto.url_file(tmp_path).exists()
