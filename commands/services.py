"""What happens to command statuses: a device's report, set-based moves, hand-outs.

Every change goes through the state table in ``commands.choices`` and, for commands of an
operation, moves the operation's counters in the same transaction (``counter_deltas``), so
the counts stay exact under any number of concurrent reports.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import ValidationError

from commands import inbox_cache
from commands.choices import TERMINAL_STATES, UNDELIVERED_STATES, CommandState, Priority, can_move
from commands.models import CommandHistory, CommandStatus
from commands.payload import PAYLOAD_COLUMNS
from operations import progress

C = CommandState


class VersionConflict(ValidationError):
    """``expected_version`` did not match: someone else changed the command first (409).

    A ``ValidationError`` so that the API's error handler keeps its fields (``errors``
    names the current state and version) rather than flattening the detail to a string.
    """

    status_code = status.HTTP_409_CONFLICT
    default_code = "version_conflict"


def counter_deltas(old: int, new: int, was_dispatched: bool = True) -> dict[str, int]:
    """Which operation counter one command's move changes."""
    target = C(new)
    if target == C.SUCCESS:
        return {"success_count": 1}
    if target == C.FAILURE:
        return {"failed_count": 1}
    if target == C.TIMEOUT:
        return {"dispatch_failed_count": 1} if old in UNDELIVERED_STATES else {"failed_count": 1}
    if target == C.CANCELLED:
        return {"cancelled_count": 1}
    if target == C.QUEUED and old == C.SCHEDULED and not was_dispatched:
        return {"dispatched_count": 1}
    return {}


def report(
    command: CommandStatus | int,
    target: CommandState,
    reason: str = "",
    details: Any = None,
    expected_version: int | None = None,
    actor: str = "",
    tenant_id: int | None = None,
    device_pk: int | None = None,
) -> tuple[CommandStatus, bool]:
    """A device's (or operator's) PUT. Returns the command and whether it changed.

    Repeating the current state is a no-op (devices retry); a stale ``expected_version``
    is a 409; a move outside the table, or out of a finished state, is a 400 naming both.
    ``tenant_id`` and ``device_pk`` scope the lookup as the API view scopes its queryset (the
    caller's tenant, and a device token's own device): a command outside them is
    ``CommandStatus.DoesNotExist``, answered 404 like one that does not exist.
    """
    pk = command.pk if isinstance(command, CommandStatus) else command
    sources = [int(s) for s in C if can_move(s, target, by_client=True)]
    current, old, moved, operation_state = _report_statement(
        pk, target, sources, reason, details, expected_version, actor, tenant_id, device_pk
    )
    if not moved:
        if old == target:
            return current, False
        if expected_version is not None and expected_version != current.version:
            raise VersionConflict(
                {
                    "expected_version": [
                        f"is {expected_version} but the command is at version {current.version} "
                        f"in state '{C(old).label}'"
                    ],
                    "state": [C(old).label],
                    "version": [str(current.version)],
                }
            )
        raise ValidationError({"state": [f"cannot move from '{C(old).label}' to '{target.label}'"]})
    if current.operation_id:
        # The counters moved with the row; the operation's state follows, each step a
        # conditional UPDATE, skipped when it cannot match: the hot path stays short.
        first_report = operation_state == progress.S.DISPATCHED
        if first_report or target in TERMINAL_STATES:
            progress.advance(current.operation_id, reported=first_report, actor=actor)
    return current, True


_REPORT_COLUMNS = ("tenant_id", "device_id", *PAYLOAD_COLUMNS)  # enough to rebuild the model
_DETAILS = CommandStatus._meta.get_field("details")
_ARGUMENTS = CommandStatus._meta.get_field("arguments")


def _row_to_command(values: dict[str, Any], device_ref: str) -> CommandStatus:
    for field in (_ARGUMENTS, _DETAILS):
        raw = values[field.attname]
        if raw is not None:  # raw cursors leave jsonb undecoded
            values[field.attname] = field.from_db_value(raw, None, connection)  # type: ignore[arg-type]
    command = CommandStatus(**values)
    command.device_ref = device_ref  # type: ignore[attr-defined]
    return command


def _report_statement(
    pk: int,
    target: CommandState,
    sources: list[int],
    reason: str,
    details: Any,
    expected_version: int | None,
    actor: str,
    tenant_id: int | None,
    device_pk: int | None,
) -> tuple[CommandStatus, int, bool, int | None]:
    """The whole report as one statement: lock and read the row, move it if the table and
    ``expected_version`` allow, write its history and its operation's counters.

    One round trip and no explicit transaction, instead of six statements built by the
    ORM: this is the path every device takes for every command (docs/performance.md).
    """
    table = CommandStatus._meta.db_table
    # Which counter a move changes depends only on the target, but for TimeOut (below).
    deltas = counter_deltas(int(C.IN_PROGRESS), target)
    counter_sets = [f"{name} = o.{name} + {int(delta)}" for name, delta in deltas.items()]
    if target == C.TIMEOUT:  # a dispatch failure or a device failure, by the state it left
        counter_sets = [
            f"dispatch_failed_count = o.dispatch_failed_count + (cur.state IN {_UNDELIVERED_SQL})::int",
            f"failed_count = o.failed_count + (cur.state NOT IN {_UNDELIVERED_SQL})::int",
        ]
    columns = ", ".join(f"cs.{c}" for c in _REPORT_COLUMNS)
    details_set = ", details = %(details)s" if details is not None else ""
    counted = (
        f""", counted AS (
            UPDATE operations_operation o SET {", ".join(counter_sets)}, updated_at = %(now)s
            FROM moved JOIN cur USING (id) WHERE o.id = cur.operation_id
        )"""
        if counter_sets
        else ""
    )
    sql = f"""
        WITH cur AS (
            SELECT {columns}, d.device_id AS device_ref, o.state AS operation_state
            FROM {table} cs
            JOIN inventory_device d ON d.id = cs.device_id
            LEFT JOIN operations_operation o ON o.id = cs.operation_id
            WHERE cs.id = %(pk)s
              AND (%(tenant)s::bigint IS NULL OR cs.tenant_id = %(tenant)s)
              AND (%(device)s::bigint IS NULL OR cs.device_id = %(device)s)
            FOR UPDATE OF cs
        ), moved AS (
            UPDATE {table} cs
            SET state = %(target)s, reason = %(reason)s, version = cs.version + 1, updated_on = %(now)s
                {details_set}
            FROM cur
            WHERE cs.id = cur.id AND cur.state = ANY(%(sources)s)
              AND (%(expected)s::int IS NULL OR cur.version = %(expected)s)
            RETURNING {columns}
        ), logged AS (
            INSERT INTO {CommandHistory._meta.db_table}
                (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, cur.state, %(target)s, %(reason)s, %(actor)s, %(now)s FROM moved JOIN cur USING (id)
        ){counted}
        SELECT cur.*, moved.* FROM cur LEFT JOIN moved USING (id)
    """
    params = {
        "pk": pk,
        "tenant": tenant_id,
        "device": device_pk,
        "target": int(target),
        "reason": reason,
        "now": timezone.now(),
        "sources": sources,
        "expected": expected_version,
        "actor": actor,
        "details": _DETAILS.get_db_prep_save(details, connection) if details is not None else None,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchone()
    if found is None:
        raise CommandStatus.DoesNotExist(f"no command status {pk}")
    width = len(_REPORT_COLUMNS)
    before = dict(zip(_REPORT_COLUMNS, found[:width], strict=True))
    device_ref, operation_state = found[width], found[width + 1]
    after = found[width + 2 :]
    moved = after[0] is not None
    values = dict(zip(_REPORT_COLUMNS, after, strict=True)) if moved else dict(before)
    return _row_to_command(values, device_ref), before["state"], moved, operation_state


_UNDELIVERED_SQL = "(" + ", ".join(str(int(s)) for s in sorted(UNDELIVERED_STATES)) + ")"


@dataclass(frozen=True)
class Moved:
    operation_id: Any
    tenant_id: int
    new_state: int
    old_state: int
    was_dispatched: bool
    count: int


def move_commands(
    commands: QuerySet[CommandStatus],
    target: CommandState,
    reason: str,
    actor: str = "system",
    extra: dict[str, Any] | None = None,
) -> list[Moved]:
    """Move every command of ``commands`` (a filtered queryset) that the table allows to
    ``target`` as one set: one UPDATE, one INSERT of history, counters per operation.

    Rows locked by a concurrent mover are skipped, never moved twice. Call inside a
    transaction; the caller then calls :func:`settle` with the result.
    """
    sources = [int(s) for s in C if can_move(s, target)]
    now = timezone.now()
    candidates = commands.filter(state__in=sources)
    return _move_statement(candidates, target, reason, actor, now, extra or {})


def _move_statement(
    candidates: QuerySet[CommandStatus],
    target: CommandState,
    reason: str,
    actor: str,
    now: dt.datetime,
    extra: dict[str, Any],
) -> list[Moved]:
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    select_sql, select_params = (
        candidates.order_by()
        .values("id", "state", "dispatched_at")
        .select_for_update(skip_locked=True, of=("self",))
        .query
    ).sql_with_params()
    sets = ["state = %s", "reason = %s", "version = cs.version + 1", "updated_on = %s"]
    params: list[Any] = [int(target), reason, now]
    if target == C.QUEUED:
        sets.append("dispatched_at = COALESCE(cs.dispatched_at, %s)")
        params.append(now)
    for column, value in extra.items():
        sets.append(f"{column} = %s")
        params.append(value)
    sql = f"""
        WITH old AS ({select_sql}),
        moved AS (
            UPDATE {table} cs SET {", ".join(sets)}
            FROM old WHERE cs.id = old.id
            RETURNING cs.id, cs.operation_id, cs.tenant_id, old.state AS old_state,
                      old.dispatched_at IS NOT NULL AS was_dispatched
        ),
        logged AS (
            INSERT INTO {history} (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, old_state, %s, %s, %s, %s FROM moved
        )
        SELECT operation_id, tenant_id, old_state, was_dispatched, count(*) FROM moved GROUP BY 1, 2, 3, 4
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *params, int(target), reason, actor, now])
        return [Moved(row[0], row[1], int(target), *row[2:]) for row in cursor.fetchall()]


def settle(moved: list[Moved], actor: str = "system") -> None:
    """Apply a set move's counters to its operations, then let each operation advance."""
    deltas: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for group in moved:
        if group.operation_id is None:
            continue
        for name, delta in counter_deltas(group.old_state, group.new_state, group.was_dispatched).items():
            deltas[group.operation_id][name] += delta * group.count
    for operation_id, changes in sorted(deltas.items(), key=lambda item: str(item[0])):
        progress.add_counts(operation_id, **changes)
    for operation_id in sorted({str(g.operation_id) for g in moved if g.operation_id is not None}):
        progress.advance(operation_id, actor=actor)


def move_and_settle(
    commands: QuerySet[CommandStatus],
    target: CommandState,
    reason: str,
    actor: str = "system",
    extra: dict[str, Any] | None = None,
    after: Callable[[list[Moved]], None] | None = None,
) -> int:
    """:func:`move_commands` and :func:`settle` in one transaction; returns how many moved."""
    with transaction.atomic():
        moved = move_commands(commands, target, reason, actor, extra)
        settle(moved, actor)
        if after is not None:
            after(moved)
        if target == C.QUEUED:
            for tenant_id in {group.tenant_id for group in moved}:
                transaction.on_commit(functools.partial(inbox_cache.bump_tenant, tenant_id))
    return sum(group.count for group in moved)


def issue_internal_command(
    tenant_id: int,
    device_pk: int,
    command: str,
    arguments: dict[str, Any],
    request_ref: str,
    priority: int = Priority.NORMAL,
) -> CommandStatus:
    """A command the system itself sends to one device (headless and maintenance work)."""
    status_row = CommandStatus.objects.create(
        tenant_id=tenant_id,
        device_id=device_pk,
        command=command,
        arguments=arguments,
        request_ref=request_ref,
        is_internal=True,
        priority=priority,
        dispatched_at=timezone.now(),
    )
    transaction.on_commit(lambda: inbox_cache.forget_device(device_pk))
    return status_row
