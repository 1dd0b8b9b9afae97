"""The JSON shape of one command status, defined once (:data:`FIELDS`) and generated twice:
in Python for the status endpoints, the inbox and the export (:func:`command_payload`), and
as one SQL expression for the events the hot statements write themselves
(:func:`event_data_sql`), so the two cannot drift apart."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from commands.choices import CommandState, Priority
from config import timestamps


def label_sql(expr: str, choices: type[CommandState] | type[Priority]) -> str:
    """The label of the choice ``expr`` (SQL) holds, as the API shows it."""
    cases = " ".join(f"WHEN {int(c)} THEN '{c.label}'" for c in choices)
    return f"(CASE {expr} {cases} END)"


def _scheduled_for(state: int, not_before: dt.datetime | None) -> str | None:
    """When a Scheduled command's window opens (its ``not_before``), so a client knows why
    nothing happens yet; null in every other state, where ``not_before`` is history, not a
    promise."""
    return timestamps.format(not_before) if state == CommandState.SCHEDULED else None


@dataclass(frozen=True)
class Field:
    """One key of the payload: read from ``columns`` of the command row, in Python by
    ``python`` (the columns' values, then the device's public id) and in SQL by ``sql`` (the
    columns' SQL expressions, then the device's)."""

    key: str
    columns: tuple[str, ...]
    python: Callable[..., Any]
    sql: Callable[..., str]


def _plain(key: str) -> Field:
    return Field(key, (key,), lambda value, _device: value, lambda value, _device: value)


def _label(key: str, choices: type[CommandState] | type[Priority]) -> Field:
    return Field(
        key, (key,), lambda value, _d: choices(value).label, lambda value, _d: label_sql(value, choices)
    )


def _time(key: str) -> Field:
    return Field(key, (key,), lambda at, _d: timestamps.format(at), lambda at, _d: timestamps.format_sql(at))


SCHEDULED = int(CommandState.SCHEDULED)

#: The payload's keys in the API's order, each with the columns it is made of.
FIELDS: tuple[Field, ...] = (
    Field("id", ("id",), lambda pk, _d: str(pk), lambda pk, _d: f"{pk}::text"),
    Field(
        "request",
        ("operation_id", "request_ref"),
        lambda operation, ref, _d: str(operation) if operation else ref,
        lambda operation, ref, _d: f"COALESCE({operation}::text, {ref})",
    ),
    Field("device", (), lambda device: device, lambda device: device),
    _plain("command"),
    _plain("arguments"),
    _label("state", CommandState),
    _plain("reason"),
    _plain("details"),
    _plain("is_internal"),
    _label("priority", Priority),
    _plain("version"),
    Field(
        "created_on",
        ("created_on",),
        lambda at, _d: timestamps.format(at),
        lambda at, _d: timestamps.format_sql(at),
    ),
    Field(
        "updated_on",
        ("updated_on",),
        lambda at, _d: timestamps.format(at),
        lambda at, _d: timestamps.format_sql(at),
    ),
    Field(
        "scheduled_for",
        ("state", "not_before"),
        lambda state, at, _d: _scheduled_for(state, at),
        lambda state, at, _d: (
            f"CASE WHEN {state} = {int(CommandState.SCHEDULED)} THEN {timestamps.format_sql(at)} END"
        ),
    ),
    _plain("wave"),
    _plain("attempt"),
)

#: The command status columns the payload is made of (with the device's public id), for the
#: raw statements of the hot paths that return rows instead of model instances.
PAYLOAD_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(column for field in FIELDS for column in field.columns)
)


#: :data:`FIELDS` as the Python side reads them, split once: every status answer, inbox item and
#: export line runs through :func:`command_payload` (a generator per field cost 6 µs a payload).
_ONE_COLUMN = tuple(
    (field.key, field.columns[0], field.python) for field in FIELDS if len(field.columns) == 1
)
_OTHERS = tuple((f.key, f.columns, f.python) for f in FIELDS if len(f.columns) != 1)
_ORDER = tuple(field.key for field in FIELDS)


def command_payload(*, device: str, **row: Any) -> dict[str, Any]:
    """The API's shape of a command status, from a row of :data:`PAYLOAD_COLUMNS` (extra
    keys ignored) and the device's public id."""
    made = {key: python(row[column], device) for key, column, python in _ONE_COLUMN}
    for key, columns, python in _OTHERS:
        made[key] = python(*[row[column] for column in columns], device)
    return {key: made[key] for key in _ORDER}


def payload_of(command: Any, device: str | None = None) -> dict[str, Any]:
    """:func:`command_payload` of a ``CommandStatus`` instance (its device's public id read
    from ``device_ref`` when the statement that made it gave it, else from the device)."""
    device = device or getattr(command, "device_ref", None) or command.device.device_id
    values = {column: getattr(command, "pk" if column == "id" else column) for column in PAYLOAD_COLUMNS}
    return command_payload(device=device, **values)


def event_data_sql(row: str, device_ref: str, previous_state: str) -> str:
    """:func:`command_payload` with ``previous_state``, as one jsonb expression over the row
    alias ``row`` (the columns of :data:`PAYLOAD_COLUMNS`): the ``data`` of a
    ``command.state_changed`` event, built inside the statement that moves the command so
    the hot paths stay one round trip. ``tests/test_webhook_events.py`` holds it equal to
    :func:`command_payload`."""
    pairs = [
        f"'{field.key}', {field.sql(*(f'{row}.{c}' for c in field.columns), device_ref)}" for field in FIELDS
    ]
    pairs.append(f"'previous_state', {label_sql(previous_state, CommandState)}")
    return f"jsonb_build_object({', '.join(pairs)})"
