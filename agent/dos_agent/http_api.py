"""The server's device endpoints over HTTP (contract section 5), one call each.

Every call either answers or raises one of three errors, which say what the caller should do:
:class:`Throttled` (429, 503: wait ``retry_after`` when the server said, then try again),
:class:`Unreachable` (network errors, other 5xx: back off and try again) and :class:`Refused`
(any other 4xx: trying the same again cannot help).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from dos_agent.backoff import retry_after_seconds

INBOX = "/v2/command-inbox/"
STATUS = "/commands/v0/status/{id}/"
MQTT_CREDENTIALS = "/v2/mqtt-credentials/"


class ApiError(Exception):
    pass


class Throttled(ApiError):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}, Retry-After {retry_after}")
        self.status = status
        self.retry_after = retry_after


class Unreachable(ApiError):
    pass


class Refused(ApiError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class InboxAnswer:
    commands: list[dict[str, Any]]
    etag: str | None
    #: None for a 304, which has no body: keep the last value.
    next_poll_seconds: float | None
    not_modified: bool = False


def content(response: httpx.Response) -> Any:
    """The ``content`` of the success envelope (``{"code": 0, "message", "content"}``), or the
    body itself for an endpoint that answers bare."""
    body = response.json()
    if isinstance(body, dict) and "content" in body and "code" in body:
        return body["content"]
    return body


class DeviceApi:
    """One device's calls, with its token, on a shared ``httpx.AsyncClient`` (the simulator's
    devices share one connection pool)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        server: str,
        device_id: str,
        token: str,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.client = client
        #: The simulator's devices queue here for a connection rather than in httpcore's pool,
        #: which scans every waiting request against every connection each time one frees up:
        #: with thousands of devices waiting that took the whole CPU and nothing got sent.
        self.gate = gate or asyncio.Semaphore(1_000_000)
        self.server = server.rstrip("/")
        self.device_id = device_id
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        try:
            async with self.gate:
                response = await self.client.request(method, self.server + path, headers=headers, **kwargs)
        except httpx.HTTPError as failed:  # connect, read, timeout, protocol
            raise Unreachable(f"{method} {path}: {type(failed).__name__}: {failed}") from failed
        if response.status_code in (429, 503):
            raise Throttled(response.status_code, retry_after_seconds(response.headers.get("Retry-After")))
        if response.status_code >= 500:
            raise Unreachable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise Refused(response.status_code, response.text)
        return response

    async def poll_inbox(self, etag: str | None) -> InboxAnswer:
        """``GET /v2/command-inbox/?device_id=X`` with ``If-None-Match``: a 304 keeps the ETag."""
        headers = {"If-None-Match": etag} if etag else {}
        response = await self._request("GET", INBOX, params={"device_id": self.device_id}, headers=headers)
        if response.status_code == 304:
            return InboxAnswer([], response.headers.get("ETag", etag), None, not_modified=True)
        body = content(response)
        poll = body.get("next_poll_seconds")
        return InboxAnswer(
            list(body.get("results", [])),
            response.headers.get("ETag"),
            float(poll) if isinstance(poll, int | float) else None,
        )

    async def put_status(self, command_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT /commands/v0/status/{id}/``: the command as the server now has it."""
        response = await self._request("PUT", STATUS.format(id=command_id), json=body)
        return dict(content(response))

    async def mqtt_credentials(self) -> dict[str, Any] | None:
        """``GET /v2/mqtt-credentials/?device_id=X``: the device's broker login, None when the
        server has no MQTT (404, or any other refusal: then the agent polls only)."""
        try:
            response = await self._request("GET", MQTT_CREDENTIALS, params={"device_id": self.device_id})
        except Refused:
            return None
        found = content(response)
        return dict(found) if isinstance(found, dict) and found.get("url") else None
