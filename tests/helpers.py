"""Checks shared by the test modules: the API's JSON envelopes and timestamps, the published
OpenAPI document, the inbox as a device polls it, an operation's stored counters and activity,
and what Celery's logs say.

The envelope of the JSON API (``config/api``): ``{"code": 0, "message": "success", "content": ...}``
for a success, ``{"code": <HTTP status>, "message": ..., "errors": {...}, "error_code": "<why>"}``
for an error.
(The maintenance scheduler API has an envelope of its own; tests/test_maintenance_api.py
checks it.)
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

from django.test import Client

from commands import counting
from config import timestamps
from operations.models import Operation
from tests.conftest import Api, DeviceActor

SEND = "Scheduler: Sending due task"
INBOX = "/v2/command-inbox/"


def content(response: Any, status: int = 200) -> Any:
    """The ``content`` of a success envelope answered with ``status``."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == 0 and body["message"] == "success", body
    return body["content"]


ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")


def error(response: Any, status: int, error_code: str | None = None) -> dict[str, Any]:
    """The body of an error envelope: its ``code`` is the HTTP status, with a message and a
    machine-readable ``error_code`` (``error_code`` when given: a test asserts on it rather
    than on the message, which is for people and may be reworded)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == status and body["message"], body
    assert ERROR_CODE.fullmatch(body["error_code"]), body
    if error_code is not None:
        assert body["error_code"] == error_code, body
    return dict(body)


def openapi_document() -> dict[str, Any]:
    """The published OpenAPI document (``/api/schema/``, as JSON so that no YAML reading turns
    a string into a date), as any client downloads it, without a token. Making it needs no
    database, so a module may read it at collection to parametrize its tests."""
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content
    return dict(response.json())


def iso(moment: dt.datetime) -> str:
    """``moment`` as the API writes a timestamp (``config.timestamps.format``: UTC, ``Z``), to
    compare with what it shows or to send it one."""
    return timestamps.format(moment)


# --- the inbox, an operation's counters and activity ------------------------------------------------


def poll_inbox(caller: DeviceActor | Api, device_id: str | None = None, **headers: str) -> Any:
    """The answer to one inbox poll by ``caller`` (a device, or a key's client) for ``device_id``
    (a device's own by default), with ``headers`` (``HTTP_IF_NONE_MATCH``)."""
    if isinstance(caller, DeviceActor):
        return caller.api.get(INBOX, {"device_id": device_id or caller.device.device_id}, **headers)
    assert device_id is not None, "a key polls for a device it names"
    return caller.get(INBOX, {"device_id": device_id}, **headers)


def handed_out(response: Any) -> list[int]:
    """The ids of the commands an inbox answer (a 200) hands out."""
    return [int(item["id"]) for item in content(response)["results"]]


def poll(actor: DeviceActor) -> list[int]:
    """The ids of the commands the inbox hands ``actor`` now."""
    return handed_out(poll_inbox(actor))


def stored_counts(operation: Operation) -> dict[str, int]:
    """The operation's counters as stored now (read again from the database)."""
    operation.refresh_from_db()
    return {name: getattr(operation, name) for name in counting.COUNTERS}


def activity(operation: Operation) -> list[str]:
    """The states the operation's activity log recorded, oldest first."""
    return list(operation.activity.values_list("operation_state", flat=True))


# --- Celery's logs (``-l info``) -----------------------------------------------------------------


def task_events(log: str, event: str, task: str | None = None) -> int:
    """How often a worker's log says ``Task <task>[<id>] <event>`` (``received``, ``succeeded``);
    any task when ``task`` is None."""
    name = re.escape(task) if task else r"[\w.:-]+"
    return len(re.findall(rf"Task {name}\[[0-9a-f-]+\] {event}\b", log))


def sends(log: str, entry: str = "") -> int:
    """How often a beat's log says it sent a schedule entry whose name starts with ``entry``."""
    return log.count(f"{SEND} {entry}")


def tasks_sent(log: str) -> Counter[str]:
    """The tasks a beat's log says it sent, by task name."""
    return Counter(re.findall(rf"{SEND} \S+ \(([\w.:-]+)\)", log))


def tasks_finished(log: str) -> Counter[str]:
    """The tasks a worker's log says it finished (succeeded or raised), by task name."""
    return Counter(re.findall(r"Task ([\w.:-]+)\[[0-9a-f-]+\] (?:succeeded|raised)\b", log))


def names_static_file(html: str, name: str) -> bool:
    """Whether the page loads the static file ``name`` (``console/copy.js``), by its plain name
    or, once ``collectstatic`` ran (``make test``), by its hashed one (``console/copy.1a2b3c4d5e6f.js``)."""
    stem, _, extension = name.rpartition(".")
    return (
        re.search(rf"/static/{re.escape(stem)}(\.[0-9a-f]{{12}})?\.{re.escape(extension)}\b", html)
        is not None
    )
