"""The MQTT bridge (``manage.py mqtt_bridge``, contract section 14): the server's client on the
broker. It answers devices' ``inbox/get`` and ``commands/{id}/update`` messages, in batches
(``commands.batches``), and publishes the push outbox's ``notify`` messages
(``commands.notifier``). See docs/mqtt-bridge.md.

Delivery guarantees, as Mosquitto 2.0.11 behaves (checked by hand and by
``tests/test_mqtt_bridge.py``):

- The bridge subscribes through ``$share/dos-bridge/...`` at QoS 1 with ``manual_ack``: several
  bridges share the device topics, each message goes to one of them.
- A message is acknowledged (PUBACK) only after the transaction of its batch committed, and
  after its reply was handed to the client. A bridge killed before that leaves the message
  unacknowledged in its **session**: the bridge keeps a fixed client id and a persistent session
  (``clean_start=False``, a session expiry of :data:`SESSION_EXPIRY_SECONDS`), and Mosquitto sends
  the unacknowledged messages again (DUP) when that client id reconnects. It does *not* hand
  them to another member of the share group, and it keeps queueing the dead member's share of
  new messages for its session: a bridge must come back under its client id (a process
  manager restarts it), or its share waits until the session expires.
- A redelivered update finds its report already made: a repeat, which the ladder answers as a
  no-op (the same answer again), so nothing is counted twice.
- Messages received on a connection that has since dropped are not settled or acknowledged
  here (their packet ids belong to that connection): the broker sends them again.

Threads: paho's network loop (receives into a queue, sends), the main thread (batches: one
database connection), and the notify publisher (its own database connection).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from django.conf import settings
from django.db import close_old_connections, connection
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from rest_framework.exceptions import ParseError

from commands import batches, inbox_cache, notifier, push
from commands.api.serializers import CommandStatusUpdateSerializer
from commands.choices import REQUESTABLE_STATES
from config import mosquitto
from config.api.exceptions import PayloadTooLarge, first_message
from config.api.limits import json_field_limit, text_field_limit
from config.api.parsers import JSONRefused, loads
from config.errors import CacheUnavailable
from config.metrics import (
    MQTT_BATCH_SIZE,
    MQTT_CONNECTED_DEVICES,
    MQTT_DROPPED,
    MQTT_MESSAGES,
    MQTT_NOTIFIES,
    MQTT_REJECTED,
    MQTT_SETTLE_DURATION,
)
from inventory import device_topics
from inventory.dynsec import Endpoint
from inventory.models import Device, DeviceState

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: The shared subscription's group: every bridge of the installation is in it.
SHARE_GROUP = "dos-bridge"
#: The broker's count of connected clients (Mosquitto's $SYS tree).
CONNECTED_TOPIC = "$SYS/broker/clients/connected"
#: How long the broker keeps a bridge's session (and its unacknowledged messages) while the
#: bridge is away: a day, for a restart after a crash or a deployment.
SESSION_EXPIRY_SECONDS = 86_400
#: How long the bridge remembers a device's key and state by its topic; a device deactivated
#: or deleted is refused within this many seconds (its broker login ends within 10 s too).
DEVICE_CACHE_SECONDS = 10.0
#: Longest wait for the broker's PUBACKs of one round of notifies.
PUBACK_TIMEOUT_SECONDS = 10.0
#: Pause of the publisher when the outbox is empty (or the broker is away).
PUBLISHER_IDLE_SECONDS = 0.2
#: Longest client token echoed back (AWS IoT Jobs allows 64 characters).
MAX_CLIENT_TOKEN = 64


def subscriptions() -> list[tuple[str, SubscribeOptions]]:
    """What a bridge subscribes to: the device-to-server topics, shared, at QoS 1 (and the
    broker's client count, for the metrics)."""
    shared = SubscribeOptions(qos=1)
    return [
        (f"$share/{SHARE_GROUP}/{device_topics.INBOX_GET_FILTER}", shared),
        (f"$share/{SHARE_GROUP}/{device_topics.UPDATE_FILTER}", shared),
        (CONNECTED_TOPIC, SubscribeOptions(qos=0)),
    ]


@dataclass(frozen=True)
class Received:
    """A device message taken off the broker, not acknowledged yet."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    connection: int  # which connection of the bridge received it


@dataclass(frozen=True)
class KnownDevice:
    tenant_slug: str
    tenant_id: int
    device_pk: int
    device_id: str


@dataclass
class Reply:
    """An answer to publish after the batch committed."""

    topic: str
    payload: dict[str, Any]


class Bridge:
    """One bridge: ``run()`` until ``stop()`` (SIGTERM), reconnecting to the broker as needed."""

    def __init__(
        self,
        url: str,
        client_id: str,
        batch_size: int,
        batch_ms: int,
        publish_notifies: bool = True,
    ) -> None:
        endpoint = Endpoint.parse(url)
        self.host = endpoint.host
        self.port = endpoint.port
        self.client_id = client_id
        self.batch_size = batch_size
        self.batch_seconds = batch_ms / 1000.0
        self.publish_notifies = publish_notifies
        self.received: queue.Queue[Received] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.connection_number = 0
        self._devices: dict[tuple[str, str], tuple[float, KnownDevice | None]] = {}
        self.presence = push.Presence()
        self.settled_total = 0
        self.batches_total = 0
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        if endpoint.username:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            client.tls_set()
        # Replies and notifies in flight at once (paho's default is 20): the same room the
        # broker gives the bridge the other way (its max_inflight_messages).
        client.max_inflight_messages_set(mosquitto.MAX_INFLIGHT_MESSAGES)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # --- the broker -------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _data: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            logger.error("mqtt bridge %s: the broker refused the connection: %s", self.client_id, reason)
            return
        self.connection_number += 1
        client.subscribe(subscriptions())
        self.connected.set()
        logger.info(
            "mqtt bridge %s: connected to %s:%s (session present: %s)",
            self.client_id,
            self.host,
            self.port,
            bool(flags.session_present),
        )

    def _on_disconnect(self, client: mqtt.Client, _data: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            logger.warning("mqtt bridge %s: disconnected (%s); reconnecting", self.client_id, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == CONNECTED_TOPIC:
            with contextlib.suppress(ValueError):
                MQTT_CONNECTED_DEVICES.set(int(message.payload))
            return
        self.received.put(
            Received(message.mid, message.qos, message.topic, message.payload, self.connection_number)
        )

    # --- the run ----------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        expiry = Properties(PacketTypes.CONNECT)
        expiry.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        self.client.connect_async(self.host, self.port, keepalive=30, clean_start=False, properties=expiry)
        self.client.loop_start()
        publisher = threading.Thread(target=self._publish_loop, name="notify-publisher", daemon=True)
        if self.publish_notifies:
            publisher.start()
        logger.info(
            "mqtt bridge %s: started (batches of up to %d or %d ms)",
            self.client_id,
            self.batch_size,
            round(self.batch_seconds * 1000),
        )
        last_report, reported = time.monotonic(), 0
        try:
            while not self.stopping.is_set():
                batch = self._collect()
                if batch:
                    self._settle_safely(batch)
                # A line a minute while messages come in; an idle bridge says nothing.
                if time.monotonic() - last_report >= 60 and self.settled_total != reported:
                    last_report, reported = time.monotonic(), self.settled_total
                    logger.info(
                        "mqtt bridge %s: %d messages settled in %d batches so far",
                        self.client_id,
                        self.settled_total,
                        self.batches_total,
                    )
        finally:
            if publisher.is_alive():
                publisher.join(timeout=PUBACK_TIMEOUT_SECONDS + 5)
            self.client.disconnect()
            self.client.loop_stop()
            connection.close()
            logger.info(
                "mqtt bridge %s: stopped after %d messages in %d batches",
                self.client_id,
                self.settled_total,
                self.batches_total,
            )

    def _collect(self) -> list[Received]:
        """The next batch: what arrives within ``batch_ms`` of its first message, at most
        ``batch_size`` of them."""
        try:
            first = self.received.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_size:
            try:
                batch.append(self.received.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self.received.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _settle_safely(self, batch: list[Received]) -> None:
        """:meth:`_settle`; a defect there is logged and its messages acknowledged (dropped and
        counted): a message that breaks the bridge must not come back forever."""
        try:
            self._settle(batch)
        except Exception:
            logger.exception("mqtt bridge %s: a batch of %d failed; dropped", self.client_id, len(batch))
            for message in batch:
                if message.connection == self.connection_number:
                    self.client.ack(message.mid, message.qos)
            MQTT_DROPPED.labels("server_error").inc(len(batch))

    def _settle(self, batch: list[Received]) -> None:
        """Settle a batch in one transaction, then reply and acknowledge each message."""
        started = time.perf_counter()
        current = [message for message in batch if message.connection == self.connection_number]
        if not current:
            return  # all from a connection that dropped: the broker sends them again
        requests: list[batches.Request] = []
        answered: list[tuple[int, batches.Request, KnownDevice, Any]] = []  # index, request, device, token
        replies: list[Reply] = []
        touched: set[int] = set()
        devices = self._until_done(lambda: self._known_devices(current), len(current))
        if devices is None:
            return  # stopping while the database is away: nothing acknowledged
        for message in current:
            handled = self._parse_safely(message, devices)
            if isinstance(handled, Reply):
                replies.append(handled)
            elif handled is not None:
                request, device, token = handled
                touched.add(device.device_pk)
                answered.append((len(requests), request, device, token))
                requests.append(request)
        generations = self._generations(
            [device for _, request, device, _ in answered if isinstance(request, batches.HandOutRequest)]
        )
        outcomes = self._until_done(lambda: batches.settle(requests), len(requests)) if requests else []
        if outcomes is None:
            return  # the database is away: nothing acknowledged, the broker sends them again
        for index, request, device, token in answered:
            replies.append(_reply(request, device, token, outcomes[index], generations.get(device.device_pk)))
        for reply in replies:
            self.client.publish(reply.topic, _encode(reply.payload), qos=1)
        for message in current:
            # A connection that dropped while the batch settled: its packet ids are gone with it,
            # and the broker sends the messages again (each then a repeat).
            if message.connection == self.connection_number:
                self.client.ack(message.mid, message.qos)
        self.presence.heard(touched)
        self.settled_total += len(current)
        self.batches_total += 1
        MQTT_BATCH_SIZE.observe(len(current))
        MQTT_SETTLE_DURATION.observe(time.perf_counter() - started)

    def _until_done(self, work: Callable[[], T], count: int) -> T | None:
        """``work`` (database work of a batch of ``count``), again after an outage or a deadlock
        with another bridge's batch, until it succeeds or the bridge stops (None: nothing was
        committed, and the batch's messages are not acknowledged)."""
        delay = 0.05
        while True:
            try:
                return work()
            except batches.OUTAGE_ERRORS as error:
                if self.stopping.is_set():
                    return None
                first_line = (
                    str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                )
                logger.warning(
                    "mqtt bridge %s: a batch of %d was not settled (%s); trying again",
                    self.client_id,
                    count,
                    first_line,
                )
                close_old_connections()
                if connection.connection is not None and not connection.is_usable():
                    connection.close()
                if self.stopping.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)

    # --- the notifies ----------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        """Publish the push outbox while the bridge runs (its own database connection)."""
        delay = PUBLISHER_IDLE_SECONDS
        try:
            while not self.stopping.is_set():
                if not self.connected.is_set():
                    self.stopping.wait(PUBLISHER_IDLE_SECONDS)
                    continue
                try:
                    taken, _sent = notifier.publish_round(self._publish_notifies)
                    delay = PUBLISHER_IDLE_SECONDS
                except Exception as error:  # the next round tries again; the rows stay
                    logger.warning("mqtt bridge %s: notifies not published: %s", self.client_id, error)
                    close_old_connections()
                    if connection.connection is not None and not connection.is_usable():
                        connection.close()
                    self.stopping.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if not taken:
                    self.stopping.wait(PUBLISHER_IDLE_SECONDS)
        finally:
            connection.close()

    def _publish_notifies(self, messages: list[notifier.Notify]) -> None:
        """Publish at QoS 1 and return once the broker acknowledged every message (or raise)."""
        sent = [self.client.publish(m.topic, _encode(m.payload), qos=1) for m in messages]
        deadline = time.monotonic() + PUBACK_TIMEOUT_SECONDS
        for info in sent:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"publish refused: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("the broker did not acknowledge the notifies in time")
        MQTT_NOTIFIES.inc(len(messages))

    # --- one message --------------------------------------------------------------------------

    def _known_devices(self, messages: list[Received]) -> dict[tuple[str, str], KnownDevice | None]:
        """The active device each topic names (one query for those not remembered)."""
        now = time.monotonic()
        wanted: set[tuple[str, str]] = set()
        for message in messages:
            incoming = device_topics.parse(message.topic)
            if incoming is not None:
                wanted.add((incoming.tenant_slug, incoming.device_id))
        found: dict[tuple[str, str], KnownDevice | None] = {}
        missing = []
        for key in wanted:
            remembered = self._devices.get(key)
            if remembered is not None and remembered[0] > now:
                found[key] = remembered[1]
            else:
                missing.append(key)
        if missing:
            rows = Device.objects.filter(
                tenant__slug__in={slug for slug, _ in missing},
                device_id__in={device_id for _, device_id in missing},
                state=DeviceState.ACTIVE,
            ).values_list("tenant__slug", "device_id", "pk", "tenant_id")
            known = {
                (slug, device_id): KnownDevice(slug, tenant, pk, device_id)
                for slug, device_id, pk, tenant in rows
            }
            if len(self._devices) > 100_000:
                self._devices.clear()
            for key in missing:
                found[key] = known.get(key)
                self._devices[key] = (now + DEVICE_CACHE_SECONDS, found[key])
        return found

    def _parse(
        self, message: Received, devices: dict[tuple[str, str], KnownDevice | None]
    ) -> Reply | tuple[batches.Request, KnownDevice, Any] | None:
        """What a message asks: a request to settle, a refusal to send at once, or nothing
        (dropped and counted: no device to answer)."""
        incoming = device_topics.parse(message.topic)
        if incoming is None:
            MQTT_DROPPED.labels("bad_topic").inc()
            return None
        device = devices.get((incoming.tenant_slug, incoming.device_id))
        if device is None:
            MQTT_DROPPED.labels("unknown_device").inc()
            return None
        slug = incoming.tenant_slug
        if incoming.kind == "inbox/get":
            body = _json_object(message.payload)
            token = body.get("client_token") if isinstance(body, dict) else None
            if not isinstance(body, dict) or not _valid_token(token):
                MQTT_DROPPED.labels("malformed").inc()  # no inbox/get/rejected topic to answer on
                return None
            MQTT_MESSAGES.labels("inbox_get").inc()
            request = batches.HandOutRequest(
                device.tenant_id, device.device_pk, device.device_id, _actor(device), settings.INBOX_BATCH
            )
            return request, device, token
        command = incoming.command_id or ""
        rejected = device_topics.update_rejected(slug, device.device_id, command)
        MQTT_MESSAGES.labels("update").inc()
        if len(message.payload) > max_update_bytes():
            too_large = str(PayloadTooLarge.default_detail)
            return _rejected(rejected, None, 413, "payload_too_large", {}, too_large)
        try:
            data = loads(message.payload) if message.payload else {}
        except JSONRefused as refused:
            if refused.where is None:
                return _rejected(
                    rejected, None, 400, ParseError.default_code, {}, f"JSON parse error - {refused.reason}"
                )
            field = refused.field("body", fields_at_top=True)
            return _rejected(rejected, None, 400, ParseError.default_code, {field: [refused.reason]})
        token = data.get("client_token") if isinstance(data, dict) else None
        if not _valid_token(token):
            errors = {"client_token": [f"must be a string of at most {MAX_CLIENT_TOKEN} characters"]}
            return _rejected(rejected, None, 400, "invalid", errors)
        if not (command.isascii() and command.isdigit()) or len(command) > 18:  # int() takes "²" too
            return _rejected(rejected, token, 404, "not_found", {}, batches.NOT_FOUND)
        arguments = _plain_report(data)
        if arguments is None:  # anything else is validated, and refused, as the HTTP PUT does
            update = CommandStatusUpdateSerializer(data=data)
            if not update.is_valid():
                return _rejected(rejected, token, 400, "invalid", dict(update.errors))
            arguments = update.report_arguments()
        report = batches.ReportRequest(
            command_id=int(command),
            target=arguments["target"],
            tenant_id=device.tenant_id,
            device_pk=device.device_pk,
            actor=_actor(device),
            reason=arguments["reason"],
            details=arguments["details"],
            expected_version=arguments["expected_version"],
            attempt=arguments["attempt"],
        )
        return report, device, token

    def _parse_safely(
        self, message: Received, devices: dict[tuple[str, str], KnownDevice | None]
    ) -> Reply | tuple[batches.Request, KnownDevice, Any] | None:
        """:meth:`_parse`, and a defect there costs this message only (dropped and counted,
        acknowledged so that it cannot come back forever), never the bridge."""
        try:
            return self._parse(message, devices)
        except Exception:
            logger.exception(
                "mqtt bridge %s: a message on %s could not be read", self.client_id, message.topic
            )
            MQTT_DROPPED.labels("server_error").inc()
            return None

    def _generations(self, devices: list[KnownDevice]) -> dict[int, tuple[int, int] | None]:
        """The inbox generations of the devices asking for their inbox, by device key: read
        before the hand-out (one cache round trip for the batch), as the HTTP inbox reads them
        for its empty ETag; None for each without the cache."""
        if not devices:
            return {}
        try:
            found = inbox_cache.generations_many([(d.tenant_id, d.device_pk) for d in devices])
        except CacheUnavailable:
            return {device.device_pk: None for device in devices}
        return {device.device_pk: found[(device.tenant_id, device.device_pk)] for device in devices}


def retire(url: str, client_id: str, timeout: float = 10.0) -> bool:
    """End the broker session of the bridge ``client_id`` for good (``manage.py mqtt_bridge
    --retire``): connect under its id with a clean start and no session expiry, and leave.

    A bridge taken away for good leaves its session in the share group: the broker keeps
    handing it its turn of the devices' messages, queued until the session expires (a day),
    so those devices wait that long for their answers. Retiring it lets the group's other
    members take every message at once. Its unacknowledged messages go with the session (the
    devices send them again: the agent retries a report that got no answer). Stop the bridge
    first: a running one would be thrown off, and reconnect with a new session.
    Returns whether the broker accepted the connection (the session is then gone)."""
    endpoint = Endpoint.parse(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set()
    accepted = threading.Event()
    answered = threading.Event()

    def on_connect(_client: mqtt.Client, _data: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            accepted.set()
        answered.set()

    client.on_connect = on_connect
    client.connect(endpoint.host, endpoint.port, clean_start=True)  # no expiry: gone at disconnect
    client.loop_start()
    try:
        answered.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return accepted.is_set()


def _reply(
    request: batches.Request,
    device: KnownDevice,
    token: Any,
    outcome: batches.Outcome,
    generation: tuple[int, int] | None,
) -> Reply:
    """The answer to a settled request, in the HTTP answer's words."""
    slug, device_id = device.tenant_slug, device.device_id
    if isinstance(request, batches.HandOutRequest):
        commands = outcome.commands
        etag: str | None = None
        if commands:
            etag = inbox_cache.content_etag([f"{c['id']}@{c['version']}" for c in commands])
        elif not outcome.held and generation is not None:
            etag = inbox_cache.empty_etag(device.tenant_id, device.device_pk, generation)
        return Reply(
            device_topics.inbox_get_accepted(slug, device_id),
            {
                "client_token": token,
                "commands": commands,
                "etag": etag,
                # The device hears of new commands by push: its safety poll only.
                "next_poll_seconds": int(settings.MQTT_SAFETY_POLL_SECONDS),
            },
        )
    command = str(request.command_id)
    if outcome.refused:
        message = batches.NOT_FOUND if outcome.status == 404 else None
        rejected = device_topics.update_rejected(slug, device_id, command)
        return _rejected(rejected, token, outcome.status, outcome.code, outcome.errors, message)
    accepted = device_topics.update_accepted(slug, device_id, command)
    return Reply(accepted, {"client_token": token, "command": outcome.command})


def max_update_bytes() -> int:
    """The largest update the bridge reads: the largest valid one (``details`` at its limit,
    ``reason`` at its limit in 4-byte characters) and room for the rest. Larger ones are
    refused unread (``payload_too_large``), as the HTTP PUT refuses a body past its limit."""
    return json_field_limit() + 4 * text_field_limit() + 4096


#: The states a device may report, by label (the serializer's choices).
_REQUESTABLE = {state.label: state for state in REQUESTABLE_STATES}
#: Keys of an update that the serializer reads beyond ``state`` and ``reason``: one of them
#: present sends the update through the serializer.
_CHECKED_KEYS = frozenset({"details", "expected_version", "attempt"})


def _plain_report(data: Any) -> dict[str, Any] | None:
    """The report's arguments, for the update nearly every device sends (a requestable state,
    perhaps a plain ``reason``, nothing else the serializer reads), exactly as
    ``CommandStatusUpdateSerializer`` would make them (a reason trimmed, as its ``CharField``
    trims), without its cost (about 0.7 ms a message on the 2-core box, more than settling
    it); None for anything else, which the serializer then validates and words."""
    if not isinstance(data, dict) or not _CHECKED_KEYS.isdisjoint(data):
        return None
    state = data.get("state")
    target = _REQUESTABLE.get(state) if isinstance(state, str) else None
    if target is None:
        return None
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > text_field_limit() or "\x00" in reason:
        return None
    if not reason.isascii() and any(0xD800 <= ord(char) <= 0xDFFF for char in reason):
        return None  # a lone surrogate: the serializer refuses it
    plain = {"target": target, "reason": reason.strip()}
    return plain | {"details": None, "expected_version": None, "attempt": None}


def _encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _actor(device: KnownDevice) -> str:
    """Who reported, as the HTTP PUT's device token names it (history rows, events)."""
    return f"device:{device.device_id}"


#: The largest inbox/get the bridge reads: ``{"client_token": ...}`` and room to spare.
MAX_INBOX_GET_BYTES = 4096


def _json_object(payload: bytes) -> Any:
    """An inbox/get body: empty is ``{}``; anything but JSON, or larger than
    :data:`MAX_INBOX_GET_BYTES` (not parsed), is None."""
    if not payload:
        return {}
    if len(payload) > MAX_INBOX_GET_BYTES:
        return None
    try:
        return loads(payload)
    except JSONRefused:
        return None


def _valid_token(token: Any) -> bool:
    return token is None or (isinstance(token, str) and len(token) <= MAX_CLIENT_TOKEN)


def _rejected(
    topic: str, token: Any, status: int, code: str, errors: dict[str, Any], message: str | None = None
) -> Reply:
    """An ``update/rejected`` answer, worded as the HTTP PUT's error envelope."""
    MQTT_REJECTED.labels(code).inc()
    return Reply(
        topic,
        {
            "client_token": token,
            "code": code,
            "status": status,
            "message": message or first_message(errors),
            "errors": errors,
        },
    )
