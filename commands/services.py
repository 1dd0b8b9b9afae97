"""The one writer of a command's state: a device's report, set-based moves, hand-outs.

Every change is decided by the table in ``commands.choices`` and written here, with a
history row in the same statement. What a move means to the floors above (an operation's
counters and state) is theirs: the followers they registered (``commands.followers``) run
in the same statement (a report) or the same transaction (a set move), so the counts stay
exact under any number of concurrent reports.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from commands import inbox_cache
from commands.choices import HAND_OUT, CommandState, Priority, can_move
from commands.followers import Moved, followers
from commands.models import CommandHistory, CommandStatus
from commands.payload import PAYLOAD_COLUMNS, event_data_sql, label_sql, ts_sql
from config.errors import Conflict, DomainError
from config.metrics import COMMAND_STATE_CHANGES
from inventory.events import outbox_cte
from inventory.models import Device, EventType

C = CommandState

#: The counter of state changes by target state, one child per state made once (GET /metrics).
#: Counted after the statement that moved the rows; a set move's transaction that rolls back
#: later has been counted all the same (rare: a metric, not a ledger).
_CHANGED_TO = {state: COMMAND_STATE_CHANGES.labels(state.name.lower()) for state in C}


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
    is a :class:`~config.errors.Conflict` (409); a move outside the table, or out of a
    finished state, is a :class:`~config.errors.DomainError` (400) naming both.
    ``tenant_id`` and ``device_pk`` scope the lookup as the API view scopes its queryset (the
    caller's tenant, and a device token's own device): a command outside them is
    ``CommandStatus.DoesNotExist``, answered 404 like one that does not exist.
    """
    pk = command.pk if isinstance(command, CommandStatus) else command
    sources = [int(s) for s in C if can_move(s, target, by_client=True)]
    current, old, moved, values = _report_statement(
        pk, target, sources, reason, details, expected_version, actor, tenant_id, device_pk
    )
    if not moved:
        if old == target:
            return current, False
        if expected_version is not None and expected_version != current.version:
            raise Conflict(
                {
                    "expected_version": [
                        f"is {expected_version} but the command is at version {current.version} "
                        f"in state '{C(old).label}'"
                    ],
                    "state": [C(old).label],
                    "version": [str(current.version)],
                }
            )
        raise DomainError({"state": [f"cannot move from '{C(old).label}' to '{target.label}'"]})
    _CHANGED_TO[target].inc()
    for follower, value in zip(followers(), values, strict=True):
        follower.reported(current, old, value, actor)
    return current, True


#: ``command.state_changed`` in the report's own statement: written only when an endpoint of the
#: tenant subscribes (decided inside the INSERT), so the report stays one round trip either way.
_REPORT_EVENT = outbox_cte(
    "emitted",
    EventType.COMMAND_STATE_CHANGED,
    "SELECT moved.tenant_id, "
    + event_data_sql("moved", "cur.device_ref", "cur.state")
    + " AS data, %(now)s AS created_at FROM moved JOIN cur USING (id)",
)


#: The columns of ``cur`` and ``moved`` in the report statement: enough to rebuild the model,
#: and what the followers' SQL may read of the row.
REPORT_COLUMNS = ("tenant_id", "device_id", "dispatched_at", *PAYLOAD_COLUMNS)
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
) -> tuple[CommandStatus, int, bool, list[Any]]:
    """The whole report as one statement: lock and read the row, move it if the table and
    ``expected_version`` allow, write its history, and run the followers' parts (an
    operation's counters). Returns the command, its old state, whether it moved, and the
    value each follower's part read.

    One round trip and no explicit transaction, instead of six statements built by the
    ORM: this is the path every device takes for every command (docs/performance.md).
    """
    table = CommandStatus._meta.db_table
    columns = ", ".join(f"cs.{c}" for c in REPORT_COLUMNS)
    extra_sets = ", details = %(details)s" if details is not None else ""
    if target == C.QUEUED:  # released: dispatched now, unless it was before (as a set move does)
        extra_sets += ", dispatched_at = COALESCE(cs.dispatched_at, %(now)s)"
    parts = [follower.report_sql(target) for follower in followers()]
    ctes = "".join(f", {part.ctes}" for part in parts if part.ctes)
    values = "".join(f", {part.value}" for part in parts)
    sql = f"""
        WITH cur AS (
            SELECT {columns}, d.device_id AS device_ref
            FROM {table} cs
            JOIN {Device._meta.db_table} d ON d.id = cs.device_id
            WHERE cs.id = %(pk)s
              AND (%(tenant)s::bigint IS NULL OR cs.tenant_id = %(tenant)s)
              AND (%(device)s::bigint IS NULL OR cs.device_id = %(device)s)
            FOR UPDATE OF cs
        ), moved AS (
            UPDATE {table} cs
            SET state = %(target)s, reason = %(reason)s, version = cs.version + 1, updated_on = %(now)s
                {extra_sets}
            FROM cur
            WHERE cs.id = cur.id AND cur.state = ANY(%(sources)s)
              AND (%(expected)s::int IS NULL OR cur.version = %(expected)s)
            RETURNING {columns}
        ), logged AS (
            INSERT INTO {CommandHistory._meta.db_table}
                (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, cur.state, %(target)s, %(reason)s, %(actor)s, %(now)s FROM moved JOIN cur USING (id)
        ), {_REPORT_EVENT}{ctes}
        SELECT cur.*, moved.*{values} FROM cur LEFT JOIN moved USING (id)
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
    width = len(REPORT_COLUMNS)
    before = dict(zip(REPORT_COLUMNS, found[:width], strict=True))
    device_ref = found[width]
    after = found[width + 1 : 2 * width + 1]
    moved = after[0] is not None
    row = dict(zip(REPORT_COLUMNS, after, strict=True)) if moved else dict(before)
    return _row_to_command(row, device_ref), before["state"], moved, list(found[2 * width + 1 :])


def move_commands(
    commands: QuerySet[CommandStatus],
    target: CommandState,
    reason: str,
    actor: str = "system",
    extra: dict[str, Any] | None = None,
) -> list[Moved]:
    """Move every command of ``commands`` (a filtered queryset) that the table allows to
    ``target`` as one set: one UPDATE, one INSERT of history.

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
        ), {_moved_event(table)}
        SELECT operation_id, tenant_id, old_state, was_dispatched, count(*) FROM moved GROUP BY 1, 2, 3, 4
    """
    event_params: list[Any] = [int(target), reason, now, now]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *params, int(target), reason, actor, now, *event_params])
        moved = [Moved(row[0], row[1], int(target), *row[2:]) for row in cursor.fetchall()]
    if moved:
        _CHANGED_TO[target].inc(sum(group.count for group in moved))
    return moved


def _moved_event(table: str) -> str:
    """``command.state_changed`` for each row of a set move, in the move's statement. The
    statement's snapshot shows the rows as they were, so the new state, reason, version and
    time are laid over them (parameters: target, reason, now, now)."""
    devices = Device._meta.db_table
    data = (
        event_data_sql("c", "d.device_id", "m.old_state")
        + f" || jsonb_build_object('state', {label_sql('%s::int', CommandState)}, 'reason', %s::text, "
        + f"'version', c.version + 1, 'updated_on', {ts_sql('%s::timestamptz')})"
    )
    select = (
        f"SELECT m.tenant_id, {data} AS data, %s::timestamptz AS created_at FROM moved m "
        f"JOIN {table} c ON c.id = m.id JOIN {devices} d ON d.id = c.device_id"
    )
    return outbox_cte("emitted", EventType.COMMAND_STATE_CHANGED, select)


def settle(moved: list[Moved], actor: str = "system") -> None:
    """Tell the followers (an operation's counters and state) what a set move moved."""
    for follower in followers():
        follower.moved(moved, actor)


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


def _hand_out_event(device_known: bool) -> str:
    """``command.state_changed`` for each command a poll hands out, in the hand-out's statement
    (parameters: the device's public id, or its key to read it by; the source state; now).
    The inbox knows the public id, so its poll reads nothing of the device table."""
    device_ref = (
        "%s::text" if device_known else f"(SELECT device_id FROM {Device._meta.db_table} WHERE id = %s)"
    )
    return outbox_cte(
        "emitted",
        EventType.COMMAND_STATE_CHANGED,
        "SELECT moved.tenant_id, "
        + event_data_sql("moved", device_ref, "%s::int")
        + " AS data, %s::timestamptz AS created_at FROM moved",
    )


def hand_out(
    device_pk: int, limit: int, actor: str, reason: str, device_ref: str | None = None
) -> list[dict[str, Any]]:
    """Move up to ``limit`` of the device's queued commands to Initiated (:data:`HAND_OUT`)
    and return their rows (``PAYLOAD_COLUMNS``), highest priority first, then oldest.

    One statement: pick with ``FOR UPDATE SKIP LOCKED`` (concurrent polls never hand out a
    row twice), move, count the delivery, write history. It changes no counter of an
    operation, so no follower runs: the inbox's hot path stays one round trip.
    """
    source, target = HAND_OUT
    now = timezone.now()
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    returned = ", ".join(f"cs.{column}" for column in PAYLOAD_COLUMNS)
    sql = f"""
        WITH picked AS (
            SELECT id FROM {table}
            WHERE device_id = %s AND state = %s
            ORDER BY priority DESC, id LIMIT %s
            FOR UPDATE SKIP LOCKED
        ), moved AS (
            UPDATE {table} cs SET state = %s, delivered_at = %s, delivery_count = cs.delivery_count + 1,
                version = cs.version + 1, updated_on = %s
            FROM picked WHERE cs.id = picked.id
            RETURNING {returned}, cs.tenant_id
        ), logged AS (
            INSERT INTO {history} (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, %s, %s, %s, %s, %s FROM moved
        ), {_hand_out_event(device_ref is not None)}
        SELECT {", ".join(PAYLOAD_COLUMNS)} FROM moved
    """
    params: list[Any] = [device_pk, int(source), limit, int(target), now, now]
    params += [int(source), int(target), reason, actor, now]
    params += [device_pk if device_ref is None else device_ref, int(source), now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [dict(zip(PAYLOAD_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    if rows:
        _CHANGED_TO[target].inc(len(rows))
    for row in rows:  # Django leaves jsonb undecoded on raw cursors
        for column in ("arguments", "details"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
    rows.sort(key=lambda row: (-row["priority"], row["id"]))
    return rows
