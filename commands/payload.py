"""The JSON shape of one command status, built in one place for the status endpoints
and for the inbox (which builds it from raw rows, skipping model instances)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from commands.choices import CommandState, Priority

#: The command status columns :func:`command_payload` is built from (with the device's id),
#: for the raw statements of the hot paths that return rows instead of model instances.
PAYLOAD_COLUMNS = (
    "id",
    "operation_id",
    "request_ref",
    "command",
    "arguments",
    "state",
    "reason",
    "details",
    "is_internal",
    "priority",
    "version",
    "created_on",
    "updated_on",
    "not_before",
    "wave",
    "attempt",
)


def _ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def command_payload(
    *,
    id: int,
    operation_id: Any,
    request_ref: str,
    device: str,
    command: str,
    arguments: Any,
    state: int,
    reason: str,
    details: Any,
    is_internal: bool,
    priority: int,
    version: int,
    created_on: dt.datetime,
    updated_on: dt.datetime,
    not_before: dt.datetime | None = None,
    wave: int = 1,
    attempt: int = 1,
) -> dict[str, Any]:
    """The API's shape of a command status.

    ``scheduled_for`` says when a Scheduled command's window opens (its ``not_before``), so a
    client knows why nothing happens yet; it is null in every other state, where
    ``not_before`` is history, not a promise.
    """
    scheduled = state == CommandState.SCHEDULED
    return {
        "id": str(id),
        "request": str(operation_id) if operation_id else request_ref,
        "device": device,
        "command": command,
        "arguments": arguments,
        "state": CommandState(state).label,
        "reason": reason,
        "details": details,
        "is_internal": is_internal,
        "priority": Priority(priority).label,
        "version": version,
        "created_on": _ts(created_on),
        "updated_on": _ts(updated_on),
        "scheduled_for": _ts(not_before) if scheduled else None,
        "wave": wave,
        "attempt": attempt,
    }
