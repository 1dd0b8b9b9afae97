"""A device's ``PUT /commands/v0/status/{id}/`` is served by a plain view (``commands.api.device_report``)
and everything else at that URL by the DRF view: a device must not be able to tell.

Each case sends the same request twice, to two fresh commands in the same state: once with the
device's token (the plain view) and once with an operator key (the DRF view). The answers must
have the same status and the same body, apart from what differs by design (who moved it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, add_device
from tests.helpers import content, error

C = CommandState


def _url(command: CommandStatus) -> str:
    return f"/commands/v0/status/{command.pk}/"


def _pair(org: Org, device: DeviceActor) -> tuple[CommandStatus, CommandStatus]:
    """Two commands of ``device`` in the same state (Queued), each of its own operation."""
    first = command_of(dispatched_operation(org.tenant, [device]), device)
    second = command_of(dispatched_operation(org.tenant, [device]), device)
    return first, second


def _comparable(response: Any, command: CommandStatus) -> dict[str, Any]:
    """The answer without what tells the two commands apart (ids and times), with the headers
    a client reads."""
    shown = response.json()
    if "content" in shown:
        assert (shown["content"]["id"], shown["content"]["request"]) == (
            str(command.pk),
            str(command.operation_id),
        )
        for name in ("id", "request", "created_on", "updated_on"):
            shown["content"].pop(name)
    headers = {name: response.get(name) for name in ("Content-Type", "Allow", "WWW-Authenticate")}
    return {"status": response.status_code, "body": shown, "headers": headers}


BODIES: list[tuple[str, str | None]] = [
    ("a move", '{"state": "Command Acknowledged", "reason": "got it", "details": {"battery": 80}}'),
    ("a move with the expected version", '{"state": "Command In Progress", "expected_version": 1}'),
    ("a stale expected version", '{"state": "Command In Progress", "expected_version": 7}'),
    ("a move with its attempt", '{"state": "Command In Progress", "attempt": 1}'),
    ("an attempt not yet reached", '{"state": "Command Failure", "attempt": 2}'),
    ("an attempt below 1", '{"state": "Command Failure", "attempt": 0}'),
    ("a move the table forbids", '{"state": "Command Scheduled"}'),
    ("no state", '{"reason": "forgot the state"}'),
    ("an unknown state", '{"state": "Command Exploded"}'),
    ("a state that is not a string", '{"state": 4}'),
    ("a version below 1", '{"state": "Command Success", "expected_version": 0}'),
    ("a list, not an object", '["Command Success"]'),
    ("malformed JSON", '{"state": '),
    ("NaN in the details", '{"state": "Command Success", "details": {"x": NaN}}'),
    ("a lone surrogate in the reason", '{"state": "Command Success", "reason": "\\ud800"}'),
    ("a reason too long", json.dumps({"state": "Command Success", "reason": "x" * 5000})),
    ("an empty body", ""),
]


@pytest.mark.parametrize(("case", "body"), BODIES, ids=[case for case, _ in BODIES])
def test_a_device_hears_what_the_api_says_to_a_key(
    org: Org, device: DeviceActor, case: str, body: str
) -> None:
    by_device, by_key = _pair(org, device)

    from_device = device.api.put(_url(by_device), raw=body)
    from_key = org.operator.put(_url(by_key), raw=body)

    assert _comparable(from_device, by_device) == _comparable(from_key, by_key), case
    by_device.refresh_from_db()
    by_key.refresh_from_db()
    assert (by_device.state, by_device.version) == (by_key.state, by_key.version)


def test_a_devices_report_moves_the_command_and_records_who(org: Org, device: DeviceActor) -> None:
    command = command_of(dispatched_operation(org.tenant, [device]), device)

    shown = content(device.api.put(_url(command), {"state": "Command Success", "reason": "done"}))

    assert (shown["state"], shown["reason"], shown["version"]) == ("Command Success", "done", 2)
    history = CommandHistory.objects.get(command_id=command.pk, to_state=C.SUCCESS)
    assert history.actor == "device:dev-1"
    assert content(org.viewer.get(_url(command)))["state"] == "Command Success"


def test_a_device_cannot_report_on_another_devices_command(org: Org, device: DeviceActor) -> None:
    other = add_device(org.tenant, "dev-2")
    theirs = command_of(dispatched_operation(org.tenant, [other]), other)

    assert error(device.api.put(_url(theirs), {"state": "Command Success"}), 404)["message"] == "Not found."
    theirs.refresh_from_db()
    assert theirs.state == C.QUEUED


def test_a_report_without_a_valid_token_is_refused(org: Org, device: DeviceActor) -> None:
    command = command_of(dispatched_operation(org.tenant, [device]), device)
    revoked = device.token[:-4] + ("aaaa" if not device.token.endswith("aaaa") else "bbbb")

    refused = device.api.client.put(
        _url(command),
        data='{"state": "Command Success"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {revoked}",
    )

    assert error(refused, 401)["message"] == "Invalid, revoked or expired token."
    assert refused["WWW-Authenticate"] == 'Bearer realm="api"'
    command.refresh_from_db()
    assert command.state == C.QUEUED


def test_a_device_past_its_rate_limit_hears_the_same_429_from_both_views(
    org: Org, device: DeviceActor, settings: Any, fresh_rate_window: None
) -> None:
    settings.RATE_LIMIT_DEVICE_PER_MINUTE = 1
    command = command_of(dispatched_operation(org.tenant, [device]), device)
    device.api.put(_url(command), {"state": "Command Acknowledged"})

    by_put = device.api.put(_url(command), {"state": "Command In Progress"})  # the plain view
    by_get = device.api.get(_url(command))  # the DRF view

    assert error(by_put, 429)["message"] == error(by_get, 429)["message"]
    assert error(by_put, 429)["message"].startswith("Rate limit exceeded; retry in ")
    assert int(by_put["Retry-After"]) >= 1
    command.refresh_from_db()
    assert command.state == C.ACKNOWLEDGED


def test_what_the_plain_view_leaves_to_the_drf_view_still_works(org: Org, device: DeviceActor) -> None:
    """A body that is not JSON, and a PUT with an Idempotency-Key, from a device."""
    command = command_of(dispatched_operation(org.tenant, [device]), device)

    as_form = device.api.client.put(
        _url(command), data="state=x", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {device.token}"
    )
    assert error(as_form, 415)
    as_xml = device.api.put(_url(command), {"state": "Command Acknowledged"}, HTTP_ACCEPT="application/xml")
    assert error(as_xml, 406)
    keyed = device.api.put(_url(command), {"state": "Command Acknowledged"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert content(keyed)["state"] == "Command Acknowledged"
    assert content(device.api.get(_url(command)))["version"] == 2


def test_a_devices_json_put_is_the_plain_views_and_the_rest_the_drf_views(
    org: Org, device: DeviceActor
) -> None:
    from django.test import RequestFactory
    from django.urls import resolve

    from commands.api.device_report import served_here

    assert resolve("/commands/v0/status/1/").func.__name__ == "command_status_detail"

    put = RequestFactory().put(
        "/commands/v0/status/1/",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {device.token}",
    )
    assert served_here(put.META)
    key_put = RequestFactory().put(
        "/commands/v0/status/1/",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {org.operator.token}",
    )
    assert not served_here(key_put.META)
    assert not served_here(
        RequestFactory().get("/commands/v0/status/1/", HTTP_AUTHORIZATION=f"Bearer {device.token}").META
    )
