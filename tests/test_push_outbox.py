"""The push outbox (contract section 14, ``commands.push``): every change that makes a command
available to a device writes that device's row, in the change's own transaction, one row per
device; nothing at all without MQTT."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from commands import notifier, services
from commands.choices import CommandState
from commands.models import DeviceNotify
from commands.sweeps import redeliver_unacknowledged
from operations import headless
from operations.sweeps import open_windows
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import Org, add_devices

C = CommandState


@pytest.fixture
def mqtt_on(settings: Any) -> None:
    settings.MQTT_URL = "mqtt://dos-server:pw@127.0.0.1:1883"


def outbox() -> set[int]:
    return set(DeviceNotify.objects.values_list("device_pk", flat=True))


def test_without_mqtt_nothing_is_written(org: Org, settings: Any) -> None:
    settings.MQTT_URL = None
    devices = add_devices(org.tenant, 3)
    dispatched_operation(org.tenant, devices)
    assert not DeviceNotify.objects.exists()


def test_a_fan_out_writes_one_row_per_device_whatever_its_commands(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 3)
    for _ in range(3):
        dispatched_operation(org.tenant, devices)
    assert outbox() == {d.device.pk for d in devices}
    assert DeviceNotify.objects.count() == 3

    taken, messages = notifier.claim(100)
    assert sorted(taken) == sorted(d.device.pk for d in devices)
    assert [m.payload["pending"] for m in messages] == [3, 3, 3]
    assert messages[0].topic == "dos/v1/acme/dev-000/notify"


def test_the_notify_names_the_etag_of_the_inbox_answer_it_announces(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 1)
    dispatched_operation(org.tenant, devices)
    dispatched_operation(org.tenant, devices)
    _, (message,) = notifier.claim(10)
    answer = devices[0].api.get("/v2/command-inbox/", {"device_id": "dev-000"})
    assert answer.status_code == 200 and len(answer.json()["content"]["results"]) == 2
    assert answer["ETag"] == message.payload["etag"]


def test_a_round_that_fails_to_publish_keeps_the_rows(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 2)
    dispatched_operation(org.tenant, devices)

    def broker_gone(messages: list[notifier.Notify]) -> None:
        raise ConnectionError("no PUBACK")

    with pytest.raises(ConnectionError):
        notifier.publish_round(broker_gone)
    assert outbox() == {d.device.pk for d in devices}

    sent: list[notifier.Notify] = []
    assert notifier.publish_round(sent.extend) == (2, 2)
    assert not outbox()


def test_a_device_with_nothing_waiting_any_more_is_not_told(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 1)
    dispatched_operation(org.tenant, devices)
    devices[0].api.get("/v2/command-inbox/", {"device_id": "dev-000"})  # polled over HTTP meanwhile
    sent: list[notifier.Notify] = []
    assert notifier.publish_round(sent.extend) == (1, 0)
    assert not outbox()


def test_a_window_opening_writes_its_devices_rows(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 2)
    start = timezone.now() + dt.timedelta(hours=1)
    operation = dispatched_operation(
        org.tenant,
        devices,
        schedule_type="WINDOW",
        schedule_args={
            "start_datetime": start.isoformat(),
            "end_datetime": (start + dt.timedelta(days=1)).isoformat(),
        },
    )
    assert command_of(operation, devices[0]).state == C.SCHEDULED
    assert not outbox()
    open_windows(now=start + dt.timedelta(minutes=1))
    assert command_of(operation, devices[0]).state == C.QUEUED
    assert outbox() == {d.device.pk for d in devices}


def test_a_retry_and_a_redelivery_put_the_command_back_and_write_the_row(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 2)
    operation = dispatched_operation(
        org.tenant, devices, rollout={"retries": [{"failure_type": "FAILED", "max_attempts": 2}]}
    )
    DeviceNotify.objects.all().delete()
    failed = command_of(operation, devices[0])
    services.report(failed, C.FAILURE, "disk full")
    assert command_of(operation, devices[0]).state == C.QUEUED
    assert outbox() == {devices[0].device.pk}

    DeviceNotify.objects.all().delete()
    services.hand_out(devices[1].device.pk, 10, "test", "handed out")
    redeliver_unacknowledged(now=timezone.now() + dt.timedelta(hours=1))
    assert command_of(operation, devices[1]).state == C.QUEUED
    assert devices[1].device.pk in outbox()


def test_a_wave_opening_writes_the_rows_of_its_devices_only(org: Org, mqtt_on: None) -> None:
    devices = add_devices(org.tenant, 10)
    operation = dispatched_operation(org.tenant, devices, rollout={"waves": [10, 100]})
    first = [d for d in devices if command_of(operation, d).wave == 1]
    assert outbox() == {d.device.pk for d in first}  # written Undrawn, then wave 1 opened

    DeviceNotify.objects.all().delete()
    services.report(command_of(operation, first[0]), C.SUCCESS)
    assert outbox() == {d.device.pk for d in devices} - {first[0].device.pk}


def test_a_headless_run_falling_due_writes_the_row(org: Org, mqtt_on: None) -> None:
    (device,) = add_devices(org.tenant, 1)
    headless.create_operation(org.tenant.pk, device.device, "reboot", timezone.now(), {}, 1)
    assert not outbox()
    headless.run_due()
    assert outbox() == {device.device.pk}


@pytest.mark.parametrize(
    "body",
    [
        {"state": "Command Success"},
        {"state": "Command Success", "reason": "  done  ", "client_token": "x", "extra": 1},
        {"state": "Command Acknowledged", "reason": ""},
        {"state": "Command Failure", "reason": "disk\u00e9 full"},
        {"state": "Command Success", "reason": "x" * 5000},
        {"state": "Command Success", "reason": "a\x00b"},
        {"state": "Command Success", "reason": 5},
        {"state": "Command Success", "reason": None},
        {"state": "Command Success", "details": {"a": 1}},
        {"state": "Command Success", "details": None},
        {"state": "Command Success", "attempt": 2},
        {"state": "Command Queued"},
        {"state": "Command Initiated"},
        {"state": 5},
        {"state": None},
        {},
        [],
    ],
)
def test_the_bridges_plain_path_reads_an_update_as_the_serializer_does(body: Any) -> None:
    from commands.api.serializers import CommandStatusUpdateSerializer
    from commands.bridge import _plain_report

    update = CommandStatusUpdateSerializer(data=body)
    plain = _plain_report(body)
    if plain is not None:  # the plain path takes only what the serializer accepts, the same way
        assert update.is_valid(), update.errors
        assert plain == update.report_arguments()
