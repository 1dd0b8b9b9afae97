"""The device channel over MQTT (contract section 14), as a device uses it.

The broker login comes from ``GET /v2/mqtt-credentials/?device_id=X`` (``{"url", "client_id",
"username", "password", "topics"}``), fetched again at every (re)connection so that a rotated
token or a server that turned MQTT on or off is followed. Topics, ``P`` being the device's
``dos/v1/{tenant}/{device}``:

- subscribe ``P/notify`` (the server: "commands are waiting"), ``P/inbox/get/accepted``,
  ``P/commands/+/update/accepted`` and ``P/commands/+/update/rejected``;
- publish ``P/inbox/get`` (``{"client_token"}``, answered with the same hand-out as the HTTP
  inbox) and ``P/commands/{id}/update`` (``{"state", "reason", "details", "client_token"}``).

A request carries a fresh ``client_token`` and waits for the reply that carries it back; no
reply within the timeout raises :class:`NoReply` and the caller falls back to HTTP. QoS 1
both ways; a clean session: after any (re)connection the agent asks for its inbox at once,
so a notify sent while it was away is not needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from dos_agent.backoff import Backoff

logger = logging.getLogger(__name__)

#: How long to wait before asking the server again whether it offers MQTT, when it did not.
RECHECK_SECONDS = 600.0
REPLY_TIMEOUT = 10.0


class NoReply(Exception):
    """No ``accepted`` / ``rejected`` came back in time (or the session is down)."""


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    tls: bool
    client_id: str
    username: str
    password: str
    prefix: str

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any]) -> Login:
        url = urlsplit(str(credentials["url"]))
        tls = url.scheme == "mqtts"
        topics = credentials.get("topics")
        if isinstance(topics, dict) and isinstance(topics.get("prefix"), str):
            notify: str | None = f"{topics['prefix']}/notify"
        else:
            notify = next((t for t in _strings(topics) if t.endswith("/notify")), None)
        if notify is None:
            raise ValueError("the credentials name no notify topic")
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or (8883 if tls else 1883),
            tls=tls,
            client_id=str(credentials.get("client_id") or ""),
            username=str(credentials.get("username") or ""),
            password=str(credentials.get("password") or ""),
            prefix=notify.removesuffix("/notify"),
        )

    def subscriptions(self) -> list[str]:
        return [
            f"{self.prefix}/notify",
            f"{self.prefix}/inbox/get/accepted",
            f"{self.prefix}/commands/+/update/accepted",
            f"{self.prefix}/commands/+/update/rejected",
        ]


def _strings(value: Any) -> list[str]:
    """Every string in the credentials' ``topics`` (``{"prefix", "subscribe": [...],
    "publish": [...]}``, or any list or dict of lists)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


class MqttChannel:
    def __init__(
        self,
        credentials: Callable[[], Awaitable[dict[str, Any] | None]],
        on_notify: Callable[[dict[str, Any]], None],
        on_connect: Callable[[], None],
        on_lost: Callable[[], None] = lambda: None,
        on_late_hand_out: Callable[[dict[str, Any]], None] = lambda _reply: None,
    ) -> None:
        self._credentials = credentials
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._on_lost = on_lost
        self._on_late_hand_out = on_late_hand_out
        self._client: aiomqtt.Client | None = None
        self._login: Login | None = None
        self._waiting: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self.connected = asyncio.Event()
        self.notifies = 0
        #: When the last notifies arrived (``time.monotonic()``), for the benchmark's latencies.
        self.notify_times: deque[float] = deque(maxlen=8)

    async def run(self) -> None:
        """Stay connected (until cancelled): log in, subscribe, hand each message on."""
        backoff = Backoff(base=1.0, cap=60.0)
        while True:
            try:
                credentials = await self._credentials()
            except Exception as failed:
                logger.warning("mqtt: credentials not fetched: %s", failed)
                await asyncio.sleep(backoff.next_delay())
                continue
            if credentials is None:
                await asyncio.sleep(RECHECK_SECONDS)
                continue
            try:
                await self._session(Login.from_credentials(credentials), backoff)
            except (aiomqtt.MqttError, ValueError, OSError) as lost:
                logger.warning("mqtt: %s", lost)
            finally:
                self._client = None
                if self.connected.is_set():
                    self.connected.clear()
                    self._on_lost()
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(NoReply("the MQTT session ended"))
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, login: Login, backoff: Backoff) -> None:
        client = aiomqtt.Client(
            login.host,
            login.port,
            identifier=login.client_id or None,
            username=login.username or None,
            password=login.password or None,
            tls_context=ssl.create_default_context() if login.tls else None,
            clean_session=True,
            keepalive=60,
        )
        async with client:
            for topic in login.subscriptions():
                await client.subscribe(topic, qos=1)
            self._client, self._login = client, login
            self.connected.set()
            logger.info("mqtt: connected to %s:%s as %s", login.host, login.port, login.client_id)
            backoff.reset()
            self._on_connect()
            async for message in client.messages:
                self._dispatch(str(message.topic), message.payload)

    def _dispatch(self, topic: str, payload: Any) -> None:
        try:
            body = json.loads(payload) if isinstance(payload, bytes | str) else {}
        except ValueError:
            logger.warning("mqtt: not JSON on %s", topic)
            return
        if not isinstance(body, dict):
            return
        if topic.endswith("/notify"):
            self.notifies += 1
            self.notify_times.append(time.monotonic())
            self._on_notify(body)
            return
        kind = "rejected" if topic.endswith("/rejected") else "accepted"
        future = self._waiting.get(str(body.get("client_token")))
        if future is not None and not future.done():
            future.set_result((kind, body))
        elif topic.endswith("/inbox/get/accepted"):
            # Past the wait (the agent polled over HTTP meanwhile), but the server handed these
            # commands out all the same: dropped, they would wait for the redelivery sweep.
            self._on_late_hand_out(body)

    async def _request(
        self, topic_tail: str, body: dict[str, Any], timeout: float
    ) -> tuple[str, dict[str, Any]]:
        client, login = self._client, self._login
        if client is None or login is None:
            raise NoReply("no MQTT session")
        token = uuid.uuid4().hex
        future: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            await client.publish(
                f"{login.prefix}/{topic_tail}", json.dumps({**body, "client_token": token}), qos=1
            )
            return await asyncio.wait_for(future, timeout)
        except (TimeoutError, aiomqtt.MqttError) as failed:
            raise NoReply(f"{topic_tail}: {type(failed).__name__}") from failed
        finally:
            self._waiting.pop(token, None)

    async def inbox_get(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The hand-out (``{"commands", "etag", "next_poll_seconds"}``) over MQTT."""
        _, reply = await self._request("inbox/get", {}, timeout)
        return reply

    async def update(
        self, command_id: str, body: dict[str, Any], timeout: float = REPLY_TIMEOUT
    ) -> tuple[bool, dict[str, Any]]:
        """A report over MQTT: (accepted?, the reply)."""
        kind, reply = await self._request(f"commands/{command_id}/update", body, timeout)
        return kind == "accepted", reply


async def cancel(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
