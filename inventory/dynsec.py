"""Mosquitto's dynamic-security plugin, spoken to over MQTT (contract section 14, docs/mqtt.md).

The plugin takes its commands as JSON published on ``$CONTROL/dynamic-security/v1`` by a
client whose role may (the server's own login of ``MQTT_URL``: ``config.mosquitto.ADMIN_USER``
on the project's broker) and answers every message on
``$CONTROL/dynamic-security/v1/response``, to every subscriber. Several server processes may
talk to it at once, so each command carries a ``correlationData`` of its own and a caller
takes only the answers to its commands.

Transport only: which logins there should be is ``inventory.broker_logins``'s business.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
#: Commands per control message. The plugin rewrites its whole JSON file after every command
#: that changes something, so a message's time grows with the logins it holds (measured on
#: Mosquitto 2.0.11: 200 commands took 0.14 s with 200 logins, 5 s with 2,000; docs/mqtt.md):
#: small messages keep each wait short and show progress.
CHUNK = 100
#: Seconds to connect and to wait for the answer to one control message.
CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 60.0


class BrokerUnavailable(Exception):
    """The broker cannot be reached, refused the server's login, or did not answer in time.

    Transient by nature: the sync retries (``inventory.tasks.sync_broker_logins``) and the
    credentials endpoint answers 503 with ``Retry-After``."""


class CommandFailed(Exception):
    """The plugin refused a command for a reason the caller did not expect (not a login that
    exists already or is gone already: those are answers, see :attr:`Answer.error`)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a broker is and how to log in: ``MQTT_URL`` taken apart."""

    host: str
    port: int
    tls: bool
    username: str
    password: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parsed = urlparse(url)
        tls = parsed.scheme == "mqtts"
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parsed.username or ""),
            password=unquote(parsed.password or ""),
        )

    @property
    def public_url(self) -> str:
        """The URL without the login: what a device is told (``mqtt://host:port``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    """The plugin's answer to one command: ``error`` is its words (``"Client not found"``)."""

    command: str
    error: str | None
    data: dict[str, Any]


class Control:
    """One connection to the broker as the server's admin login, sending dynamic-security
    commands and waiting for their answers. Open with :func:`connect`."""

    def __init__(self, client: mqtt.Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition(self._lock)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._arrived:
            for response in responses:
                if isinstance(response, dict) and isinstance(response.get("correlationData"), str):
                    self._answers[response["correlationData"]] = response
            self._arrived.notify_all()

    def run(self, commands: Sequence[dict[str, Any]]) -> list[Answer]:
        """Send ``commands`` (in messages of :data:`CHUNK`) and return their answers, in order."""
        answers: list[Answer] = []
        for start in range(0, len(commands), CHUNK):
            answers.extend(self._run_chunk(commands[start : start + CHUNK]))
        return answers

    def _run_chunk(self, commands: Sequence[dict[str, Any]]) -> list[Answer]:
        tag = secrets.token_hex(6)
        keyed = [{**command, "correlationData": f"{tag}-{i}"} for i, command in enumerate(commands)]
        keys = [command["correlationData"] for command in keyed]
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": keyed}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"could not send to the broker: {mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + ANSWER_TIMEOUT
        with self._arrived:
            while not all(key in self._answers for key in keys):
                left = deadline - time.monotonic()
                if left <= 0 or not self._client.is_connected():
                    raise BrokerUnavailable("the broker did not answer the dynamic-security commands")
                self._arrived.wait(min(left, 0.5))
            found = [self._answers.pop(key) for key in keys]
        return [
            Answer(str(answer.get("command", "")), answer.get("error"), answer.get("data") or {})
            for answer in found
        ]


@contextmanager
def connect(url: str) -> Iterator[Control]:
    """A :class:`Control` on the broker of ``url`` (``MQTT_URL``), closed when the block ends.

    Raises :class:`BrokerUnavailable` when the broker cannot be reached, refuses the login or
    does not confirm the subscription to the answers in time."""
    endpoint = Endpoint.parse(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"dos-logins-{secrets.token_hex(6)}", clean_session=True
    )
    client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    control = Control(client)
    ready = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            ready.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            refused.append(f"subscription to {RESPONSE_TOPIC} refused")
        ready.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = control._on_message
    where = f"{endpoint.host}:{endpoint.port}"
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=30)
    except (OSError, ValueError) as error:
        raise BrokerUnavailable(f"cannot reach the MQTT broker at {where}: {error}") from error
    client.loop_start()
    try:
        if not ready.wait(CONNECT_TIMEOUT):
            raise BrokerUnavailable(f"the MQTT broker at {where} did not accept the server's login in time")
        if refused:
            raise BrokerUnavailable(f"the MQTT broker at {where} refused the server: {refused[0]}")
        yield control
    finally:
        client.disconnect()
        client.loop_stop()


# --- the plugin's file, written while the broker is stopped -------------------------------------

#: How the plugin (Mosquitto 2.0.x, ``dynsec_auth__pw_hash``) stores a password: PBKDF2-HMAC-SHA512
#: of a random 12-byte salt, 101 iterations, 64 bytes; salt and hash base64-encoded.
PASSWORD_ITERATIONS = 101
PASSWORD_SALT_BYTES = 12


def hashed_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """A login's ``password``, ``salt`` and ``iterations`` fields as the plugin writes them, so
    it accepts a login written into its file by :func:`apply_offline` like one it made itself."""
    salt = salt if salt is not None else secrets.token_bytes(PASSWORD_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWORD_ITERATIONS, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PASSWORD_ITERATIONS,
    }


def password_matches(client: dict[str, Any], password: str) -> bool:
    """Whether a login of the plugin's file takes ``password`` (what the broker would check)."""
    try:
        salt = base64.b64decode(client["salt"])
        iterations = int(client["iterations"])
        stored = base64.b64decode(client["password"])
    except (KeyError, ValueError, TypeError):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(stored))
    return hmac.compare_digest(digest, stored)


def apply_offline(document: dict[str, Any], commands: Sequence[dict[str, Any]]) -> list[Answer]:
    """Apply the plugin's commands to its file's ``document`` (parsed JSON) as the plugin would
    on a running broker, and answer as it would. Why: the plugin rewrites its whole file after
    every command, so making 10,000 logins one by one takes minutes and grows with the square
    of the logins held; changing the file while the broker is stopped writes it once.

    Knows the commands ``inventory.broker_logins`` sends: ``createRole`` (an existing role's
    ACLs are replaced, as the server wants them), ``createClient``, ``modifyClient``,
    ``disableClient``, ``enableClient``, ``deleteClient``, ``deleteRole`` and
    ``setDefaultACLAccess``."""
    clients = {str(client["username"]): client for client in document.get("clients", [])}
    roles = {str(role["rolename"]): role for role in document.get("roles", [])}
    gone_roles: set[str] = set()
    answers: list[Answer] = []
    for command in commands:
        name = command["command"]
        error: str | None = None
        if name == "createRole":
            gone_roles.discard(command["rolename"])
            roles[command["rolename"]] = {
                "rolename": command["rolename"],
                "acls": list(command.get("acls", [])),
            }
        elif name == "createClient":
            if command["username"] in clients:
                error = "Client already exists"
            else:
                clients[command["username"]] = {
                    "username": command["username"],
                    "clientid": command["clientid"],
                    "textdescription": command.get("textdescription", ""),
                    **hashed_password(command["password"]),
                    "roles": [{"rolename": role["rolename"]} for role in command.get("roles", [])],
                }
        elif name in ("modifyClient", "disableClient", "enableClient"):
            client = clients.get(command["username"])
            if client is None:
                error = "Client not found"
            elif name == "modifyClient":
                if "password" in command:
                    client.update(hashed_password(command["password"]))
                if "textdescription" in command:
                    client["textdescription"] = command["textdescription"]
            elif name == "disableClient":
                client["disabled"] = True
            else:
                client.pop("disabled", None)
        elif name == "deleteClient":
            if clients.pop(command["username"], None) is None:
                error = "Client not found"
        elif name == "deleteRole":
            if roles.pop(command["rolename"], None) is None:
                error = "Role not found"
            gone_roles.add(command["rolename"])
        elif name == "setDefaultACLAccess":
            document["defaultACLAccess"] = {acl["acltype"]: acl["allow"] for acl in command["acls"]}
        else:
            raise CommandFailed(f"{name}: not a command the offline file knows")
        answers.append(Answer(name, error, {}))
    for client in clients.values():  # a deleted role leaves the logins that had it
        if gone_roles and any(role["rolename"] in gone_roles for role in client.get("roles", [])):
            client["roles"] = [role for role in client["roles"] if role["rolename"] not in gone_roles]
    document["clients"] = list(clients.values())
    document["roles"] = list(roles.values())
    return answers


def held_offline(document: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """The logins of the plugin's file's ``document``: username to (``textdescription``,
    disabled), what :func:`inventory.broker_logins.held` reads from a running broker."""
    return {
        str(client["username"]): (str(client.get("textdescription", "")), bool(client.get("disabled")))
        for client in document.get("clients", [])
    }
