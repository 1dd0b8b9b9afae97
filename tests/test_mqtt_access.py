"""The devices' broker logins (contract section 14, docs/mqtt.md): ``GET /v2/mqtt-credentials/``,
the ACLs a real Mosquitto enforces with them, the sync that ends a login when its device is
deleted, deactivated or its token rotated, ``mqtt_sync_logins`` and ``make run``'s broker.

Against the session's Mosquitto (``mosquitto_broker``), with real MQTT clients: what the broker
refuses is shown by a second client that would have received it, and "nothing arrived" without
a fixed sleep by a marker sent afterwards on an allowed path: once the marker is in, the
forbidden message, sent before it on the same connection, would have been too.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from paho.mqtt.enums import CallbackAPIVersion

from config import mosquitto
from inventory import broker_logins, device_topics, dynsec
from inventory.models import BrokerLogin, Device
from server.management.commands import runstack
from tests.conftest import ROOT, Api, CeleryProcesses, DeviceActor, Org, add_device, make_org, wait_until

CREDENTIALS = "/v2/mqtt-credentials/"
#: The contract's bound on ending a login after its device changed.
LOGIN_ENDS_WITHIN = 10.0


# --- MQTT clients ------------------------------------------------------------------------------


@dataclass
class Connection:
    """A connected MQTT client that keeps what it receives."""

    client: mqtt.Client
    received: queue.Queue[tuple[str, bytes]]
    disconnected: threading.Event

    def subscribe(self, topic: str) -> bool:
        """Subscribe at QoS 1; whether the broker granted it."""
        granted: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, reasons, p: granted.put(
            not any(reason.is_failure for reason in reasons)
        )
        self.client.subscribe(topic, qos=1)
        return granted.get(timeout=5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)

    def wait_for(self, payload: bytes, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """Everything received up to and including ``payload`` (the marker)."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{payload!r} never arrived; got {seen!r}")
            try:
                message = self.received.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(message)
            if message[1] == payload:
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(broker: mosquitto.Broker, username: str, password: str, client_id: str | None = None) -> Any:
    """A client logged in to ``broker``: a :class:`Connection`, or the refusal's reason as a string."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username)
    client.username_pw_set(username, password)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    answered: queue.Queue[Any] = queue.Queue()
    disconnected = threading.Event()
    client.on_connect = lambda c, u, flags, reason, p: answered.put(reason)
    client.on_message = lambda c, u, message: received.put((message.topic, message.payload))
    client.on_disconnect = lambda c, u, flags, reason, p: disconnected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        reason = answered.get(timeout=5)
    except queue.Empty:
        reason = "no answer"
    if isinstance(reason, str) or reason.is_failure:
        client.loop_stop()
        client.disconnect()
        return str(reason)
    return Connection(client, received, disconnected)


def logs_in(broker: mosquitto.Broker, login: dict[str, Any]) -> bool:
    connection = connect(broker, login["username"], login["password"], login["client_id"])
    if isinstance(connection, str):
        return False
    connection.close()
    return True


@pytest.fixture
def server_client(mqtt_settings: mosquitto.Broker) -> Iterator[Connection]:
    """The server's own login, subscribed to every device topic: what gets through to the server."""
    connection = connect(mqtt_settings, mqtt_settings.admin_user, mqtt_settings.admin_password, "test-server")
    assert isinstance(connection, Connection), connection
    assert connection.subscribe("dos/#")
    yield connection
    connection.close()


def credentials(actor: DeviceActor) -> dict[str, Any]:
    response = actor.api.get(CREDENTIALS, {"device_id": actor.device.device_id})
    assert response.status_code == 200, response.content
    return dict(response.json()["content"])


def login_of(broker: mosquitto.Broker, actor: DeviceActor) -> Connection:
    login = credentials(actor)
    connection = connect(broker, login["username"], login["password"], login["client_id"])
    assert isinstance(connection, Connection), connection
    return connection


def dynsec_run(*commands: dict[str, Any]) -> list[dynsec.Answer]:
    from django.conf import settings

    with dynsec.connect(str(settings.MQTT_URL)) as control:
        return control.run(list(commands))


# --- GET /v2/mqtt-credentials/ -------------------------------------------------------------------


def test_credentials_name_the_broker_the_login_and_the_devices_topics(
    mqtt_settings: mosquitto.Broker, device: DeviceActor
) -> None:
    login = credentials(device)
    assert set(login) == {"url", "client_id", "username", "password", "topics"}
    assert login["url"] == f"mqtt://{mqtt_settings.host}:{mqtt_settings.port}"  # no admin login in it
    assert login["username"] == login["client_id"] == "acme/dev-1"
    mine = device_topics.allowed("acme", "dev-1")
    assert login["topics"] == {
        "prefix": "dos/v1/acme/dev-1",
        "subscribe": list(mine.subscribe),
        "publish": list(mine.publish),
    }
    assert device.token not in login["password"] and len(login["password"]) >= 40
    assert BrokerLogin.objects.filter(device_id=device.device.pk).exists()
    assert logs_in(mqtt_settings, login)


def test_asking_again_gives_the_same_password_and_a_rotated_token_a_new_one(
    mqtt_settings: mosquitto.Broker, org: Org, device: DeviceActor
) -> None:
    first = credentials(device)
    assert credentials(device) == first
    rotated = org.admin.post(f"/v0/devices/{device.device.device_id}/rotate-token/")
    device.api = Api(rotated.json()["content"]["token"])
    second = credentials(device)
    assert second["password"] != first["password"]
    assert logs_in(mqtt_settings, second)
    assert not logs_in(mqtt_settings, first)  # the new password replaced it on the broker at once


def test_a_login_seen_in_step_is_answered_without_the_broker_but_a_new_password_is_not(
    own_broker: tuple[mosquitto.Broker, list[subprocess.Popen[bytes]]], org: Org, device: DeviceActor
) -> None:
    # given a device whose login the broker was seen to hold
    broker, processes = own_broker
    first = credentials(device)
    assert logs_in(broker, first)

    # when the broker is away, asking again answers from what the server knows
    mosquitto.stop(processes.pop())
    assert credentials(device) == first

    # but a rotated token's new password must be made on the broker first: 503 until it is back
    rotated = org.admin.post(f"/v0/devices/{device.device.device_id}/rotate-token/")
    device.api = Api(rotated.json()["content"]["token"])
    response = device.api.get(CREDENTIALS, {"device_id": device.device.device_id})
    assert response.status_code == 503, response.content
    processes.append(mosquitto.start(broker))
    second = credentials(device)
    assert second["password"] != first["password"]
    assert logs_in(broker, second)


def test_a_sync_of_a_login_forgets_what_was_known_of_it(
    mqtt_settings: mosquitto.Broker, device: DeviceActor
) -> None:
    credentials(device)
    fresh = Device.objects.select_related("tenant").get(pk=device.device.pk)
    assert broker_logins.known(fresh, fresh.tenant.slug) is not None

    broker_logins.sync([broker_logins.username(fresh.tenant.slug, fresh.device_id)])

    assert broker_logins.known(fresh, fresh.tenant.slug) is None  # the next request asks the broker
    assert credentials(device)["username"] == f"{fresh.tenant.slug}/{fresh.device_id}"
    assert broker_logins.known(fresh, fresh.tenant.slug) is not None


def test_the_device_url_setting_is_what_devices_are_told(
    mqtt_settings: mosquitto.Broker, settings: Any, device: DeviceActor
) -> None:
    settings.MQTT_DEVICE_URL = "mqtts://user:secret@mqtt.example.com:8883"
    assert credentials(device)["url"] == "mqtts://mqtt.example.com:8883"


def test_another_devices_id_is_refused_as_not_visible(
    mqtt_settings: mosquitto.Broker, org: Org, other_org: Org, device: DeviceActor
) -> None:
    add_device(org.tenant, "dev-2")
    stranger = add_device(other_org.tenant, "dev-9")
    for device_id in ("dev-2", "dev-9", "nobody"):
        response = device.api.get(CREDENTIALS, {"device_id": device_id})
        assert response.status_code == 400, device_id
        body = response.json()
        assert body["error_code"] == "not_found_device" and "device_id" in body["errors"]
    response = stranger.api.get(CREDENTIALS, {"device_id": "dev-1"})  # the other tenant's token
    assert response.status_code == 400
    assert not BrokerLogin.objects.exists()


def test_missing_or_malformed_device_id_is_400(mqtt_settings: mosquitto.Broker, device: DeviceActor) -> None:
    for params in ({}, {"device_id": ""}, {"device_id": "a b"}):
        response = device.api.get(CREDENTIALS, params)
        assert response.status_code == 400
        assert "device_id" in response.json()["errors"]


def test_without_mqtt_the_answer_says_push_is_not_enabled(settings: Any, device: DeviceActor) -> None:
    settings.MQTT_URL = None
    response = device.api.get(CREDENTIALS, {"device_id": "dev-1"})
    assert response.status_code == 404
    body = response.json()
    assert body["error_code"] == "push_not_enabled"
    assert "MQTT_URL" in body["message"] and "/v2/command-inbox/" in body["message"]


def test_a_bad_token_is_401_and_an_api_key_403(mqtt_settings: mosquitto.Broker, org: Org) -> None:
    assert Api("ddt_0000000000000000_nope").get(CREDENTIALS, {"device_id": "dev-1"}).status_code == 401
    assert Api(None).get(CREDENTIALS, {"device_id": "dev-1"}).status_code == 401
    assert org.admin.get(CREDENTIALS, {"device_id": "dev-1"}).status_code == 403


def test_an_inactive_device_gets_no_login(mqtt_settings: mosquitto.Broker, org: Org) -> None:
    sleeper = add_device(org.tenant, "dev-zz", state="inactive")
    response = sleeper.api.get(CREDENTIALS, {"device_id": "dev-zz"})
    assert response.status_code == 403
    assert response.json()["error_code"] == "device_inactive"


def test_a_broker_down_is_503_with_retry_after(settings: Any, device: DeviceActor) -> None:
    settings.MQTT_URL = f"mqtt://dos-server:pw@127.0.0.1:{mosquitto.free_port()}"
    response = device.api.get(CREDENTIALS, {"device_id": "dev-1"})
    assert response.status_code == 503
    assert response.json()["error_code"] == "broker_unavailable"
    assert response["Retry-After"]


def test_the_endpoint_is_in_the_openapi_document(org: Org) -> None:
    document = org.viewer.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = document["paths"][CREDENTIALS]["get"]
    assert {"200", "400", "404", "503"} <= set(operation["responses"])
    assert [parameter["name"] for parameter in operation["parameters"]] == ["device_id"]


# --- what the broker lets a device do ------------------------------------------------------------


def test_a_device_uses_its_own_topics(
    mqtt_settings: mosquitto.Broker, server_client: Connection, device: DeviceActor
) -> None:
    me = login_of(mqtt_settings, device)
    try:
        mine = device_topics.allowed("acme", "dev-1")
        assert all(me.subscribe(topic) for topic in mine.subscribe)
        for topic in (
            device_topics.notify("acme", "dev-1"),
            device_topics.inbox_get_accepted("acme", "dev-1"),
            device_topics.update_accepted("acme", "dev-1", 7),
            device_topics.update_rejected("acme", "dev-1", 7),
        ):
            server_client.publish(topic, topic.encode())
            assert me.wait_for(topic.encode())[-1] == (topic, topic.encode())
        for topic in (device_topics.inbox_get("acme", "dev-1"), device_topics.update("acme", "dev-1", 7)):
            me.publish(topic, b"from-device " + topic.encode())
            assert (topic, b"from-device " + topic.encode()) in server_client.wait_for(
                b"from-device " + topic.encode()
            )
    finally:
        me.close()


def test_a_device_reaches_no_other_devices_topics(
    mqtt_settings: mosquitto.Broker, server_client: Connection, org: Org, other_org: Org, device: DeviceActor
) -> None:
    neighbour = add_device(org.tenant, "dev-2")
    stranger = add_device(other_org.tenant, "dev-1")  # the same id in another tenant
    me = login_of(mqtt_settings, device)
    them = login_of(mqtt_settings, neighbour)
    try:
        # Subscribing to another's replies, or to everything, is refused.
        for topic in (
            "dos/v1/acme/dev-2/notify",
            "dos/v1/globex/dev-1/notify",
            "dos/v1/#",
            "#",
            "dos/v1/acme/+/notify",
        ):
            assert not me.subscribe(topic), topic
        assert me.subscribe(device_topics.notify("acme", "dev-1"))
        assert them.subscribe(device_topics.notify("acme", "dev-2"))
        server_client.publish(device_topics.notify("acme", "dev-2"), b"for dev-2")
        server_client.publish(device_topics.notify("globex", "dev-1"), b"for globex")
        server_client.publish(device_topics.notify("acme", "dev-1"), b"marker 1")
        assert [payload for _, payload in me.wait_for(b"marker 1")] == [b"marker 1"]
        assert them.wait_for(b"for dev-2")  # it was sent, to its owner
        server_client.wait_for(b"marker 1")  # the server's own messages, come back to it

        # Publishing as another device, or on the server's reply topics, never reaches anyone.
        forbidden = [
            device_topics.inbox_get("acme", "dev-2"),
            device_topics.update("acme", "dev-2", 1),
            device_topics.inbox_get("globex", "dev-1"),
            device_topics.notify("acme", "dev-2"),  # faking the server's notify to a neighbour
            device_topics.notify("acme", "dev-1"),  # or to itself
            device_topics.inbox_get_accepted("acme", "dev-1"),
        ]
        for topic in forbidden:
            me.publish(topic, b"forged")
        me.publish(device_topics.inbox_get("acme", "dev-1"), b"marker 2")
        assert [payload for _, payload in server_client.wait_for(b"marker 2")] == [b"marker 2"]
        server_client.publish(device_topics.notify("acme", "dev-2"), b"marker 3")
        assert [payload for _, payload in them.wait_for(b"marker 3")] == [b"marker 3"]
        assert me.received.empty()
    finally:
        me.close()
        them.close()
    del stranger


def test_a_device_cannot_log_in_as_another_or_take_its_client_id(
    mqtt_settings: mosquitto.Broker, org: Org, device: DeviceActor
) -> None:
    neighbour = add_device(org.tenant, "dev-2")
    mine, theirs = credentials(device), credentials(neighbour)
    assert isinstance(connect(mqtt_settings, mine["username"], theirs["password"]), str)
    assert isinstance(connect(mqtt_settings, theirs["username"], mine["password"]), str)
    assert isinstance(connect(mqtt_settings, mine["username"], mine["password"], theirs["client_id"]), str)
    assert isinstance(connect(mqtt_settings, mine["username"], mine["password"], "anything"), str)


# --- the sync: a login ends when its device changes ----------------------------------------------


@pytest.fixture
def syncing_worker(
    mqtt_settings: mosquitto.Broker, celery_processes: CeleryProcesses, monkeypatch: pytest.MonkeyPatch
) -> CeleryProcesses:
    """A real worker with the broker's MQTT_URL, as production runs the sync."""
    monkeypatch.setenv("MQTT_URL", mqtt_settings.url)
    celery_processes.worker()
    # Up before the change, as in production: the bound is the sync's, not the worker's start.
    wait_until(lambda: " ready." in celery_processes.log("worker"), timeout=60, what="the worker")
    return celery_processes


def _ends_login_and_session(
    broker: mosquitto.Broker, login: dict[str, Any], change: Callable[[], Any]
) -> None:
    """After ``change`` (an API call), the live session of ``login`` is disconnected and the login
    refused, within the contract's bound counted from the change."""
    session = connect(broker, login["username"], login["password"], login["client_id"])
    assert isinstance(session, Connection), session
    try:
        started = time.monotonic()
        change()
        assert session.disconnected.wait(LOGIN_ENDS_WITHIN)  # the live session is kicked
        session.client.loop_stop()  # and does not come back with the dead login
        left = LOGIN_ENDS_WITHIN - (time.monotonic() - started)
        wait_until(lambda: not logs_in(broker, login), timeout=left, interval=0.2, what="the login to end")
    finally:
        session.close()


def test_deleting_a_device_ends_its_login_and_its_session(
    mqtt_settings: mosquitto.Broker, syncing_worker: CeleryProcesses, org: Org
) -> None:
    login = credentials(add_device(org.tenant, "dev-del"))
    _ends_login_and_session(mqtt_settings, login, lambda: org.admin.delete("/v0/devices/dev-del/"))
    assert dynsec_run({"command": "getClient", "username": "acme/dev-del"})[0].error == "Client not found"


def test_deactivating_a_device_ends_its_login_and_reactivating_restores_it(
    mqtt_settings: mosquitto.Broker, syncing_worker: CeleryProcesses, org: Org
) -> None:
    login = credentials(add_device(org.tenant, "dev-off"))
    _ends_login_and_session(
        mqtt_settings, login, lambda: org.admin.patch("/v0/devices/dev-off/", {"state": "inactive"})
    )
    assert org.admin.patch("/v0/devices/dev-off/", {"state": "active"}).status_code == 200
    wait_until(lambda: logs_in(mqtt_settings, login), timeout=LOGIN_ENDS_WITHIN, what="the login back")


def test_rotating_a_token_ends_the_old_password_and_revoking_it_the_login(
    mqtt_settings: mosquitto.Broker, syncing_worker: CeleryProcesses, org: Org
) -> None:
    actor = add_device(org.tenant, "dev-rot")
    login = credentials(actor)
    rotated: list[Any] = []
    _ends_login_and_session(
        mqtt_settings, login, lambda: rotated.append(org.admin.post("/v0/devices/dev-rot/rotate-token/"))
    )
    actor.api = Api(rotated[0].json()["content"]["token"])
    renewed = credentials(actor)
    assert renewed["password"] != login["password"]
    _ends_login_and_session(
        mqtt_settings, renewed, lambda: org.admin.post("/v0/devices/dev-rot/revoke-token/")
    )


def test_renaming_a_device_moves_its_login(
    mqtt_settings: mosquitto.Broker, syncing_worker: CeleryProcesses, org: Org
) -> None:
    actor = add_device(org.tenant, "dev-old")
    login = credentials(actor)
    _ends_login_and_session(
        mqtt_settings, login, lambda: org.admin.patch("/v0/devices/dev-old/", {"id": "dev-new"})
    )


def test_the_consoles_deletes_sync_the_logins_too(
    mqtt_settings: mosquitto.Broker,
    org: Org,
    console: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A bulk delete of devices and the delete of a tenant, in the console: the logins of their
    devices are queued for the sync after commit (here run in the test), and end."""
    queued: list[list[str]] = []
    monkeypatch.setattr(broker_logins, "_sender", queued.append)
    first, second = add_device(org.tenant, "dev-a"), add_device(org.tenant, "dev-b")
    logins = [credentials(first), credentials(second)]
    add_device(org.tenant, "dev-c")  # never asked: nothing to sync for it

    with django_capture_on_commit_callbacks(execute=True):
        console.post(
            "/admin/inventory/device/",
            {"action": "delete_selected", "_selected_action": [first.device.pk], "post": "yes"},
        )
    assert queued == [["acme/dev-a"]]
    with django_capture_on_commit_callbacks(execute=True):
        console.post(f"/admin/inventory/tenant/{org.tenant.pk}/delete/", {"post": "yes"})
    assert queued[1] == ["acme/dev-b"]
    for names in queued:
        broker_logins.sync(names)
    assert not any(logs_in(mqtt_settings, login) for login in logins)


# --- mqtt_sync_logins ----------------------------------------------------------------------------


def reconcile_output(*args: str) -> str:
    out = StringIO()
    call_command("mqtt_sync_logins", *args, stdout=out)
    return out.getvalue()


def test_sync_logins_recreates_a_removed_login_removes_a_stray_and_is_idempotent(
    mqtt_settings: mosquitto.Broker, org: Org, device: DeviceActor
) -> None:
    reconcile_output()  # other tests' logins, of devices rolled back with them, go first
    login = credentials(device)
    dynsec_run({"command": "deleteClient", "username": "acme/dev-1"})
    stray = f"acme/ghost-{uuid.uuid4().hex[:6]}"
    dynsec_run({"command": "createClient", "username": stray, "password": "x"})
    dynsec_run({"command": "createClient", "username": "someone-by-hand", "password": "x"})
    assert not logs_in(mqtt_settings, login)

    assert "would change: 1 created, 1 deleted" in reconcile_output("--dry-run")
    output = reconcile_output()
    assert "created: acme/dev-1" in output and f"deleted: {stray}" in output
    assert output.strip().endswith("changed: 1 created, 1 deleted")
    assert logs_in(mqtt_settings, login)
    assert reconcile_output().strip() == "broker logins changed: nothing to change"
    # A login that is not a device's (no "/") is never touched.
    assert dynsec_run({"command": "getClient", "username": "someone-by-hand"})[0].error is None
    dynsec_run({"command": "deleteClient", "username": "someone-by-hand"})


def test_sync_logins_fixes_a_stale_password_and_a_wrong_state(
    mqtt_settings: mosquitto.Broker, org: Org, device: DeviceActor
) -> None:
    reconcile_output()
    old = credentials(device)
    sleeper = add_device(org.tenant, "dev-zz")
    credentials(sleeper)
    # Changes whose sync was lost (written past the services, so none was queued): a rotated
    # token, a deactivated device.
    Device.objects.filter(pk=device.device.pk).update(token_hash="0" * 64)
    Device.objects.filter(pk=sleeper.device.pk).update(state="inactive")
    device.device.refresh_from_db()
    output = reconcile_output()
    assert "updated: acme/dev-1" in output and "disabled: acme/dev-zz" in output
    assert not logs_in(mqtt_settings, old)
    assert logs_in(mqtt_settings, credentials_as_stored(device))
    sleeper.device.refresh_from_db()
    assert not logs_in(mqtt_settings, credentials_as_stored(sleeper))

    # A password changed by hand on the broker keeps its stamp: --passwords sets them all again.
    dynsec_run({"command": "setClientPassword", "username": "acme/dev-1", "password": "by-hand"})
    assert "nothing to change" in reconcile_output()
    assert "updated: acme/dev-1" in reconcile_output("--passwords")
    assert logs_in(mqtt_settings, credentials_as_stored(device))


def credentials_as_stored(actor: DeviceActor) -> dict[str, Any]:
    name = f"{actor.device.tenant.slug}/{actor.device.device_id}"
    return {
        "username": name,
        "client_id": name,
        "password": broker_logins.password(actor.device.pk, actor.device.token_hash),
    }


def test_sync_logins_without_mqtt_says_so(settings: Any, db: None) -> None:
    settings.MQTT_URL = None
    with pytest.raises(CommandError, match="MQTT_URL is unset"):
        call_command("mqtt_sync_logins")


# --- a broker outage -----------------------------------------------------------------------------


@pytest.fixture
def own_broker(
    tmp_path: Path, settings: Any
) -> Iterator[tuple[mosquitto.Broker, list[subprocess.Popen[bytes]]]]:
    """A broker of this test's own, which it may stop and start again on the same port."""
    broker = mosquitto.prepare(tmp_path / "mosquitto", mosquitto.free_port())
    processes = [mosquitto.start(broker)]
    settings.MQTT_URL = broker.url
    yield broker, processes
    for process in processes:
        mosquitto.stop(process)


def test_a_sync_during_a_broker_outage_retries_until_it_converges(
    own_broker: tuple[mosquitto.Broker, list[subprocess.Popen[bytes]]],
    celery_processes: CeleryProcesses,
    monkeypatch: pytest.MonkeyPatch,
    transactional_db: None,
) -> None:
    broker, processes = own_broker
    monkeypatch.setenv("MQTT_URL", broker.url)
    celery_processes.worker()
    org = make_org("acme")
    actor = add_device(org.tenant, "dev-out")
    login = credentials(actor)
    mosquitto.stop(processes[0])
    assert org.admin.delete("/v0/devices/dev-out/").status_code == 204
    wait_until(
        lambda: "Retry in" in celery_processes.log("worker"), timeout=20, what="the sync to fail and retry"
    )
    processes.append(mosquitto.start(broker))
    # Retries wait 1, 2, 4, 8 s...: the next one after the broker is back removes the login.
    wait_until(lambda: not logs_in(broker, login), timeout=30, what="the login to end after the outage")
    document = json.loads(broker.dynsec_file.read_text())
    assert "acme/dev-out" not in {client["username"] for client in document["clients"]}


# --- many devices at once: the plugin's file written while the broker is stopped ---------------


def offline_output(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("mqtt_sync_logins", "--offline", str(path), *args, stdout=out)
    return out.getvalue()


def test_offline_logins_let_each_device_in_to_its_own_topics_only_and_are_idempotent(
    own_broker: tuple[mosquitto.Broker, list[subprocess.Popen[bytes]]],
    org: Org,
    other_org: Org,
    device: DeviceActor,
) -> None:
    broker, processes = own_broker
    neighbour = add_device(org.tenant, "dev-2")
    stranger = add_device(other_org.tenant, "dev-1")  # the same id in another tenant
    sleeper = add_device(org.tenant, "dev-zz")
    Device.objects.filter(pk=sleeper.device.pk).update(state="inactive")
    with pytest.raises(CommandError, match="runs on"):
        offline_output(broker.dynsec_file)
    mosquitto.stop(processes[0])
    before = json.loads(broker.dynsec_file.read_text())

    assert "would change" in offline_output(broker.dynsec_file, "--dry-run")
    assert json.loads(broker.dynsec_file.read_text()) == before
    output = offline_output(broker.dynsec_file)
    assert output.strip().endswith("3 created"), output
    assert "created: acme/dev-zz" not in output  # an inactive device gets no login
    written = broker.dynsec_file.read_bytes()
    assert offline_output(broker.dynsec_file).strip().endswith("nothing to change")
    assert broker.dynsec_file.read_bytes() == written
    document = json.loads(written)
    # The server's own login and role are as they were.
    for kind, key in (("clients", "username"), ("roles", "rolename")):
        admin = {entry[key]: entry for entry in before[kind]}
        assert {entry[key]: entry for entry in document[kind] if entry[key] in admin} == admin

    processes.append(mosquitto.start(broker))
    server = connect(broker, broker.admin_user, broker.admin_password, "test-server")
    me = connect(broker, **credentials_as_stored(device))
    assert isinstance(server, Connection) and isinstance(me, Connection), (server, me)
    try:
        assert server.subscribe("dos/#")
        assert me.subscribe(device_topics.notify("acme", "dev-1"))
        for topic in ("dos/v1/acme/dev-2/notify", "dos/v1/globex/dev-1/notify", "#"):
            assert not me.subscribe(topic), topic
        server.publish(device_topics.notify("acme", "dev-2"), b"for dev-2")
        server.publish(device_topics.notify("acme", "dev-1"), b"marker 1")
        assert [payload for _, payload in me.wait_for(b"marker 1")] == [b"marker 1"]
        me.publish(device_topics.inbox_get("globex", "dev-1"), b"forged")
        me.publish(device_topics.inbox_get("acme", "dev-1"), b"marker 2")
        assert [payload for _, payload in server.wait_for(b"marker 2")][-2:] == [b"marker 1", b"marker 2"]
    finally:
        me.close()
        server.close()
    assert logs_in(broker, credentials_as_stored(neighbour))
    assert logs_in(broker, credentials_as_stored(stranger))
    assert not logs_in(broker, credentials_as_stored(sleeper))
    # Made offline or online, a login is the same: the credentials endpoint and the reconcile on
    # the running broker find nothing to change.
    assert credentials(device)["password"] == credentials_as_stored(device)["password"]
    assert reconcile_output().strip() == "broker logins changed: nothing to change"


# --- make run's broker ---------------------------------------------------------------------------


def test_make_runs_broker_starts_under_var_and_says_push_is_on(tmp_path: Path, settings: Any) -> None:
    settings.VAR_DIR = tmp_path
    env: dict[str, str] = {}
    local, line = runstack.start_push(env)
    assert local is not None
    try:
        assert line == f"push: on, devices connect to mqtt://127.0.0.1:{local.broker.port}"
        assert env["MQTT_URL"] == local.broker.url
        url_file = mosquitto.url_file(tmp_path)
        assert url_file.read_text().strip() == local.broker.url
        assert url_file.stat().st_mode & 0o777 == 0o600
        assert local.broker.folder == tmp_path / "mosquitto"
        with dynsec.connect(local.broker.url) as control:  # the server's login manages dynsec
            assert control.run([{"command": "listClients"}])[0].error is None
    finally:
        mosquitto.stop_local(local)
    assert not mosquitto.url_file(tmp_path).exists()


def test_a_shell_beside_make_run_reads_its_brokers_url(tmp_path: Path) -> None:
    """Without MQTT_URL and DATABASE_URL (a second terminal beside ``make run``), the settings
    take the URL ``make run``'s broker wrote; with DATABASE_URL set (a deployment, the tests),
    never."""
    url = "mqtt://dos-server:pw@127.0.0.1:18830"
    mosquitto.url_file(tmp_path).write_text(url + "\n")
    env = {key: value for key, value in os.environ.items() if key not in {"MQTT_URL", "DATABASE_URL"}}
    env |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x" * 50}

    def settings_url() -> str:
        read = [sys.executable, "-c", "from django.conf import settings; print(settings.MQTT_URL)"]
        done = subprocess.run(read, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert settings_url() == url
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/none"
    assert settings_url() == "None"


def test_a_broker_left_behind_by_a_killed_run_is_stopped_by_the_next(tmp_path: Path) -> None:
    first = mosquitto.start_local(tmp_path)  # its runstack killed: nobody stops it
    second = mosquitto.start_local(tmp_path)
    try:
        assert first.process.wait(timeout=10) is not None
        assert mosquitto.configured_url(tmp_path) == second.broker.url
    finally:
        mosquitto.stop_local(second)


def test_without_mosquitto_make_run_says_push_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mosquitto, "available", lambda: False)
    env: dict[str, str] = {}
    assert runstack.start_push(env) == (
        None,
        "push: off (no mosquitto on this machine): devices poll over HTTP",
    )
    assert "MQTT_URL" not in env


def test_an_external_broker_is_used_as_given(settings: Any) -> None:
    settings.MQTT_DEVICE_URL = None
    env = {"MQTT_URL": "mqtt://dos-server:pw@broker.example.com:1883"}
    assert runstack.start_push(env) == (None, "push: on, devices connect to mqtt://broker.example.com:1883")


def test_changes_of_the_logins_wait_for_each_other(
    mqtt_settings: mosquitto.Broker, settings: Any, org: Org
) -> None:
    """One change of the broker's logins at a time (a token rotated twice must not end on the
    older password): while another session holds the lock, a sync waits, then gives up as a
    broker outage (its task retries) having changed nothing; once free, it applies."""
    import psycopg
    from django.db import connection

    from config.locks import LockSpace, lock_key

    actor = add_device(org.tenant, "dev-lock")
    login = credentials(actor)
    Device.objects.filter(pk=actor.device.pk).update(state="inactive")  # no sync queued: the test runs it
    settings.ADVISORY_LOCK_TIMEOUT_MS = 300
    wanted = {"dbname", "host", "port", "user"}
    params = {k: v for k, v in connection.get_connection_params().items() if k in wanted}
    with psycopg.connect(**params) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", lock_key(LockSpace.BROKER_LOGINS, "device-logins"))
        with pytest.raises(broker_logins.BrokerUnavailable):
            broker_logins.sync([login["username"]])
        assert logs_in(mqtt_settings, login)  # nothing changed while it waited
    assert broker_logins.sync([login["username"]]).summary()
    assert not logs_in(mqtt_settings, login)
