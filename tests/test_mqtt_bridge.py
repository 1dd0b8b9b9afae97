"""The MQTT device channel, server side (contract section 14): push notifies from the outbox,
and the bridge (``manage.py mqtt_bridge``, a real process) settling device updates in batches.

Real Mosquitto (the session's broker), PostgreSQL and Redis; the bridge is a subprocess, so it
can be killed; the test device publishes with the server's admin login.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands import counting
from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus, DeviceNotify
from config.mosquitto import Broker
from operations.models import Operation
from tests.command_factories import dispatched_operation
from tests.conftest import Org, add_devices, wait_until
from tests.mqtt_helpers import BridgeProcess, mqtt_device

C = CommandState
pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture
def bridges(mqtt_settings: Broker, tmp_path: Path) -> Iterator[list[BridgeProcess]]:
    """Start bridges with ``start(name)``; every one is stopped at the end."""
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        bridge.kill(signal.SIGKILL)


def start_bridge(
    started: list[BridgeProcess], broker: Broker, tmp_path: Path, name: str = "bridge-a", *args: str
) -> BridgeProcess:
    bridge = BridgeProcess(broker, tmp_path / f"{name}.log", f"test-{name}", *args)
    started.append(bridge)
    bridge.wait_connected()
    return bridge


def counters(operation: Operation) -> dict[str, int]:
    operation.refresh_from_db()
    return {name: getattr(operation, name) for name in counting.COUNTERS}


def test_notify_get_and_updates_to_success_through_mqtt_only(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    devices = add_devices(org.tenant, 3)
    with mqtt_device(mqtt_settings, "acme", "dev-001") as phone:
        operation = dispatched_operation(org.tenant, devices)
        assert DeviceNotify.objects.count() == 3  # written with the fan-out's chunk
        start_bridge(bridges, mqtt_settings, tmp_path)
        notify = phone.expect("notify")
        assert notify["pending"] == 1 and notify["etag"] and notify["timestamp"]
        wait_until(lambda: not DeviceNotify.objects.exists(), what="the outbox emptied")

        phone.inbox_get("g1")
        got = phone.expect("inbox/get/accepted", token="g1")
        assert [c["state"] for c in got["commands"]] == ["Command Initiated"]
        assert got["next_poll_seconds"] == 3600
        command_id = got["commands"][0]["id"]
        assert notify["etag"] == got["etag"]  # the ETag the notify announced is the hand-out's

        for state, token in (
            ("Command Acknowledged", "u1"),
            ("Command In Progress", "u2"),
            ("Command Success", "u3"),
        ):
            phone.update(command_id, state, token, reason="done" if token == "u3" else "")
            accepted = phone.expect(f"commands/{command_id}/update/accepted", token=token)
            assert accepted["command"]["state"] == state
            assert accepted["command"]["id"] == command_id

    command = CommandStatus.objects.get(pk=command_id)
    assert command.state == C.SUCCESS and command.reason == "done"
    assert counters(operation) == counting.recount(operation.pk)
    assert counters(operation)["success_count"] == 1
    actors = set(CommandHistory.objects.filter(command_id=command_id).values_list("actor", flat=True))
    assert actors == {"device:dev-001"}
