"""The reference device agent (``agent/``) against the real server: gunicorn serving the
project, a real Celery worker fanning operations out, the agent as the real program.

An operation created through the API reaches the agent; its handler (a shell command, a Python
callable) runs; the reports move the command and the operation's counters; a failing handler
reports its reason; a rollout's retry runs again as its next attempt; an agent killed in the
middle of a command resumes it after a restart and the command ends once; a report the server
never got is sent after a restart; a 429's Retry-After is honoured; an agent started before
its server backs off within its cap; the simulator completes an operation on a fleet. (Over
MQTT: tests/test_agent_mqtt.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.choices import CommandState
from commands.models import CommandHistory
from config.mosquitto import free_port
from tests.agent_handlers import OUT
from tests.agent_process import (
    AgentProcess,
    counts,
    create_operation,
    only_command,
    run_agent,
    wait_finished,
)
from tests.conftest import CeleryProcesses, DeviceActor, Org, _process_env, add_device, gunicorn, wait_until

pytestmark = pytest.mark.e2e

#: Polls every second (the server's INBOX_POLL_SECONDS): a command reaches an agent at once.
FAST_POLLS = {"INBOX_POLL_SECONDS": "1"}


def serve(tmp_path: Path, *options: str, **env: str) -> contextlib.AbstractContextManager[str]:
    """gunicorn serving the project with fast polls and an access log (to count 429s)."""
    return gunicorn(
        {**_process_env(), **FAST_POLLS, **env},
        tmp_path / "gunicorn.log",
        "-w",
        "2",
        "--threads",
        "4",
        "--access-logfile",
        "-",
        *options,
    )


@pytest.fixture
def server(celery_worker: CeleryProcesses, tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path) as url:
        yield url


@pytest.fixture
def kiosk(org: Org) -> DeviceActor:
    return add_device(org.tenant, "kiosk-1")


def test_a_shell_handler_runs_the_command_and_the_operation_succeeds(
    org: Org, kiosk: DeviceActor, server: str, tmp_path: Path
) -> None:
    seen = tmp_path / "seen.json"
    # stdin is the command as JSON; the environment carries its id, type and arguments
    handler = f'cat > {seen} && echo "$DOS_COMMAND_TYPE $DOS_ARG_MESSAGE" && echo "a warning" >&2'
    agent = run_agent(server, kiosk, tmp_path, "--handler", f"NOTIFY_DEVICE={handler}")
    try:
        operation_id = create_operation(
            org, "NOTIFY_DEVICE", {"devices": ["kiosk-1"]}, arguments={"message": "hello"}
        )
        shown = wait_finished(org, operation_id, agent.log)
    finally:
        agent.stop()

    assert shown["state"] == "SUCCESS"
    assert counts(shown)["success_device_count"] == 1
    command = only_command(org, operation_id)
    assert command["state"] == "Command Success"
    assert command["details"]["exit_code"] == 0
    assert command["details"]["stdout"] == "NOTIFY_DEVICE hello"
    assert command["details"]["stderr"] == "a warning"
    given = json.loads(seen.read_text())
    assert (given["id"], given["arguments"]) == (command["id"], {"message": "hello"})
    # the whole ladder, each rung once
    moves = CommandHistory.objects.filter(command_id=int(command["id"])).values_list("to_state", flat=True)
    assert list(moves) == [
        CommandState.INITIATED,
        CommandState.ACKNOWLEDGED,
        CommandState.IN_PROGRESS,
        CommandState.SUCCESS,
    ]


def test_a_python_handler_runs_and_a_failing_one_reports_its_reason(
    org: Org, kiosk: DeviceActor, server: str, tmp_path: Path
) -> None:
    out = tmp_path / "python-handler.json"
    agent = run_agent(
        server,
        kiosk,
        tmp_path,
        "--python-handler",
        "REFRESH_APPLIST=tests.agent_handlers:record",
        "--python-handler",
        "INSTALL_APP=tests.agent_handlers:refuse",
        "--handler",
        "REBOOT=echo no power >&2; exit 3",
        **{OUT: str(out)},
    )
    try:
        recorded = create_operation(org, "REFRESH_APPLIST", {"devices": ["kiosk-1"]})
        assert wait_finished(org, recorded, agent.log)["state"] == "SUCCESS"
        refused = create_operation(
            org, "INSTALL_APP", {"devices": ["kiosk-1"]}, arguments={"package": "com.example"}
        )
        failed = wait_finished(org, refused, agent.log)
        rebooted = create_operation(org, "REBOOT", {"devices": ["kiosk-1"]})
        shell_failed = wait_finished(org, rebooted, agent.log)
        unhandled = create_operation(org, "BEEP_DEVICE", {"devices": ["kiosk-1"]})
        not_handled = wait_finished(org, unhandled, agent.log)
    finally:
        agent.stop()

    assert json.loads(out.read_text())["command"] == "REFRESH_APPLIST"
    assert only_command(org, recorded)["details"] == {"recorded": only_command(org, recorded)["id"]}

    assert failed["state"] == "FAILURE"
    assert counts(failed)["failed_device_count"] == 1
    assert only_command(org, refused)["reason"] == "RuntimeError: cannot install com.example"

    assert shell_failed["state"] == "FAILURE"
    command = only_command(org, rebooted)
    assert (command["state"], command["reason"], command["details"]["exit_code"]) == (
        "Command Failure",
        "no power",
        3,
    )
    assert only_command(org, unhandled)["reason"] == "no handler for BEEP_DEVICE"
    assert not_handled["state"] == "FAILURE"


def test_a_rollout_retry_is_run_again_as_its_next_attempt(
    org: Org, kiosk: DeviceActor, server: str, tmp_path: Path
) -> None:
    tried = tmp_path / "tried"
    # fails the first time, succeeds the second
    handler = f'echo "$DOS_ATTEMPT" >> {tried}; [ "$DOS_ATTEMPT" = 2 ] || {{ echo flaky >&2; exit 1; }}'
    agent = run_agent(server, kiosk, tmp_path, "--handler", f"INSTALL_APP={handler}")
    try:
        operation_id = create_operation(
            org,
            "INSTALL_APP",
            {"devices": ["kiosk-1"]},
            rollout={"retries": [{"failure_type": "FAILED", "max_attempts": 2}]},
        )
        shown = wait_finished(org, operation_id, agent.log)
    finally:
        agent.stop()

    assert shown["state"] == "SUCCESS"
    assert tried.read_text().split() == ["1", "2"]
    command = only_command(org, operation_id)
    assert (command["state"], command["attempt"]) == ("Command Success", 2)


def _handler_waiting_for(go: Path, marks: Path) -> str:
    """A shell handler that notes its start (and pid), then runs until ``go`` exists."""
    return f'echo "started $$" >> {marks}; while [ ! -e {go} ]; do sleep 0.05; done; echo done >> {marks}'


def _kill_mid_command(agent: AgentProcess, marks: Path) -> None:
    """SIGKILL the agent and its handler (a power cut) once the handler has started."""
    wait_until(lambda: marks.exists() and "started" in marks.read_text(), timeout=60, what=agent.log())
    handler_pid = int(marks.read_text().split()[1])
    agent.kill()
    os.kill(handler_pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("resume", "runs", "reason"),
    [
        # the default: an interrupted handler runs again (handlers are idempotent, as the
        # server's at-least-once delivery demands of them anyway)
        ("rerun", 2, ""),
        # a reboot: the restart is its success, running it again would loop
        ("succeed", 1, "finished across an agent restart"),
    ],
)
def test_an_agent_killed_mid_command_resumes_it_after_a_restart_and_it_ends_once(
    org: Org, kiosk: DeviceActor, server: str, tmp_path: Path, resume: str, runs: int, reason: str
) -> None:
    go, marks = tmp_path / "go", tmp_path / "marks"
    config = tmp_path / "agent.toml"
    handler = _handler_waiting_for(go, marks).replace("\\", "\\\\").replace('"', '\\"')
    config.write_text(f'[handlers.REBOOT]\nshell = "{handler}"\nresume = "{resume}"\n')
    agent = run_agent(server, kiosk, tmp_path, "--config", str(config))
    operation_id = create_operation(org, "REBOOT", {"devices": ["kiosk-1"]})
    _kill_mid_command(agent, marks)
    assert only_command(org, operation_id)["state"] == "Command In Progress"

    go.touch()  # a re-run, if any, goes straight through
    again = run_agent(server, kiosk, tmp_path, "--config", str(config))
    try:
        shown = wait_finished(org, operation_id, again.log)
    finally:
        again.stop()

    assert shown["state"] == "SUCCESS"
    assert counts(shown)["success_device_count"] == 1
    command = only_command(org, operation_id)
    assert command["reason"] == reason
    assert marks.read_text().count("started") == runs
    moves = list(
        CommandHistory.objects.filter(command_id=int(command["id"])).values_list("to_state", flat=True)
    )
    assert moves.count(CommandState.SUCCESS) == 1
    assert moves[-1] == CommandState.SUCCESS
    assert "resuming command" in again.log()


def test_a_report_the_server_never_got_is_sent_after_a_restart_and_the_handler_not_run_again(
    org: Org, kiosk: DeviceActor, celery_worker: CeleryProcesses, tmp_path: Path
) -> None:
    go, marks = tmp_path / "go", tmp_path / "marks"
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    handler = f"REBOOT={_handler_waiting_for(go, marks)}"
    with serve(tmp_path, "--bind", f"127.0.0.1:{port}"):
        operation_id = create_operation(org, "REBOOT", {"devices": ["kiosk-1"]})
        agent = run_agent(server, kiosk, tmp_path, "--handler", handler)
        wait_until(lambda: marks.exists() and "started" in marks.read_text(), timeout=60, what=agent.log())
    # the server is gone when the handler ends: its outcome waits in the journal's outbox
    go.touch()
    wait_until(lambda: "report: PUT" in agent.log(), timeout=60, what=agent.log())
    agent.kill()
    outbox = json.loads((tmp_path / "state" / "state.json").read_text())["outbox"]
    assert [report["state"] for report in outbox] == ["Command Success"]

    with serve(tmp_path, "--bind", f"127.0.0.1:{port}"):
        again = run_agent(server, kiosk, tmp_path, "--handler", handler)
        try:
            shown = wait_finished(org, operation_id, again.log)
        finally:
            again.stop()

    assert shown["state"] == "SUCCESS"
    assert marks.read_text().count("started") == 1  # the outcome was sent, the command not run again
    assert json.loads((tmp_path / "state" / "state.json").read_text())["outbox"] == []


def test_the_agent_waits_as_a_429_retry_after_says(
    org: Org, kiosk: DeviceActor, celery_worker: CeleryProcesses, tmp_path: Path
) -> None:
    with serve(tmp_path, RATE_LIMIT_DEVICE_PER_MINUTE="5") as url:
        agent = run_agent(url, kiosk, tmp_path, "--unhandled", "succeed")
        try:
            wait_until(lambda: "HTTP 429" in agent.log(), timeout=90, what=agent.log())
            # created while the agent is throttled: it gets it once the window it was told passed
            operation_id = create_operation(org, "BEEP_DEVICE", {"devices": ["kiosk-1"]})
            shown = wait_finished(org, operation_id, agent.log, timeout=150)
        finally:
            agent.stop()
        access = (tmp_path / "gunicorn.log").read_text()

    assert shown["state"] == "SUCCESS"
    statuses = re.findall(r'"(?:GET|PUT) [^"]*" (\d{3}) ', access)
    assert "429" in statuses
    # an agent that ignored Retry-After would poll on every second and hear 429 again and again
    repeated = [i for i in range(1, len(statuses)) if statuses[i] == statuses[i - 1] == "429"]
    assert repeated == [], statuses
    waits = re.findall(r"Retry-After ([\d.]+)\S*; next poll in ([\d.]+) s", agent.log())
    assert waits and all(float(wait) >= float(asked) for asked, wait in waits), waits


def refused_polls(agent: AgentProcess) -> list[str]:
    """The waits the agent logged after polls that found no server listening."""
    return re.findall(r"inbox: .*ConnectError.*; next poll in ([\d.]+) s", agent.log())


def test_an_agent_started_before_its_server_backs_off_within_its_cap_and_then_works(
    org: Org, kiosk: DeviceActor, celery_worker: CeleryProcesses, tmp_path: Path
) -> None:
    port = free_port()
    operation_id = create_operation(org, "BEEP_DEVICE", {"devices": ["kiosk-1"]})
    agent = run_agent(f"http://127.0.0.1:{port}", kiosk, tmp_path, "--unhandled", "succeed")
    try:
        wait_until(lambda: len(refused_polls(agent)) >= 4, timeout=60, what=agent.log())
        with serve(tmp_path, "--bind", f"127.0.0.1:{port}"):
            shown = wait_finished(org, operation_id, agent.log)
    finally:
        agent.stop()

    assert shown["state"] == "SUCCESS"
    waits = [float(wait) for wait in refused_polls(agent)]
    assert len(waits) >= 4 and all(0 < wait <= 2.0 for wait in waits), waits  # --max-backoff 2


def test_the_simulator_completes_an_operation_on_fifty_devices(org: Org, server: str, tmp_path: Path) -> None:
    simulator = AgentProcess(
        [
            "simulate",
            "--server",
            server,
            "--api-key",
            str(org.admin.token),
            "--devices",
            "50",
            "--prefix",
            "sim-",
            "--success-ratio",
            "0.8",
            "--seed",
            "7",
            "--delay",
            "0.01",
            "--delay-max",
            "0.2",
            "--expect",
            "50",
            "--duration",
            "150",
            "--no-mqtt",
            "--json",
        ],
        tmp_path / "simulate.log",
    )
    try:
        wait_until(
            lambda: org.tenant.devices.filter(device_id__startswith="sim-").count() == 50,
            timeout=60,
            what=simulator.log(),
        )
        operation_id = create_operation(org, "BEEP_DEVICE", {"all": True})
        assert simulator.process.wait(timeout=180) == 0, simulator.log()
    finally:
        simulator.stop()

    figures = json.loads(simulator.log().strip().splitlines()[-1])
    shown = wait_finished(org, operation_id, simulator.log)
    stats = counts(shown)
    assert figures["commands_done"] == 50
    assert figures["states"].get("Command Success", 0) == stats["success_device_count"]
    assert figures["states"].get("Command Failure", 0) == stats["failed_device_count"]
    assert stats["success_device_count"] + stats["failed_device_count"] == 50
    assert figures["latency_p50_seconds"] is not None
