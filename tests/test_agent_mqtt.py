"""The reference device agent over MQTT (contract section 14) against the real thing: the
session's Mosquitto, the bridge (``manage.py mqtt_bridge``) and gunicorn serving the
credentials, a real Celery worker whose fan-out notifies the devices.

The served process, the worker and the bridge get ``MQTT_URL``; the agent gets nothing but the
server's address and its token: it finds the broker through ``/v2/mqtt-credentials/``. HTTP
polls are every 10 minutes, so a command done within a test came by push: the agent's log
shows it handed out by an ``inbox/get`` over MQTT, and the access log no report over HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.mosquitto import Broker
from tests.agent_process import (
    AgentProcess,
    counts,
    create_operation,
    only_command,
    run_agent,
    wait_finished,
)
from tests.conftest import CeleryProcesses, Org, _process_env, add_device, gunicorn, wait_until
from tests.mqtt_helpers import BridgeProcess, forget_session

pytestmark = pytest.mark.e2e


@dataclass
class Served:
    url: str
    access_log: Path
    bridge: BridgeProcess

    def puts(self) -> list[str]:
        return re.findall(r'"PUT /commands/v0/status/[^"]*"', self.access_log.read_text())


@pytest.fixture
def served(
    mqtt_settings: Broker, celery_processes: CeleryProcesses, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    monkeypatch.setenv("MQTT_URL", mqtt_settings.url)  # the worker's fan-out writes the notifies
    celery_processes.worker()
    bridge = BridgeProcess(mqtt_settings, tmp_path / "bridge.log", "test-agent-bridge")
    env = {**_process_env(), "MQTT_URL": mqtt_settings.url, "INBOX_POLL_SECONDS": "600"}
    log = tmp_path / "gunicorn.log"
    try:
        bridge.wait_connected()
        with gunicorn(env, log, "-w", "1", "--threads", "4", "--access-logfile", "-") as url:
            yield Served(url, log, bridge)
    finally:
        bridge.kill()
        # Its broker session would stay in the share group and take its turn of the next
        # tests' messages (docs/mqtt-bridge.md).
        forget_session(mqtt_settings, bridge.client_id)


def test_the_agent_gets_a_notify_and_completes_a_command_over_mqtt_only(
    org: Org, served: Served, tmp_path: Path
) -> None:
    kiosk = add_device(org.tenant, "kiosk-1")
    agent = run_agent(served.url, kiosk, tmp_path, "--handler", "REBOOT=echo rebooted")
    try:
        wait_until(lambda: "mqtt: connected" in agent.log(), timeout=60, what=agent.log())
        operation_id = create_operation(org, "REBOOT", {"devices": ["kiosk-1"]})
        shown = wait_finished(org, operation_id, agent.log, served.bridge.text)
    finally:
        agent.stop()

    assert shown["state"] == "SUCCESS"
    assert counts(shown)["success_device_count"] == 1
    command = only_command(org, operation_id)
    assert (command["state"], command["details"]["stdout"]) == ("Command Success", "rebooted")
    # handed out by an inbox/get over MQTT (the inbox hands a command out once), reported over MQTT
    assert "inbox/get over MQTT: 1 commands" in agent.log()
    assert served.puts() == []


def test_the_simulator_completes_an_operation_on_a_fleet_by_push(
    org: Org, served: Served, tmp_path: Path
) -> None:
    simulator = AgentProcess(
        [
            "simulate",
            "--server",
            served.url,
            "--api-key",
            str(org.admin.token),
            "--devices",
            "20",
            "--expect",
            "20",
            "--duration",
            "150",
            "--start-spread",
            "1",
            "--json",
        ],
        tmp_path / "simulate.log",
    )
    try:
        wait_until(lambda: simulator.log().count("mqtt: connected") == 20, timeout=90, what=simulator.log())
        operation_id = create_operation(org, "BEEP_DEVICE", {"all": True})
        assert simulator.process.wait(timeout=180) == 0, simulator.log()
    finally:
        simulator.stop()

    figures = json.loads(simulator.log().strip().splitlines()[-1])
    shown = wait_finished(org, operation_id, simulator.log)
    assert shown["state"] == "SUCCESS"
    assert counts(shown)["success_device_count"] == 20
    assert figures["states"] == {"Command Success": 20}
    # (a device whose first inbox/get, after its start-up jitter, came after the fan-out needs no notify)
    assert figures["notifies"] > 0
    assert figures["mqtt_reports"] == 60  # Acknowledged, In Progress, Success: each over MQTT
    assert figures["http_reports"] == 0
    assert figures["mqtt_sessions_at_end"] == 20
    assert served.puts() == []
    # each device's one command handed out by an inbox/get over MQTT, none by an HTTP poll
    assert simulator.log().count("inbox/get over MQTT: 1 commands") == 20
