"""The reference device agent over MQTT (contract section 14) against the real thing: the
session's Mosquitto, the bridge (``manage.py mqtt_bridge``) and gunicorn serving the
credentials, a real Celery worker whose fan-out notifies the device.

The served process and the bridge get ``MQTT_URL``; the agent gets nothing but the server's
address and its token: it finds the broker through ``/v2/mqtt-credentials/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.mosquitto import Broker
from tests.agent_process import counts, create_operation, only_command, run_agent, wait_finished
from tests.conftest import CeleryProcesses, Org, _process_env, add_device, gunicorn, wait_until
from tests.mqtt_helpers import BridgeProcess

pytestmark = pytest.mark.e2e


def test_the_agent_gets_a_notify_and_completes_a_command_over_mqtt_only(
    org: Org,
    mqtt_settings: Broker,
    celery_processes: CeleryProcesses,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kiosk = add_device(org.tenant, "kiosk-1")
    monkeypatch.setenv("MQTT_URL", mqtt_settings.url)  # the worker's fan-out writes the notifies
    celery_processes.worker()
    bridge = BridgeProcess(mqtt_settings, tmp_path / "bridge.log", "test-agent-bridge")
    # HTTP polls every 10 minutes: a command done within the test came by push
    env = {**_process_env(), "MQTT_URL": mqtt_settings.url, "INBOX_POLL_SECONDS": "600"}
    log = tmp_path / "gunicorn.log"
    try:
        bridge.wait_connected()
        with gunicorn(env, log, "-w", "1", "--threads", "4", "--access-logfile", "-") as url:
            agent = run_agent(url, kiosk, tmp_path, "--handler", "REBOOT=echo rebooted")
            try:
                wait_until(lambda: "mqtt: connected" in agent.log(), timeout=60, what=agent.log())
                wait_until(lambda: "inbox/get over MQTT" in agent.log(), timeout=30, what=agent.log())
                polls_before = log.read_text().count("GET /v2/command-inbox/")
                operation_id = create_operation(org, "REBOOT", {"devices": ["kiosk-1"]})
                shown = wait_finished(org, operation_id, agent.log, bridge.text)
                polls_after = log.read_text().count("GET /v2/command-inbox/")
            finally:
                agent.stop()
    finally:
        bridge.kill()

    assert shown["state"] == "SUCCESS"
    assert counts(shown)["success_device_count"] == 1
    command = only_command(org, operation_id)
    assert (command["state"], command["details"]["stdout"]) == ("Command Success", "rebooted")
    access = log.read_text()
    # handed out and reported over MQTT: no inbox poll since, no PUT at all
    assert polls_after == polls_before, access
    assert re.search(r'"PUT /commands/v0/status/', access) is None, access
    assert re.search(r"inbox/get over MQTT: 1 commands", agent.log()), agent.log()
