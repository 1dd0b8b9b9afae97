"""``GET /v2/command-inbox/?device_id=X`` (seed 002, contract section 5): who may poll,
hand-out, order, batching, the ETag/304 path, poll hints, device scoping, presence."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from commands import inbox
from commands.choices import CommandState, Priority
from commands.models import CommandStatus
from commands.services import issue_internal_command
from inventory.models import Device
from inventory.presence import flush_seen, write_sightings
from inventory.services import revoke_device_token
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, add_device
from tests.helpers import INBOX, content, error, handed_out, poll_inbox

C = CommandState


# --- who may poll which inbox ------------------------------------------------------------------


def test_missing_device_id_is_400(device: DeviceActor) -> None:
    body = error(device.api.get(INBOX), 400)

    assert "device_id" in body["errors"]


def test_a_device_token_cannot_read_another_devices_inbox(org: Org, device: DeviceActor) -> None:
    other = add_device(org.tenant, "dev-2")
    dispatched_operation(org.tenant, [other])

    body = error(poll_inbox(device, "dev-2"), 400)

    assert "device_id" in body["errors"]
    assert CommandStatus.objects.get(device=other.device).state == C.QUEUED


def test_an_unknown_device_is_400_for_a_key(org: Org, device: DeviceActor) -> None:
    assert "device_id" in error(poll_inbox(org.operator, "no-such-device"), 400, "not_found_device")["errors"]


def test_another_tenants_device_is_400_for_a_key(org: Org, other_org: Org) -> None:
    theirs = add_device(other_org.tenant, "theirs")
    dispatched_operation(other_org.tenant, [theirs])

    error(poll_inbox(org.admin, "theirs"), 400)

    assert CommandStatus.objects.get(device=theirs.device).state == C.QUEUED


def test_a_tenant_key_can_read_a_devices_inbox(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])

    page = content(poll_inbox(org.operator, "dev-1"))

    assert page["count"] == 1
    assert page["results"][0]["id"] == str(command_of(operation, device).pk)
    assert page["results"][0]["request"] == str(operation.pk)
    assert page["results"][0]["device"] == "dev-1"


def test_a_revoked_device_token_is_401(device: DeviceActor) -> None:
    content(poll_inbox(device))

    revoke_device_token(device.device)

    response = poll_inbox(device)
    assert response.status_code == 401
    assert response.json()["code"] == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_token_is_401(anonymous: Any, device: DeviceActor) -> None:
    assert error(anonymous.get(INBOX, {"device_id": "dev-1"}), 401)


# --- hand-out ----------------------------------------------------------------------------------


def test_hand_out_initiates_and_does_not_repeat(org: Org, device: DeviceActor) -> None:
    # given a queued command
    command = command_of(dispatched_operation(org.tenant, [device]), device)

    # when the device polls twice
    first = content(poll_inbox(device))
    second = content(poll_inbox(device))

    # then it got the command once, now Initiated
    assert [item["id"] for item in first["results"]] == [str(command.pk)]
    assert first["results"][0]["state"] == "Command Initiated"
    assert first["results"][0]["command"] == "REBOOT"
    assert second["results"] == [] and second["count"] == 0
    command.refresh_from_db()
    assert command.state == C.INITIATED
    assert command.delivery_count == 1
    assert command.delivered_at is not None


def test_critical_internal_commands_come_first_then_oldest(org: Org, device: DeviceActor) -> None:
    # given two older NORMAL commands, then a CRITICAL internal one
    older = command_of(dispatched_operation(org.tenant, [device]), device)
    newer = command_of(dispatched_operation(org.tenant, [device], operation_type="LOCK"), device)
    urgent = issue_internal_command(
        org.tenant.pk, device.device.pk, "WIPE", {"why": "stolen"}, "headless:1", priority=Priority.CRITICAL
    )

    # when the device polls
    page = content(poll_inbox(device))

    # then
    assert [int(item["id"]) for item in page["results"]] == [urgent.pk, older.pk, newer.pk]
    assert page["results"][0]["priority"] == "critical"
    assert page["results"][0]["is_internal"] is True
    assert page["results"][0]["request"] == "headless:1"
    assert page["results"][0]["arguments"] == {"why": "stolen"}


def test_one_poll_hands_out_at_most_inbox_batch(org: Org, device: DeviceActor, settings: Any) -> None:
    # given a batch of 2 and three queued commands
    settings.INBOX_BATCH = 2
    commands = [
        command_of(dispatched_operation(org.tenant, [device], operation_type=kind), device)
        for kind in ("REBOOT", "LOCK", "BEEP_DEVICE")
    ]

    # when the device polls three times
    first, second, third = (handed_out(poll_inbox(device)) for _ in range(3))

    # then oldest first, two then one then none
    assert first == [commands[0].pk, commands[1].pk]
    assert second == [commands[2].pk]
    assert third == []


def test_a_head_request_hands_nothing_out(org: Org, device: DeviceActor) -> None:
    """HEAD has no body to carry commands in, so it must not move them to Initiated."""
    command = command_of(dispatched_operation(org.tenant, [device]), device)

    response = device.api.client.head(
        INBOX, {"device_id": "dev-1"}, HTTP_AUTHORIZATION=f"Bearer {device.token}"
    )

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    command.refresh_from_db()
    assert command.state == C.QUEUED
    assert handed_out(poll_inbox(device)) == [command.pk]


# --- ETag / 304 --------------------------------------------------------------------------------


def test_an_unchanged_empty_inbox_answers_304_without_queries(
    device: DeviceActor, django_assert_num_queries: Any
) -> None:
    # given an empty poll and its ETag
    empty = poll_inbox(device)
    assert content(empty)["results"] == []
    etag = empty["ETag"]
    assert etag

    # when the device polls again with it
    with django_assert_num_queries(0):
        again = poll_inbox(device, HTTP_IF_NONE_MATCH=etag)

    # then
    assert again.status_code == 304
    assert again["ETag"] == etag
    assert again.content == b""


def test_a_different_etag_gets_a_full_answer(device: DeviceActor) -> None:
    content(poll_inbox(device))

    response = poll_inbox(device, HTTP_IF_NONE_MATCH='"something-else"')

    assert content(response)["results"] == []


def test_a_new_operation_breaks_the_304(org: Org, device: DeviceActor) -> None:
    # given a device that holds an empty inbox's ETag
    etag = poll_inbox(device)["ETag"]
    assert poll_inbox(device, HTTP_IF_NONE_MATCH=etag).status_code == 304

    # when an operation for it is fanned out
    operation = dispatched_operation(org.tenant, [device])

    # then the next poll answers 200 with the command
    assert handed_out(poll_inbox(device, HTTP_IF_NONE_MATCH=etag)) == [command_of(operation, device).pk]


def test_a_new_internal_command_breaks_the_304(
    org: Org, device: DeviceActor, django_capture_on_commit_callbacks: Any
) -> None:
    # given a device that holds an empty inbox's ETag
    etag = poll_inbox(device)["ETag"]
    assert poll_inbox(device, HTTP_IF_NONE_MATCH=etag).status_code == 304

    # when the system issues it an internal command (the cache is told after commit)
    with django_capture_on_commit_callbacks(execute=True):
        internal = issue_internal_command(org.tenant.pk, device.device.pk, "NUDGE_DEVICE", {}, "headless:9")

    # then
    assert handed_out(poll_inbox(device, HTTP_IF_NONE_MATCH=etag)) == [internal.pk]


def test_another_devices_command_keeps_the_304_only_where_nothing_changed(
    org: Org, device: DeviceActor
) -> None:
    """A new command for one device must not be lost for another: at worst, a full answer."""
    other = add_device(org.tenant, "dev-2")
    etag = poll_inbox(device)["ETag"]

    dispatched_operation(org.tenant, [other])

    response = poll_inbox(device, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code in (200, 304)
    if response.status_code == 200:
        assert content(response)["results"] == []
    assert handed_out(poll_inbox(other, "dev-2")) == [CommandStatus.objects.get(device=other.device).pk]


def test_a_304_does_not_hide_a_queued_command_for_a_key_poller(org: Org, device: DeviceActor) -> None:
    # given an operator that polls the device's empty inbox and holds the ETag
    etag = poll_inbox(org.operator, "dev-1")["ETag"]

    # when a command arrives
    operation = dispatched_operation(org.tenant, [device])

    # then
    assert handed_out(poll_inbox(org.operator, "dev-1", HTTP_IF_NONE_MATCH=etag)) == [
        command_of(operation, device).pk
    ]


def test_an_internal_command_committed_during_an_empty_poll_is_not_hidden_by_a_304(
    org: Org, device: DeviceActor, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The poll found nothing, then the command committed (and told the cache) before the
    poll stored its empty answer's ETag: that ETag must not answer 304 afterwards."""
    # given a poll during which an internal command is issued, after its query ran
    issued: list[CommandStatus] = []
    real_hand_out = inbox.hand_out

    def hand_out_then_issue(*args: Any, **kwargs: Any) -> Any:
        found = real_hand_out(*args, **kwargs)
        with django_capture_on_commit_callbacks(execute=True):
            issued.append(issue_internal_command(org.tenant.pk, device.device.pk, "LOCK", {}, "headless:3"))
        return found

    monkeypatch.setattr(inbox, "hand_out", hand_out_then_issue)
    empty = poll_inbox(device)
    monkeypatch.undo()
    assert content(empty)["results"] == []

    # when the device polls again with that poll's ETag
    response = poll_inbox(device, HTTP_IF_NONE_MATCH=empty["ETag"])

    # then it gets the command
    assert handed_out(response) == [issued[0].pk]


# --- poll hints ----------------------------------------------------------------------------------


def test_next_poll_seconds_is_within_the_jitter(device: DeviceActor) -> None:
    base, jitter = settings.INBOX_POLL_SECONDS, settings.INBOX_POLL_JITTER
    low, high = max(1, int(base * (1 - jitter))), round(base * (1 + jitter) + 0.5)

    seen = {content(poll_inbox(device))["next_poll_seconds"] for _ in range(20)}

    assert all(isinstance(value, int) and low <= value <= high for value in seen), seen
    assert len(seen) > 1, "every answer gave the same interval: no jitter"


# --- a device sees only its own commands -------------------------------------------------------


def test_a_device_token_cannot_see_or_change_another_devices_command(org: Org, device: DeviceActor) -> None:
    # given another device's command
    other = add_device(org.tenant, "dev-2")
    operation = dispatched_operation(org.tenant, [device, other])
    theirs, mine = command_of(operation, other), command_of(operation, device)

    # then the device sees only its own, by id and in lists
    path = f"/commands/v0/status/{theirs.pk}/"
    error(device.api.get(path), 404)
    error(device.api.put(path, {"state": "Command Cancelled"}), 404)
    listed = device.api.get("/commands/v0/status/").json()["content"]
    assert [item["id"] for item in listed["results"]] == [str(mine.pk)]
    assert CommandStatus.objects.get(pk=theirs.pk).state == C.QUEUED


def test_a_device_token_cannot_reach_operations(device: DeviceActor) -> None:
    error(device.api.get("/v0/operations/"), 403)
    error(
        device.api.post(
            "/v0/operations/", {"operation_type": "REBOOT", "operation_device_query": {"devices": ["dev-1"]}}
        ),
        403,
    )


def test_a_device_can_report_on_its_own_command(org: Org, device: DeviceActor) -> None:
    command = command_of(dispatched_operation(org.tenant, [device]), device)
    content(poll_inbox(device))

    response = device.api.put(f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged"})

    assert content(response)["state"] == "Command Acknowledged"


# --- presence ----------------------------------------------------------------------------------


def test_last_seen_is_buffered_until_flushed(device: DeviceActor) -> None:
    # given a device that never polled
    assert Device.objects.get(pk=device.device.pk).last_seen is None
    before = timezone.now()

    # when it polls a few times
    for _ in range(3):
        content(poll_inbox(device))

    # then nothing was written to the device row yet ...
    assert Device.objects.get(pk=device.device.pk).last_seen is None

    # ... until the sightings are flushed, once
    assert flush_seen() == 1
    seen = Device.objects.get(pk=device.device.pk).last_seen
    assert seen is not None and seen >= before - dt.timedelta(seconds=1)
    assert flush_seen() == 0


def test_sightings_never_move_last_seen_backwards(device: DeviceActor) -> None:
    now = time.time()
    assert write_sightings({device.device.pk: now}) == 1
    assert write_sightings({device.device.pk: now - 3600}) == 1  # an older sighting, from a slow process
    seen = Device.objects.get(pk=device.device.pk).last_seen
    assert seen is not None and abs(seen.timestamp() - now) < 0.01


def test_a_poll_writes_nothing_to_the_device_row(device: DeviceActor) -> None:
    content(poll_inbox(device))  # warms the token cache

    with CaptureQueriesContext(connection) as queries:
        content(poll_inbox(device))

    assert not [q["sql"] for q in queries.captured_queries if Device._meta.db_table in q["sql"]]


def test_a_key_polling_a_deleted_and_recreated_device_id_reaches_the_new_device(org: Org) -> None:
    # given a key that polled a device, which is then deleted and its id reused
    old = add_device(org.tenant, "reused")
    assert org.admin.get("/v2/command-inbox/", {"device_id": "reused"}).status_code == 200
    old.device.delete()
    assert org.admin.get("/v2/command-inbox/", {"device_id": "reused"}).status_code == 400
    new = add_device(org.tenant, "reused")
    issue_internal_command(org.tenant.pk, new.device.pk, "PING", {}, "test:reused")

    # when the key polls it again
    response = org.admin.get("/v2/command-inbox/", {"device_id": "reused"})

    # then it gets the new device's command
    assert [c["command"] for c in response.json()["content"]["results"]] == ["PING"]
