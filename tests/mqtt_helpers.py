"""A bridge as a real process, and a device speaking MQTT, for the bridge's tests and bench.

The device publishes with the server's own broker login (its admin role may publish on
``dos/#``): device logins and their ACLs are tested where they are made.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from commands.bridge import retire
from config.mosquitto import Broker
from inventory import device_topics
from tests.conftest import ROOT, _process_env, kill_group


class BridgeProcess:
    """``manage.py mqtt_bridge`` in a session of its own, logging to ``log``."""

    def __init__(self, broker: Broker, log: Path, client_id: str, *args: str, **env: str) -> None:
        self.log = log
        self.client_id = client_id
        self.broker = broker
        environment = _process_env() | {"MQTT_URL": broker.url, "LOG_LEVEL": "INFO"} | env
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "mqtt_bridge", "--client-id", client_id, *args],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_connected(self, times: int = 1, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"the bridge exited with {self.proc.returncode}:\n{self.text()}")
            if self.text().count("connected to") >= times:
                return
            time.sleep(0.05)
        raise AssertionError(f"the bridge did not connect:\n{self.text()}")

    def kill(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        kill_group(self.proc, sig, timeout=timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None


def forget_session(broker: Broker, client_id: str) -> None:
    """End a bridge's persistent session on the broker (``commands.bridge.retire``). A session
    left behind stays in the share group and keeps taking its turn of the next test's messages
    (docs/mqtt-bridge.md)."""
    assert retire(broker.url, client_id), f"the broker refused {client_id}"


class MqttDevice:
    """A device's side of the channel: subscribed to everything under its prefix."""

    def __init__(self, broker: Broker, slug: str, device_id: str) -> None:
        self.slug = slug
        self.device_id = device_id
        self.messages: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.seen: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(broker.admin_user, broker.admin_password)
        client.max_inflight_messages_set(1000)
        prefix = device_topics.prefix(slug, device_id)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            c.subscribe(
                [
                    (f"{prefix}/notify", 1),
                    (f"{prefix}/inbox/get/accepted", 1),
                    (f"{prefix}/commands/+/update/accepted", 1),
                    (f"{prefix}/commands/+/update/rejected", 1),
                ]
            )

        def on_subscribe(*_: Any) -> None:
            subscribed.set()

        def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            entry = (message.topic.removeprefix(prefix + "/"), json.loads(message.payload))
            with self._lock:
                self.seen.append(entry)
            self.messages.put(entry)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect(broker.host, broker.port)
        client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("the test device could not subscribe")
        self.client = client

    def publish(self, suffix: str, payload: Any, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.client.publish(
            f"{device_topics.prefix(self.slug, self.device_id)}/{suffix}", body, qos=1
        ).wait_for_publish(10)

    def update(self, command_id: int | str, state: str, token: str | None = None, **fields: Any) -> None:
        self.publish(f"commands/{command_id}/update", {"state": state, "client_token": token, **fields})

    def inbox_get(self, token: str = "t") -> None:
        self.publish("inbox/get", {"client_token": token})

    def expect(self, suffix: str, timeout: float = 20, token: str | None = None) -> Any:
        """The next message on ``suffix`` (with ``client_token`` ``token`` if given); others
        that arrive meanwhile are kept in ``seen``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                topic, payload = self.messages.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            if topic == suffix and (token is None or payload.get("client_token") == token):
                return payload
        raise AssertionError(f"no message on {suffix} (token {token!r}); seen: {self.seen[-10:]}")

    def count(self, suffix: str) -> int:
        with self._lock:
            return sum(1 for topic, _ in self.seen if topic == suffix)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def mqtt_device(broker: Broker, slug: str, device_id: str) -> Iterator[MqttDevice]:
    device = MqttDevice(broker, slug, device_id)
    try:
        yield device
    finally:
        device.close()


def publish_all(broker: Broker, messages: list[tuple[str, Any]], timeout: float = 60) -> None:
    """Publish ``(topic, payload)`` pairs at QoS 1, in order, as fast as the broker takes them."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"load-{uuid.uuid4().hex[:10]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(broker.admin_user, broker.admin_password)
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        sent = [client.publish(topic, json.dumps(payload), qos=1) for topic, payload in messages]
        end = time.monotonic() + timeout
        for info in sent:
            info.wait_for_publish(max(0.1, end - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()


def report_messages(slug: str, commands: list[tuple[str, int]], states: list[str]) -> list[tuple[str, Any]]:
    """For each (device id, command id), one update per state, in order."""
    return [
        (
            device_topics.update(slug, device_id, command_id),
            {"state": state, "client_token": f"{command_id}:{n}"},
        )
        for device_id, command_id in commands
        for n, state in enumerate(states)
    ]
