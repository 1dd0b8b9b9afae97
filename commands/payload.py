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


def label_sql(expr: str, choices: type[CommandState] | type[Priority]) -> str:
    cases = " ".join(f"WHEN {int(c)} THEN '{c.label}'" for c in choices)
    return f"(CASE {expr} {cases} END)"


def ts_sql(expr: str) -> str:
    return f"to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def event_data_sql(row: str, device_ref: str, previous_state: str) -> str:
    """:func:`command_payload` with ``previous_state``, as one jsonb expression over the row
    alias ``row`` (the columns of :data:`PAYLOAD_COLUMNS`): the ``data`` of a
    ``command.state_changed`` event, built inside the statement that moves the command so
    the hot paths stay one round trip. ``tests/test_webhook_events.py`` holds it equal to
    :func:`command_payload`."""
    r = row
    return (
        f"jsonb_build_object('id', {r}.id::text, "
        f"'request', COALESCE({r}.operation_id::text, {r}.request_ref), 'device', {device_ref}, "
        f"'command', {r}.command, 'arguments', {r}.arguments, "
        f"'state', {label_sql(f'{r}.state', CommandState)}, 'reason', {r}.reason, "
        f"'details', {r}.details, 'is_internal', {r}.is_internal, "
        f"'priority', {label_sql(f'{r}.priority', Priority)}, 'version', {r}.version, "
        f"'created_on', {ts_sql(f'{r}.created_on')}, 'updated_on', {ts_sql(f'{r}.updated_on')}, "
        f"'scheduled_for', CASE WHEN {r}.state = {int(CommandState.SCHEDULED)} "
        f"THEN {ts_sql(f'{r}.not_before')} END, "
        f"'wave', {r}.wave, 'attempt', {r}.attempt, "
        f"'previous_state', {label_sql(previous_state, CommandState)})"
    )
