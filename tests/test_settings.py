"""Settings read from the environment fail at start-up, naming the variable at fault; without
``DATABASE_URL`` they point at the embedded PostgreSQL of ``make run`` and create nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str, env_token, env_url

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


def test_env_url_accepts_a_unix_socket_as_libpq_host_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded server's URL: no host part, the socket directory in ``?host=``."""
    monkeypatch.setenv("SOME_URL", "postgresql://postgres@/devops?host=/srv/var/postgres")

    assert env_url("SOME_URL", {"postgresql"}) == "postgresql://postgres@/devops?host=/srv/var/postgres"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://x", "SOME_URL='mysql://x' has scheme 'mysql'; expected one of: postgres, redis"),
        ("127.0.0.1:6379", "SOME_URL='127.0.0.1:6379' has scheme"),
        ("redis://", "SOME_URL='redis://' has no host"),
        ("postgres:///devops", "SOME_URL='postgres:///devops' has no host"),
        ("sqlite:///var/db.sqlite3", "has scheme 'sqlite'; expected one of: postgres, redis"),
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
        ("WEBHOOK_LEASE_SECONDS", "19"),  # under twice the attempt's deadline (10 s): issue 23
    ],
)
def test_a_bad_setting_stops_the_process_naming_the_variable(name: str, value: str) -> None:
    done = import_settings(**{name: value}, **({} if name == "DATABASE_URL" else {"DATABASE_URL": PG}))

    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert f"{name}=" in done.stderr.strip().splitlines()[-1]


def test_a_short_metrics_token_stops_the_process_without_showing_it() -> None:
    done = import_settings(METRICS_TOKEN="changeme", DATABASE_URL=PG)

    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured: METRICS_TOKEN is 8 characters; at least 16" in last
    assert "changeme" not in done.stderr


def test_good_settings_import(tmp_path: Path) -> None:
    done = import_settings(
        DATABASE_URL=PG,
        REDIS_URL="redis://127.0.0.1:6379/9",
        DEBUG="0",
        VAR_DIR=str(tmp_path),
    )

    assert done.returncode == 0, done.stderr


def _settings_of(tmp_path: Path, *names: str, **overrides: str) -> dict[str, Any]:
    """Some settings as a fresh process sees them, imported from an empty working directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(PYTHONPATH=str(ROOT), SECRET_KEY="test-settings-secret-key", **overrides)
    code = f"import json, config.settings as s; print(json.dumps({{n: getattr(s, n) for n in {names!r}}}))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(cwd.iterdir()) == [], "importing the settings wrote into the working directory"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_without_database_url_the_settings_point_at_the_embedded_server_and_create_nothing(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"  # does not exist: `make run`'s launcher makes it

    got = _settings_of(tmp_path, "DATABASES", "CELERY_BROKER_TRANSPORT_OPTIONS", VAR_DIR=str(var))

    database = got["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["HOST"] == str(var / "postgres")
    assert (database["NAME"], database["USER"]) == ("devops", "postgres")
    assert "host" not in database["OPTIONS"]  # the socket moved from libpq's ?host= to HOST
    assert database["OPTIONS"]["options"] == "-c plan_cache_mode=force_generic_plan"
    assert got["CELERY_BROKER_TRANSPORT_OPTIONS"]["control_folder"] == str(var / "broker" / "control")
    assert got["CELERY_BROKER_TRANSPORT_OPTIONS"]["data_folder_in"] == str(var / "broker" / "queue")
    assert not var.exists()


def test_without_database_url_the_settings_read_the_url_a_running_server_wrote(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "postgres.url").write_text("postgresql://postgres@/devops?host=/run/elsewhere%20sock\n")

    got = _settings_of(tmp_path, "DATABASES", VAR_DIR=str(var))

    assert got["DATABASES"]["default"]["HOST"] == "/run/elsewhere sock"
    assert sorted(p.name for p in var.iterdir()) == ["postgres.url"]


def test_database_url_still_points_at_any_postgresql(tmp_path: Path) -> None:
    got = _settings_of(tmp_path, "DATABASES", VAR_DIR=str(tmp_path / "var"), DATABASE_URL=PG, DB_POOL="1")

    database = got["DATABASES"]["default"]
    assert (database["HOST"], database["PORT"], database["NAME"]) == ("127.0.0.1", 5432, "anything")
    assert database["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 10}
    assert database["CONN_MAX_AGE"] == 0


def test_env_token_is_empty_when_unset_and_read_when_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOME_TOKEN", raising=False)
    assert env_token("SOME_TOKEN", min_length=16) == ""
    monkeypatch.setenv("SOME_TOKEN", "  ")
    assert env_token("SOME_TOKEN", min_length=16) == ""
    monkeypatch.setenv("SOME_TOKEN", " conformance-metrics-token-0123456789 ")
    assert env_token("SOME_TOKEN", min_length=16) == "conformance-metrics-token-0123456789"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("changeme", "SOME_TOKEN is 8 characters; at least 16"),
        ("a token with spaces in it", "SOME_TOKEN must be printable ASCII without spaces"),
        ("caf\u00e9-0123456789abcdef", "SOME_TOKEN must be printable ASCII without spaces"),
    ],
)
def test_env_token_refuses_short_or_unsendable_values_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("SOME_TOKEN", raw)

    with pytest.raises(ImproperlyConfigured, match=message) as refused:
        env_token("SOME_TOKEN", min_length=16)
    assert raw not in str(refused.value)
