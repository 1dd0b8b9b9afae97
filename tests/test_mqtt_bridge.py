"""The MQTT device channel, server side (contract section 14): push notifies from the outbox,
and the bridge (``manage.py mqtt_bridge``, a real process) settling device updates in batches.

Real Mosquitto (the session's broker), PostgreSQL and Redis; the bridge is a subprocess, so it
can be killed; the test device publishes with the server's admin login.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands import counting, notifier, push
from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus, DeviceNotify
from config.mosquitto import Broker
from operations.choices import OperationState
from operations.models import Operation
from tests.command_factories import dispatched_operation
from tests.conftest import ROOT, CeleryProcesses, Org, _process_env, add_device, add_devices, wait_until
from tests.mqtt_helpers import BridgeProcess, forget_session, mqtt_device, publish_all, report_messages

C = CommandState
pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture
def bridges(mqtt_settings: Broker, tmp_path: Path) -> Iterator[list[BridgeProcess]]:
    """Start bridges with ``start(name)``; every one is stopped at the end."""
    started: list[BridgeProcess] = []
    yield started
    for bridge in started:
        bridge.kill(signal.SIGKILL)
    for client_id, broker in {bridge.client_id: bridge.broker for bridge in started}.items():
        if mosquitto_alive(broker):
            forget_session(broker, client_id)


def mosquitto_alive(broker: Broker) -> bool:
    import socket

    try:
        with socket.create_connection((broker.host, broker.port), timeout=0.5):
            return True
    except OSError:
        return False


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


def test_http_and_mqtt_reports_of_one_command_interleave(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    (device,) = add_devices(org.tenant, 1)
    operation = dispatched_operation(org.tenant, [device])
    start_bridge(bridges, mqtt_settings, tmp_path)
    polled = device.api.get("/v2/command-inbox/", {"device_id": "dev-000"}).json()["content"]["results"]
    command_id = polled[0]["id"]
    with mqtt_device(mqtt_settings, "acme", "dev-000") as phone:
        phone.update(command_id, "Command Acknowledged", "a")
        assert phone.expect(f"commands/{command_id}/update/accepted", token="a")["command"]["version"] == 3
        put = device.api.put(f"/commands/v0/status/{command_id}/", {"state": "Command In Progress"})
        assert put.status_code == 200 and put.json()["content"]["version"] == 4
        phone.update(command_id, "Command Success", "s")
        accepted = phone.expect(f"commands/{command_id}/update/accepted", token="s")
    again = device.api.put(f"/commands/v0/status/{command_id}/", {"state": "Command Success"})
    assert again.status_code == 200
    # the MQTT answer is the HTTP answer's command, byte for byte in its fields
    assert accepted["command"] == again.json()["content"]
    assert counters(operation) == counting.recount(operation.pk)
    assert counters(operation)["success_count"] == 1
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCESS


def test_repeats_are_no_ops_and_a_backwards_move_is_rejected_as_over_http(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    devices = add_devices(org.tenant, 2)
    operation = dispatched_operation(org.tenant, devices)
    ours, theirs = (CommandStatus.objects.get(operation=operation, device=d.device).pk for d in devices)
    start_bridge(bridges, mqtt_settings, tmp_path)
    with mqtt_device(mqtt_settings, "acme", "dev-000") as phone:
        phone.update(ours, "Command Acknowledged", "1")
        first = phone.expect(f"commands/{ours}/update/accepted", token="1")
        phone.update(ours, "Command Acknowledged", "2")  # the device retries
        second = phone.expect(f"commands/{ours}/update/accepted", token="2")
        assert second["command"]["version"] == first["command"]["version"]
        phone.update(ours, "Command Success", "3")
        phone.expect(f"commands/{ours}/update/accepted", token="3")
        phone.update(ours, "Command In Progress", "4")  # late, out of order
        rejected = phone.expect(f"commands/{ours}/update/rejected", token="4")

    http = devices[0].api.put(f"/commands/v0/status/{ours}/", {"state": "Command In Progress"}).json()
    assert rejected["code"] == http["error_code"] == "invalid_transition"
    assert rejected["errors"] == http["errors"]
    assert rejected["message"] == http["message"]
    assert "Command Success" in rejected["message"] and "Command In Progress" in rejected["message"]
    assert counters(operation)["success_count"] == 1
    assert counters(operation) == counting.recount(operation.pk)
    assert CommandStatus.objects.get(pk=theirs).state == C.QUEUED


def test_malformed_messages_are_rejected_or_dropped_and_never_stop_the_bridge(
    org: Org, other_org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    ours = add_device(org.tenant, "dev-1")
    neighbour = add_device(org.tenant, "dev-2")
    stranger = add_device(other_org.tenant, "dev-1")
    operation = dispatched_operation(org.tenant, [ours, neighbour])
    dispatched_operation(other_org.tenant, [stranger])
    mine = CommandStatus.objects.get(operation=operation, device=ours.device).pk
    not_mine = CommandStatus.objects.get(operation=operation, device=neighbour.device).pk
    bridge = start_bridge(bridges, mqtt_settings, tmp_path)
    with mqtt_device(mqtt_settings, "acme", "dev-1") as phone:
        success = {"state": "Command Success", "client_token": "t"}
        cases: list[tuple[str, Any, bytes | None, str, str]] = [
            (f"commands/{mine}/update", None, b"{not json", "parse_error", ""),
            (f"commands/{mine}/update", None, b"\xff\xfe", "parse_error", ""),
            (f"commands/{mine}/update", {"state": 5, "client_token": "t"}, None, "invalid", "state"),
            (f"commands/{mine}/update", {**success, "state": "Command Exploded"}, None, "invalid", "state"),
            (f"commands/{mine}/update", {"client_token": "t"}, None, "invalid", "state"),
            (f"commands/{mine}/update", [1, 2], None, "invalid", "non_field_errors"),
            (f"commands/{mine}/update", {**success, "client_token": 7}, None, "invalid", "client_token"),
            (f"commands/{mine}/update", {**success, "details": "x" * 300_000}, None, "payload_too_large", ""),
            (f"commands/{not_mine}/update", success, None, "not_found", ""),
            ("commands/abc/update", success, None, "not_found", ""),
            ("commands/99999999999999999999/update", success, None, "not_found", ""),
            ("commands/\u00b2/update", success, None, "not_found", ""),  # a digit to str.isdigit, not to us
        ]
        for topic, payload, raw, code, field in cases:
            phone.publish(topic, payload, raw=raw)
            answer = phone.expect(f"{topic}/rejected")
            assert answer["code"] == code, (topic, payload, answer)
            if field:
                assert field in answer["errors"], answer
                assert field == "non_field_errors" or answer["message"].startswith(field), answer
        # no reply topic to name: dropped and counted
        phone.publish("inbox/get", None, raw=b"[not json")
        phone.publish("inbox/get", None, raw=b'{"client_token": "' + b"x" * 5000 + b'"}')  # too big to read
        with mqtt_device(mqtt_settings, "acme", "nobody") as ghost:
            ghost.inbox_get("g")
            ghost.update(mine, "Command Success", "g")
        with mqtt_device(mqtt_settings, "globex", "dev-1") as other:
            other.update(mine, "Command Success", "x")  # another tenant's device: its own command only
            assert other.expect(f"commands/{mine}/update/rejected", token="x")["code"] == "not_found"
        # and the bridge still answers
        phone.update(mine, "Command Success", "ok")
        assert (
            phone.expect(f"commands/{mine}/update/accepted", token="ok")["command"]["state"]
            == "Command Success"
        )
        assert phone.count("inbox/get/accepted") == 0
    assert bridge.alive()
    assert CommandStatus.objects.get(pk=not_mine).state == C.QUEUED
    assert counters(operation) == counting.recount(operation.pk)


def test_a_device_heard_over_mqtt_polls_http_at_the_safety_interval(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path, settings: Any
) -> None:
    quiet, talker = add_devices(org.tenant, 2)
    dispatched_operation(org.tenant, [quiet, talker])
    start_bridge(bridges, mqtt_settings, tmp_path)
    with mqtt_device(mqtt_settings, "acme", "dev-001") as phone:
        phone.inbox_get("hello")
        phone.expect("inbox/get/accepted", token="hello")
    wait_until(lambda: push.is_live(talker.device.pk), what="the bridge to record the device")
    answer = talker.api.get("/v2/command-inbox/", {"device_id": "dev-001"}).json()["content"]
    assert answer["next_poll_seconds"] == settings.MQTT_SAFETY_POLL_SECONDS == 3600
    normal = quiet.api.get("/v2/command-inbox/", {"device_id": "dev-000"}).json()["content"]
    assert normal["next_poll_seconds"] <= settings.INBOX_POLL_SECONDS * 1.5


def test_notifies_are_coalesced_per_device_and_one_is_sent_per_change(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    (device,) = add_devices(org.tenant, 1)
    with mqtt_device(mqtt_settings, "acme", "dev-000") as phone:
        for _ in range(3):  # three commands before any publisher runs
            dispatched_operation(org.tenant, [device])
        # a publisher that died between the change's commit and its publish: the rows stay
        with pytest.raises(ConnectionError):
            notifier.publish_round(lambda _: (_ for _ in ()).throw(ConnectionError("killed")))
        assert DeviceNotify.objects.count() == 1
        start_bridge(bridges, mqtt_settings, tmp_path)
        assert phone.expect("notify")["pending"] == 3
        wait_until(lambda: not DeviceNotify.objects.exists(), what="the outbox emptied")
        dispatched_operation(org.tenant, [device])  # one more change: one more notify
        assert phone.expect("notify")["pending"] == 4
        wait_until(lambda: not DeviceNotify.objects.exists(), what="the outbox emptied")
        # A marker: the next change's notify comes after any stray repeat of the last one.
        dispatched_operation(org.tenant, [device])
        assert phone.expect("notify")["pending"] == 5
        assert phone.count("notify") == 3  # one per change, none repeated


def test_a_fan_out_by_the_worker_reaches_the_device_by_push(
    org: Org,
    mqtt_settings: Broker,
    bridges: list[BridgeProcess],
    tmp_path: Path,
    celery_processes: CeleryProcesses,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQTT_URL", mqtt_settings.url)  # the worker writes the outbox too
    celery_processes.worker()
    add_devices(org.tenant, 2)
    start_bridge(bridges, mqtt_settings, tmp_path)
    with mqtt_device(mqtt_settings, "acme", "dev-001") as phone:
        created = org.operator.post(
            "/v0/operations/",
            {"operation_type": "REBOOT", "operation_device_query": {"devices": ["dev-000", "dev-001"]}},
        )
        assert created.status_code == 201, created.content
        assert phone.expect("notify", timeout=60)["pending"] == 1
        phone.inbox_get("w")
        (command,) = phone.expect("inbox/get/accepted", token="w")["commands"]
        phone.update(command["id"], "Command Success", "done")
        phone.expect(f"commands/{command['id']}/update/accepted", token="done")
    operation = Operation.objects.get()
    assert counters(operation)["success_count"] == 1
    assert counters(operation) == counting.recount(operation.pk)


SETTLE_STATES = ["Command Acknowledged", "Command Success"]


def many_commands(
    org: Org, devices: int = 250, operations: int = 4
) -> tuple[list[Operation], list[tuple[str, int]]]:
    """``devices`` devices with ``operations`` commands each, all Queued."""
    actors = add_devices(org.tenant, devices)
    made = [dispatched_operation(org.tenant, actors) for _ in range(operations)]
    rows = CommandStatus.objects.filter(operation__in=made).values_list("device__device_id", "pk")
    return made, sorted(rows, key=lambda row: row[1])


def settled_count() -> int:
    return CommandStatus.objects.filter(state=C.SUCCESS).count()


def assert_each_settled_once(operations: list[Operation], commands: list[tuple[str, int]]) -> None:
    assert settled_count() == len(commands)
    ids = [pk for _, pk in commands]
    into_success = CommandHistory.objects.filter(command_id__in=ids, to_state=C.SUCCESS).count()
    into_acknowledged = CommandHistory.objects.filter(command_id__in=ids, to_state=C.ACKNOWLEDGED).count()
    assert into_success == len(commands)
    assert into_acknowledged <= len(commands)
    for operation in operations:
        assert counters(operation) == counting.recount(operation.pk)
        assert counters(operation)["success_count"] == counters(operation)["resolved_count"]


def test_a_bridge_killed_mid_batch_loses_no_report_and_counts_none_twice(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    operations, commands = many_commands(org)
    messages = report_messages("acme", commands, SETTLE_STATES)
    assert len(messages) == 2000
    bridge = start_bridge(
        bridges, mqtt_settings, tmp_path, "bridge-k", "--batch-size", "40", "--batch-ms", "5"
    )
    publish_all(mqtt_settings, messages)
    wait_until(lambda: settled_count() >= 100, timeout=60, interval=0.02, what="some reports settled")
    bridge.kill(signal.SIGKILL)
    assert settled_count() < len(commands), "the bridge finished before it was killed"

    restarted = start_bridge(
        bridges, mqtt_settings, tmp_path, "bridge-k", "--batch-size", "40", "--batch-ms", "5"
    )
    wait_until(lambda: settled_count() == len(commands), timeout=120, what="every report settled")
    # A marker after everything: once it is answered, the bridge has settled every message the
    # broker redelivered before it (a late repeat counted twice would show below).
    with mqtt_device(mqtt_settings, "acme", commands[0][0]) as marker:
        marker.inbox_get("after-all")
        marker.expect("inbox/get/accepted", token="after-all", timeout=60)
    assert_each_settled_once(operations, commands)
    assert "session present: True" in restarted.text()


def test_two_bridges_share_the_load_and_the_totals_stay_exact(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    operations, commands = many_commands(org)
    first = start_bridge(bridges, mqtt_settings, tmp_path, "bridge-1", "--batch-size", "50")
    second = start_bridge(bridges, mqtt_settings, tmp_path, "bridge-2", "--batch-size", "50", "--no-notifies")
    # Two waves: across bridges the order of one device's messages is not kept (each goes to
    # either), so a device awaits an update's reply before it sends the next of that command.
    acknowledged = CommandStatus.objects.filter(state=C.ACKNOWLEDGED)
    publish_all(mqtt_settings, report_messages("acme", commands, SETTLE_STATES[:1]))
    wait_until(lambda: acknowledged.count() == len(commands), timeout=120, what="every acknowledgement")
    publish_all(mqtt_settings, report_messages("acme", commands, SETTLE_STATES[1:]))
    wait_until(lambda: settled_count() == len(commands), timeout=120, what="every report settled")
    for bridge in (first, second):
        bridge.kill(signal.SIGTERM)  # graceful: finishes its batch, acknowledges, disconnects
        assert bridge.proc.returncode == 0, bridge.text()
    handled = [int(b.text().rsplit("stopped after ", 1)[1].split()[0]) for b in (first, second)]
    assert all(count > 0 for count in handled), handled
    assert sum(handled) == 2000
    assert_each_settled_once(operations, commands)


def test_a_retired_bridge_leaves_its_share_to_the_others(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    # given two bridges, one then taken away for good: its session stays in the share group
    _operations, commands = many_commands(org, devices=100, operations=1)
    gone = start_bridge(bridges, mqtt_settings, tmp_path, "bridge-gone", "--no-notifies")
    stays = start_bridge(bridges, mqtt_settings, tmp_path, "bridge-stays")
    gone.kill(signal.SIGTERM)
    assert gone.proc.returncode == 0, gone.text()

    # when the operator retires it
    retired = subprocess.run(
        [sys.executable, "manage.py", "mqtt_bridge", "--client-id", gone.client_id, "--retire"],
        cwd=ROOT,
        env=_process_env() | {"MQTT_URL": mqtt_settings.url},
        capture_output=True,
        text=True,
        timeout=60,
    )

    # then every message goes to the bridge that stays (none waits for the retired session)
    assert retired.returncode == 0, retired.stderr
    assert f"the broker session of {gone.client_id} is ended" in retired.stdout
    acknowledged = CommandStatus.objects.filter(state=C.ACKNOWLEDGED)
    publish_all(mqtt_settings, report_messages("acme", commands, SETTLE_STATES[:1]))
    wait_until(lambda: acknowledged.count() == len(commands), timeout=60, what="every acknowledgement")
    assert stays.alive()


def test_the_bridge_reconnects_when_the_broker_comes_back(
    org: Org, bridges: list[BridgeProcess], tmp_path: Path, settings: Any
) -> None:
    from config import mosquitto

    broker = mosquitto.prepare(tmp_path / "own-broker", mosquitto.free_port())
    process = mosquitto.start(broker)
    settings.MQTT_URL = broker.url
    try:
        (device,) = add_devices(org.tenant, 1)
        operation = dispatched_operation(org.tenant, [device])
        command = CommandStatus.objects.get(operation=operation).pk
        bridge = BridgeProcess(broker, tmp_path / "bridge-r.log", "test-bridge-r")
        bridges.append(bridge)
        bridge.wait_connected()
        mosquitto.stop(process)
        wait_until(lambda: "disconnected" in bridge.text(), what="the bridge to notice")
        process = mosquitto.start(broker)
        bridge.wait_connected(times=2, timeout=60)
        with mqtt_device(broker, "acme", "dev-000") as phone:
            phone.update(command, "Command Success", "back")
            phone.expect(f"commands/{command}/update/accepted", token="back")
        assert bridge.alive()
    finally:
        mosquitto.stop(process)


def test_the_bridges_metrics_reach_the_scrape_through_the_multiprocess_folder(
    org: Org, mqtt_settings: Broker, bridges: list[BridgeProcess], tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    folder = tmp_path / "prometheus"
    folder.mkdir()
    (device,) = add_devices(org.tenant, 1)
    with mqtt_device(mqtt_settings, "acme", "dev-000") as phone:
        operation = dispatched_operation(org.tenant, [device])
        command = CommandStatus.objects.get(operation=operation).pk
        bridge = BridgeProcess(
            mqtt_settings, tmp_path / "bridge-m.log", "test-bridge-m", PROMETHEUS_MULTIPROC_DIR=str(folder)
        )
        bridges.append(bridge)
        bridge.wait_connected()
        phone.expect("notify")
        phone.update(command, "Command Success", "m")
        phone.expect(f"commands/{command}/update/accepted", token="m")
        phone.update(command, "Command Acknowledged", "back")
        phone.expect(f"commands/{command}/update/rejected", token="back")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))  # what /metrics reads

    def scraped() -> str:
        return generate_latest(registry).decode()

    wait_until(lambda: 'dos_mqtt_rejected_updates_total{code="invalid_transition"} 1.0' in scraped())
    text = scraped()
    assert 'dos_mqtt_messages_total{kind="update"} 2.0' in text
    assert "dos_mqtt_batch_size_count" in text and "dos_mqtt_settle_duration_seconds_count" in text
    assert "dos_mqtt_notifies_total 1.0" in text
    assert "dos_mqtt_connected_clients" in text
