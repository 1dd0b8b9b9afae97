"""The reference device agent's pure parts, without a server: backoff and Retry-After, the
journal's atomic writes, the config file, the shell handler's contract, the simulator's
percentiles. (The agent against the real server: tests/test_agent.py.)"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dos_agent.backoff import Backoff, retry_after_seconds, throttled_delay
from dos_agent.config import ConfigError, HandlerSpec, from_mapping, read_file
from dos_agent.handlers import Handlers, Outcome, command_env, run_shell
from dos_agent.journal import FINISHED_KEPT, AgentState, Job, Journal, Report
from dos_agent.mqtt_channel import MqttChannel
from dos_agent.simulate import percentile

from tests.conftest import ROOT


def test_backoff_doubles_with_jitter_up_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("37") == 37.0
    now = 1_700_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert retry_after_seconds(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_a_throttled_wait_is_never_shorter_than_retry_after() -> None:
    rng = random.Random(2)
    backoff = Backoff(rng=rng)
    assert all(throttled_delay(12.0, backoff, rng) >= 12.0 for _ in range(100))
    assert backoff.failures == 0  # the server said how long: no backoff spent


def test_the_journal_survives_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.state.current = Job({"id": "7", "command": "REBOOT", "attempt": 2}, phase="running", runs=1)
    journal.state.outbox.append(Report("6", "Command Success", "ok", {"exit_code": 0}, 1))
    journal.state.finish("6#1", "Command Success")
    journal.state.etag = 'W/"e1"'
    journal.save()

    again = Journal(tmp_path).state
    assert again == journal.state
    assert again.current is not None and again.current.key == "7#2"
    assert again.outbox[0].body() == {
        "state": "Command Success",
        "reason": "ok",
        "details": {"exit_code": 0},
        "attempt": 1,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left


def test_a_write_that_fails_half_way_leaves_the_previous_state(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.state.etag = "before"
    journal.save()
    journal.state.current = Job({"id": "1", "not json": object()})
    with pytest.raises(TypeError):
        journal.save()
    assert Journal(tmp_path).state == AgentState(etag="before")


def test_the_journal_keeps_the_latest_finished_commands_only() -> None:
    state = AgentState()
    for number in range(FINISHED_KEPT + 5):
        state.finish(f"{number}#1", "Command Success")
    assert len(state.finished) == FINISHED_KEPT
    assert "0#1" not in state.finished and f"{FINISHED_KEPT + 4}#1" in state.finished


def test_a_config_file_in_toml_or_json(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(
        'server = "http://s"\ndevice_id = "d"\nunhandled = "succeed"\n'
        '[handlers.REBOOT]\nshell = "reboot"\ntimeout = 5\nresume = "succeed"\n'
        '[handlers.INSTALL_APP]\npython = "pkg.mod:install"\n'
    )
    config = from_mapping(read_file(toml))
    assert config.handler_for("REBOOT") == HandlerSpec("shell", "reboot", 5.0, "succeed")
    assert config.handler_for("INSTALL_APP") == HandlerSpec("python", "pkg.mod:install")
    assert config.handler_for("LOCK") == HandlerSpec("succeed")

    as_json = tmp_path / "agent.json"
    as_json.write_text(json.dumps({"handlers": {"LOCK": {"entry_point": "lock"}}}))
    assert from_mapping(read_file(as_json)).handler_for("LOCK") == HandlerSpec("entry_point", "lock")


@pytest.mark.parametrize(
    "table",
    [
        {"shell": "a", "python": "b:c"},
        {"python": "no_colon"},
        {"shell": ""},
        {"shell": "a", "timeout": 0},
        {"shell": "a", "resume": "maybe"},
        {},
    ],
)
def test_a_handler_table_that_cannot_work_is_refused(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"handlers\.X"):
        from_mapping({"handlers": {"X": table}})


COMMAND = {"id": "12", "request": "op-1", "command": "SET_WALLPAPER", "attempt": 2}


def test_a_shell_handler_gets_the_command_on_stdin_and_in_its_environment() -> None:
    command = {**COMMAND, "arguments": {"url": "https://x/y.png", "tiles": [1, 2], "fit-mode": "fill"}}
    env = command_env(command, "dev-9")
    assert env["DOS_ARG_URL"] == "https://x/y.png"
    assert env["DOS_ARG_TILES"] == "[1, 2]"
    assert env["DOS_ARG_FIT_MODE"] == "fill"
    assert (env["DOS_COMMAND_ID"], env["DOS_OPERATION_ID"], env["DOS_ATTEMPT"]) == ("12", "op-1", "2")
    spec = HandlerSpec("shell", "python3 -c \"import json,sys; print(json.load(sys.stdin)['id'])\"")
    outcome = asyncio.run(run_shell(spec, command, "dev-9"))
    assert outcome == Outcome(True, "", {"exit_code": 0, "stdout": "12", "stderr": ""})


def test_a_shell_handler_never_sees_the_device_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOS_AGENT_TOKEN", "ddt_secret")
    monkeypatch.setenv("DOS_TEST_VISIBLE", "yes")
    spec = HandlerSpec("shell", 'echo "${DOS_AGENT_TOKEN:-none} $DOS_TEST_VISIBLE"')
    outcome = asyncio.run(run_shell(spec, COMMAND, "dev-9"))
    assert outcome.details is not None and outcome.details["stdout"] == "none yes"


def test_a_shell_handler_past_its_timeout_is_killed_and_fails() -> None:
    outcome = asyncio.run(run_shell(HandlerSpec("shell", "sleep 60", timeout=0.2), COMMAND, "dev-9"))
    assert (outcome.success, outcome.reason) == (False, "timed out after 0.2 s")


def test_a_python_handler_that_cannot_be_imported_fails_the_command_not_the_agent() -> None:
    handlers = Handlers({"SET_WALLPAPER": HandlerSpec("python", "no_such_module:run")}, HandlerSpec("fail"))
    outcome = asyncio.run(handlers.run(dict(COMMAND), "dev-9"))
    assert not outcome.success
    assert outcome.reason.startswith("handler no_such_module:run cannot be loaded")
    assert asyncio.run(handlers.run({**COMMAND, "command": "LOCK"}, "dev-9")) == Outcome(
        False, "no handler for LOCK"
    )


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) is None


def test_the_agent_imports_neither_django_nor_the_project(tmp_path: Path) -> None:
    """It is installed on devices alone (``pip install ./agent``): run from elsewhere, loading
    every module of it loads nothing of the server's."""
    floors = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    modules = [f"dos_agent.{path.stem}" for path in (ROOT / "agent" / "dos_agent").glob("*.py")]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; import {', '.join(m for m in modules if not m.endswith('__main__'))}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "dos_agent" in loaded
    assert sorted({"django", "rest_framework", "celery", "tests", *floors} & set(loaded)) == []


def test_a_hand_out_answered_after_its_wait_is_still_run() -> None:
    """The server handed the commands out (Queued to Initiated) even if the reply came after the
    agent stopped waiting and polled over HTTP: they are run, not left to the redelivery sweep."""
    late: list[dict[str, Any]] = []
    channel = MqttChannel(
        credentials=lambda: None,  # type: ignore[arg-type,return-value]
        on_notify=lambda _body: None,
        on_connect=lambda: None,
        on_late_hand_out=late.append,
    )
    reply = {"client_token": "gone", "commands": [COMMAND], "etag": "e", "next_poll_seconds": 3600}
    channel._dispatch("dos/v1/acme/dev-9/inbox/get/accepted", json.dumps(reply).encode())
    channel._dispatch("dos/v1/acme/dev-9/commands/12/update/accepted", b'{"client_token": "old"}')
    assert late == [reply]
