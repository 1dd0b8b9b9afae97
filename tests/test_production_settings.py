"""Production settings: no default secret, HTTPS and security headers, a clean ``check --deploy``."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from config import embedded_postgres
from tests.test_settings import import_settings

ROOT = Path(__file__).resolve().parent.parent

#: The production environment documented in README.md ("Production"), less real hosts.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "Kq3v9-production-like-secret-8Zt2xWm5RpL7yN4bJc6HdF1gS0aQeUoIiOo",
    "ALLOWED_HOSTS": "api.example.com",
    "SECURE_HTTPS": "1",
    "DATABASE_URL": "postgres://app@db.internal:5432/devops",  # never connected to by `check`
    "REDIS_URL": "redis://redis.internal:6379/0",
    "METRICS_TOKEN": "pV8s2-production-like-metrics-token-Qw4eRt6yUi",
}


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG", "SECURE_HTTPS"}
        and k != "DJANGO_ALLOW_ASYNC_UNSAFE"  # set by test tooling, never in production
    }
    env.update(overrides)
    return env


def test_no_secret_key_with_debug_off_stops_the_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=ROOT,
        env=_clean_env(DEBUG="0", VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off" in done.stderr


def test_debug_runs_on_the_development_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; import django; print(settings.SECRET_KEY)"],
        cwd=ROOT,
        env=_clean_env(DEBUG="1", VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "insecure-development-key" in done.stdout


def test_plain_http_deployment_imports_without_https_flags(tmp_path: Path) -> None:
    done = import_settings(DEBUG="0", SECRET_KEY="x" * 60, VAR_DIR=str(tmp_path))

    assert done.returncode == 0, done.stderr


def test_check_deploy_is_clean_under_the_production_environment(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_clean_env(**PRODUCTION_ENV, VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr


def test_https_settings_switch_on_together(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER, s.X_FRAME_OPTIONS, s.SECURE_CONTENT_TYPE_NOSNIFF)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_clean_env(**PRODUCTION_ENV, VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "True",
        "True",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO',",
        "'https')",
        "DENY",
        "True",
    ]


def _secret_key_of(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_zero_config_run_makes_a_private_key_once_and_manage_py_reads_it(tmp_path: Path) -> None:
    """`make run`'s launcher writes var/secret_key (0600, kept); `manage.py` in a second
    terminal (DEBUG off, no DATABASE_URL: the embedded PostgreSQL) runs on it."""
    var = tmp_path / "var"
    embedded_postgres.prepare_var(var)
    key = (var / "secret_key").read_text().strip()
    embedded_postgres.prepare_var(var)

    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600
    assert (var / "secret_key").read_text().strip() == key and len(key) >= 50
    done = _secret_key_of(_clean_env(VAR_DIR=str(var)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == key


def test_a_deployment_refuses_to_start_without_secret_key_even_with_a_key_in_var(tmp_path: Path) -> None:
    """DATABASE_URL set is a deployment: var/'s development key is never its key."""
    embedded_postgres.prepare_var(tmp_path)

    done = _secret_key_of(_clean_env(VAR_DIR=str(tmp_path), DATABASE_URL=PRODUCTION_ENV["DATABASE_URL"]))

    assert done.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off" in done.stderr
