"""Settings read from the environment fail at start-up, naming the variable at fault."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str, env_url

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432/anything"  # never connected to: settings only parse it


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("False", False), ("", False)],
)
def test_env_bool_reads_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)

    assert env_bool("SOME_FLAG") is expected


def test_env_bool_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOME_FLAG", raising=False)

    assert env_bool("SOME_FLAG", True) is True


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled"])
def test_env_bool_refuses_anything_else_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)

    with pytest.raises(ImproperlyConfigured, match=rf"SOME_FLAG='{raw}' is not a boolean"):
        env_bool("SOME_FLAG")


def test_env_int(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_NUMBER", "42")
    assert env_int("SOME_NUMBER", 1) == 42
    monkeypatch.setenv("SOME_NUMBER", "")
    assert env_int("SOME_NUMBER", 7) == 7


@pytest.mark.parametrize(("raw", "message"), [("ten", "is not an integer"), ("1.5", "is not an integer")])
def test_env_int_refuses_non_integers(monkeypatch: pytest.MonkeyPatch, raw: str, message: str) -> None:
    monkeypatch.setenv("SOME_NUMBER", raw)

    with pytest.raises(ImproperlyConfigured, match=f"SOME_NUMBER='{raw}' {message}"):
        env_int("SOME_NUMBER", 1)


def test_env_int_enforces_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_NUMBER", "-1")

    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER=-1 must be at least 0"):
        env_int("SOME_NUMBER", 1, minimum=0)


def test_env_list_and_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_LIST", " a.example, ,b.example ")
    monkeypatch.delenv("UNSET_THING", raising=False)

    assert env_list("SOME_LIST", []) == ["a.example", "b.example"]
    assert env_list("UNSET_THING", ["x"]) == ["x"]
    assert env_str("UNSET_THING", "default") == "default"


def test_env_url_accepts_its_schemes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_URL", "redis://127.0.0.1:6379/3")
    assert env_url("SOME_URL", {"redis"}) == "redis://127.0.0.1:6379/3"
    monkeypatch.setenv("SOME_URL", "  ")
    assert env_url("SOME_URL", {"redis"}) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://x", "SOME_URL='mysql://x' has scheme 'mysql'; expected one of: postgres, redis"),
        ("127.0.0.1:6379", "SOME_URL='127.0.0.1:6379' has scheme"),
        ("redis://", "SOME_URL='redis://' has no host"),
    ],
)
def test_env_url_refuses_bad_urls_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("SOME_URL", raw)

    with pytest.raises(ImproperlyConfigured) as error:
        env_url("SOME_URL", {"postgres", "redis"})

    assert message in str(error.value)


def import_settings(**overrides: str) -> subprocess.CompletedProcess[str]:
    """Import config.settings in a fresh interpreter, as a web or worker process would."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(overrides)
    env.setdefault("VAR_DIR", str(ROOT / "var"))
    env.setdefault("SECRET_KEY", "test-settings-secret-key")  # required when DEBUG is off
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("CELERY_BROKER_URL", "sqs://"),
        ("DEBUG", "perhaps"),
        ("DB_CONN_MAX_AGE", "forever"),  # read with a DATABASE_URL: see the test
        ("API_PAGE_SIZE_MAX", "0"),
        ("AUTH_CACHE_SECONDS", "-5"),
    ],
)
def test_a_bad_setting_stops_the_process_naming_the_variable(name: str, value: str) -> None:
    done = import_settings(**{name: value}, **({} if name == "DATABASE_URL" else {"DATABASE_URL": PG}))

    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert f"{name}=" in done.stderr.strip().splitlines()[-1]


def test_good_settings_import(tmp_path: Path) -> None:
    done = import_settings(
        DATABASE_URL=PG,
        REDIS_URL="redis://127.0.0.1:6379/9",
        DEBUG="0",
        VAR_DIR=str(tmp_path),
    )

    assert done.returncode == 0, done.stderr
