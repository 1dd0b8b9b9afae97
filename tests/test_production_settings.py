"""Production settings: no default secret, HTTPS and security headers, a clean ``check --deploy``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
