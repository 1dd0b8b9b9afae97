"""The management commands operators and scripts rely on (CONTRACT.md section 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from inventory.models import ApiKey, Tenant
from tests.conftest import Api

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
