"""The one writer of a command's state: a device's report, set-based moves, hand-outs.

Every change is decided by the table in ``commands.choices`` and written here, with a
history row in the same statement. What a move means to the floors above (an operation's
counters and state) is theirs: the followers they registered (``commands.followers``) run
in the same statement (a report) or the same transaction (a set move), so the counts stay
exact under any number of concurrent reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import psycopg
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from commands import counting, inbox_cache, push
from commands.choices import HAND_OUT, CommandState, Priority, can_move
from commands.followers import Along, HandOutRule, Moved, Report, followers, gates
from commands.models import CommandHistory, CommandStatus
from commands.payload import PAYLOAD_COLUMNS, event_data_sql
from config.errors import Conflict, DomainError
from config.metrics import COMMAND_STATE_CHANGES
from inventory.events import outbox_cte
from inventory.models import Device, EventType

C = CommandState


#: Runs of a statement on a connection before psycopg prepares it.
PREPARE_THRESHOLD: int | None = 2


def prepared_cursor() -> Any:
    """A cursor that binds parameters on the server, so psycopg prepares a statement once it
    has run ``PREPARE_THRESHOLD`` times on the connection, and PostgreSQL then reuses its
    plan. For the device's two hot statements (the report, the hand-out): on the partitioned
    command tables, with their CTEs, planning cost several times the execution
    (docs/performance.md). The sessions use generic plans for prepared statements
    (``plan_cache_mode``, config/settings.py): these statements' plans do not depend on their
    values, and PostgreSQL would otherwise keep planning them. Django's own cursors bind on the
    client and prepare nothing, so nothing else is affected.
    Wrapped as Django wraps its cursors, so query logging and execute wrappers still see it.
    """
    connection.ensure_connection()
    # Django turns preparing off (it binds on the client, where it cannot apply); it only
    # applies to server-binding cursors, that is to these ones.
    connection.connection.prepare_threshold = PREPARE_THRESHOLD
    raw: Any = psycopg.Cursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


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
    attempt: int | None = None,
    batch: list[Report] | None = None,
) -> tuple[CommandStatus, bool]:
    """A device's (or operator's) PUT. Returns the command and whether it changed.

    ``batch``: the report is one of a batch settled in one transaction
    (``commands.batches``): instead of calling the followers now, its :class:`Report` is
    appended there, and the caller hands them all to :func:`reported_together` at the end.

    Repeating the current state is a no-op (devices retry); a stale ``expected_version``
    is a :class:`~config.errors.Conflict` (409); a move outside the table, or out of a
    finished state, is a :class:`~config.errors.DomainError` (400) naming both.

    ``attempt`` is the attempt the report belongs to (the ``attempt`` the device was handed):
    a report of an earlier attempt than the command's (a late or repeated report, after a
    rollout's retry queued the command again) changes nothing, so it can never use up a
    retry the device has not run; an attempt the command has not reached is 400. Without
    it, a failure repeated while the retry still waits in the queue changes nothing either,
    but once the command is handed out again the server cannot tell a late report from the
    new attempt's (docs/rollouts.md).
    ``tenant_id`` and ``device_pk`` scope the lookup as the API view scopes its queryset (the
    caller's tenant, and a device token's own device): a command outside them is
    ``CommandStatus.DoesNotExist``, answered 404 like one that does not exist.
    """
    pk = command.pk if isinstance(command, CommandStatus) else command
    sources = [int(s) for s in C if can_move(s, target, by_client=True)]
    current, old, moved, along = _report_statement(
        pk, target, sources, reason, details, expected_version, actor, tenant_id, device_pk, attempt
    )
    changed = _reported(current, old, moved, along, target, expected_version, attempt, actor, batch)
    return current, changed


def _reported(
    current: CommandStatus,
    old: int,
    moved: bool,
    along: dict[str, dict[str, Any] | None],
    target: CommandState,
    expected_version: int | None,
    attempt: int | None,
    actor: str,
    batch: list[Report] | None,
) -> bool:
    """What a report's statement came to: whether the command changed (then its followers are
    told, or its :class:`Report` added to ``batch``), or the refusal, raised."""
    if not moved:
        if attempt is not None and attempt < current.attempt:
            return False  # a report of an attempt that is over: it changes nothing
        if attempt is not None and attempt > current.attempt:
            raise DomainError(
                {"attempt": [f"is {attempt} but the command is at attempt {current.attempt}"]},
                code="unknown_attempt",
            )
        if old == target:
            return False
        if attempt is None and old == C.QUEUED and current.attempt > 1 and target in RETRIED_FAILURES:
            # The failure that queued it again, repeated (or arriving late): already counted.
            return False
        if expected_version is not None and expected_version != current.version:
            raise Conflict(
                {
                    "expected_version": [
                        f"is {expected_version} but the command is at version {current.version} "
                        f"in state '{C(old).label}'"
                    ],
                    "state": [C(old).label],
                    "version": [str(current.version)],
                },
                code="stale_version",
            )
        raise DomainError(
            {"state": [f"cannot move from '{C(old).label}' to '{target.label}'"]}, code="invalid_transition"
        )
    _CHANGED_TO[C(current.state)].inc()
    if current.state == C.QUEUED and target != C.QUEUED:  # a retry: the device polls for it again
        # After commit: a report settled in a batch's transaction (``commands.batches``) must
        # not let a poll cache "nothing new" before its row is visible (at once in autocommit).
        transaction.on_commit(functools.partial(inbox_cache.forget_device, current.device_id))
    done = Report(current, old, actor, along)
    if batch is not None:
        batch.append(done)
        return True
    for follower in followers():
        follower.reported(done)
    return True


def reported_together(reports: list[Report]) -> None:
    """Tell the followers what a batch of reports did (in the batch's transaction), once for
    the batch: an operation that many reports of the batch touched moves on once."""
    if reports:
        for follower in followers():
            follower.reported_together(reports)


#: The columns of ``cur`` and ``moved`` in the report statement: enough to rebuild the model,
#: and what the followers' SQL may read of the row.
REPORT_COLUMNS = (
    "tenant_id",
    "device_id",
    "dispatched_at",
    "max_attempts_on_failure",
    "max_attempts_on_timeout",
    "progress_timeout",
    *PAYLOAD_COLUMNS,
)
#: Failures a rollout's ``retries`` may answer by queueing the command again.
RETRIED_FAILURES = frozenset({C.FAILURE, C.TIMEOUT})
#: States in which the device has the command and works on it: where the in-progress timeout runs.
WORKING_STATES = (int(C.ACKNOWLEDGED), int(C.IN_PROGRESS))


def retry_sql(target: CommandState, old: str, row: str) -> str:
    """When a move to ``target`` queues the command again instead (a rollout's retries):
    a failure with attempts left, a TimeOut only if the device had the command. ``old`` is
    the alias of the row before the move, ``row`` of the row being updated."""
    if target == C.FAILURE:
        return f"({row}.attempt < {row}.max_attempts_on_failure)"
    if target == C.TIMEOUT:
        working = ", ".join(str(state) for state in WORKING_STATES)
        return f"({old}.state IN ({working}) AND {row}.attempt < {row}.max_attempts_on_timeout)"
    return "false"


def moved_sets(
    target: CommandState, old: str, row: str, reason: str, retry: bool = True, now: str = "%(now)s"
) -> list[str]:
    """The SET items of a move to ``target``: its state and reason, and, for a failure the
    row's retry budget allows (``retry``), a move back to the queue instead (attempt one
    higher, delivery forgotten, the reason saying why); acknowledging starts the in-progress
    clock. ``old`` is the alias of the row before the move, ``row`` of the row being
    updated, ``reason`` the SQL of the move's reason."""
    working = ", ".join(str(state) for state in WORKING_STATES)
    if not retry or target not in RETRIED_FAILURES:
        sets = [f"state = {int(target)}", f"reason = {reason}"]
        if int(target) in WORKING_STATES:
            sets.append(
                f"progress_deadline = CASE WHEN {row}.progress_timeout IS NOT NULL "
                f"AND {old}.state NOT IN ({working}) "
                f"THEN {now} + {row}.progress_timeout * interval '1 second' ELSE {row}.progress_deadline END"
            )
        return sets
    again = retry_sql(target, old, row)
    budget = f"{row}.max_attempts_on_failure" if target == C.FAILURE else f"{row}.max_attempts_on_timeout"
    why = (
        f"'retry: attempt ' || ({row}.attempt + 1) || ' of ' || {budget} || ' after {C(target).label}'"
        f" || CASE WHEN {reason} <> '' THEN ': ' || {reason} ELSE '' END"
    )
    return [
        f"state = CASE WHEN {again} THEN {int(C.QUEUED)} ELSE {int(target)} END",
        f"attempt = {row}.attempt + ({again})::int",
        f"reason = CASE WHEN {again} THEN {why} ELSE {reason} END",
        f"delivered_at = CASE WHEN {again} THEN NULL ELSE {row}.delivered_at END",
        f"delivery_count = CASE WHEN {again} THEN 0 ELSE {row}.delivery_count END",
        f"progress_deadline = CASE WHEN {again} THEN NULL ELSE {row}.progress_deadline END",
    ]


#: ``command.state_changed`` in the report's own statement: written only when an endpoint of the
#: tenant subscribes (decided inside the INSERT), so the report stays one round trip either way.
_REPORT_EVENT = outbox_cte(
    "emitted",
    EventType.COMMAND_STATE_CHANGED,
    "SELECT moved.tenant_id, "
    + event_data_sql("moved", "cur.device_ref", "cur.state")
    + " AS data, %(now)s AS created_at FROM moved JOIN cur USING (id)",
)
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


def _along_sql(target: CommandState, along: tuple[Along, ...]) -> tuple[str, str]:
    """The followers' rows of the report statement (``commands.followers.Along``): their CTEs
    (each after a comma) and the expression that returns them, one JSON object by name.

    A counted row moves by the one counter rule (``commands.counting.report_sets``) and only
    when the move reached ``target`` (``moved.state``): a failure that the command's retry
    budget sends back to the queue counts nothing, only a command's final outcome does.
    """
    ctes: list[str] = []
    names: list[str] = []
    sets = counting.report_sets(target, "t", "cur")
    for part in along:
        matched = " AND ".join(f"t.{column} = cur.{ours}" for column, ours in part.keys)
        if not part.counts:
            columns = ", ".join(f"t.{column}" for column in part.columns)
            ctes.append(f"{part.name} AS (SELECT {columns} FROM {part.table} t JOIN cur ON {matched})")
        elif sets:
            touched = f", {part.touch} = %(now)s" if part.touch else ""
            returned = ", ".join(
                f"t.{name}" for name in (*(column for column, _ in part.keys), *counting.COUNTERS)
            )
            ctes.append(
                f"{part.name} AS (UPDATE {part.table} t SET {', '.join(sets)}{touched} "
                f"FROM moved JOIN cur USING (id) WHERE {matched} AND moved.state = {int(target)} "
                f"RETURNING {returned})"
            )
        else:
            continue
        names.append(part.name)
    if not names:
        return "", ""
    pairs = ", ".join(f"'{name}', (SELECT row_to_json({name}) FROM {name})" for name in names)
    return "".join(f", {cte}" for cte in ctes), f", json_build_object({pairs}) AS along"


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
    attempt: int | None,
) -> tuple[CommandStatus, int, bool, dict[str, dict[str, Any] | None]]:
    """The whole report as one statement: lock and read the row, move it if the table and
    ``expected_version`` allow, write its history, and read and count the followers' rows
    along (an operation's counters). Returns the command, its old state, whether it moved,
    and the followers' rows by name.

    One round trip and no explicit transaction, instead of six statements built by the
    ORM: this is the path every device takes for every command (docs/performance.md).
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
        "attempt": attempt,
        "actor": actor,
        "details": _DETAILS.get_db_prep_save(details, connection) if details is not None else None,
    }
    along = tuple(part for follower in followers() for part in follower.report_along())
    with prepared_cursor() as cursor:
        notify = target in NOTIFYING_TARGETS and push.enabled()
        statement = _report_sql(target, details is not None, along, notify)
        cursor.execute(statement.sql, params)
        found = cursor.fetchone()
    if found is None:
        raise CommandStatus.DoesNotExist(f"no command status {pk}")
    width = len(REPORT_COLUMNS)
    before = dict(zip(REPORT_COLUMNS, found[:width], strict=True))
    device_ref = found[width]
    after = found[width + 1 : 2 * width + 1]
    moved = after[0] is not None
    row = dict(zip(REPORT_COLUMNS, after, strict=True)) if moved else dict(before)
    rows: dict[str, dict[str, Any] | None] = {}
    if statement.returns_along:
        raw = found[-1]
        rows = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return _row_to_command(row, device_ref), before["state"], moved, rows


class ReportInput(NamedTuple):
    """One report of a batch (:func:`report_many`): :func:`report`'s arguments."""

    pk: int
    target: CommandState
    reason: str = ""
    details: Any = None
    expected_version: int | None = None
    actor: str = ""
    tenant_id: int | None = None
    device_pk: int | None = None
    attempt: int | None = None


#: What :func:`report_many` answers for each report: the command and whether it changed, or the
#: refusal :func:`report` would have raised (``DomainError``, ``Conflict``, ``DoesNotExist``).
ReportResult = tuple[CommandStatus, bool] | Exception


def report_many(items: list[ReportInput], batch: list[Report]) -> list[ReportResult]:
    """Many reports in as few statements as possible: one for all of them, when no command
    appears twice; otherwise one per round, the n-th report of each command in the n-th, so
    that two reports of one command apply in the order given. Call inside a transaction; the
    followers are told through ``batch`` (:func:`reported_together`), as :func:`report` with
    ``batch`` does.

    Each report is judged exactly as :func:`report` judges it (the same moves, retries,
    repeats, ``expected_version`` and ``attempt`` rules, history, events, notifies), and the
    counters of each operation and wave move once per statement by the sum of its reports'
    deltas (``commands.counting.report_terms``). The followers' rows counted along are the
    counters as the statement left them, the same for every report of it.
    """
    results: list[ReportResult | None] = [None] * len(items)
    seen: dict[int, int] = {}
    rounds: list[list[int]] = []
    for index, item in enumerate(items):
        occurrence = seen.get(item.pk, 0)
        seen[item.pk] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(index)
    for indexes in rounds:
        found = _report_round([items[index] for index in indexes])
        for position, index in enumerate(indexes):
            item = items[index]
            row = found.get(position)
            if row is None:
                results[index] = CommandStatus.DoesNotExist(f"no command status {item.pk}")
                continue
            current, old, moved, along = row
            try:
                changed = _reported(
                    current,
                    old,
                    moved,
                    along,
                    item.target,
                    item.expected_version,
                    item.attempt,
                    item.actor,
                    batch,
                )
            except (DomainError, Conflict) as refused:
                results[index] = refused
                continue
            results[index] = (current, changed)
    return [result for result in results if result is not None]


def _report_round(items: list[ReportInput]) -> dict[int, tuple[CommandStatus, int, bool, dict[str, Any]]]:
    """One statement for reports of distinct commands; each found one's command, old state,
    whether it moved and its followers' rows, by its position in ``items``."""
    targets = tuple(sorted({item.target for item in items}))
    along = tuple(part for follower in followers() for part in follower.report_along())
    notify = push.enabled() and any(target in NOTIFYING_TARGETS for target in targets)
    sql, returns_along = _report_many_sql(targets, along, notify)
    params = {
        "ord": list(range(len(items))),
        "pk": [item.pk for item in items],
        "target": [int(item.target) for item in items],
        "reason": [item.reason for item in items],
        "details": [json.dumps(item.details) if item.details is not None else None for item in items],
        "has_details": [item.details is not None for item in items],
        "expected": [item.expected_version for item in items],
        "attempt": [item.attempt for item in items],
        "tenant": [item.tenant_id for item in items],
        "device": [item.device_pk for item in items],
        "actor": [item.actor for item in items],
        "now": timezone.now(),
    }
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    width = len(REPORT_COLUMNS)
    found: dict[int, tuple[CommandStatus, int, bool, dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda row: row[0]):
        position, old, moved = row[0], row[1], row[2]
        values = dict(zip(REPORT_COLUMNS, row[3 : width + 3], strict=True))
        device_ref = row[width + 3]
        rows_along: dict[str, Any] = {}
        if returns_along:
            raw = row[-1]
            rows_along = json.loads(raw) if isinstance(raw, str | bytes) else raw
        found[position] = (_row_to_command(values, device_ref), old, moved, rows_along)
    return found


@functools.lru_cache(maxsize=256)
def _report_many_sql(
    targets: tuple[CommandState, ...], along: tuple[Along, ...], notify: bool
) -> tuple[str, bool]:
    """:func:`_report_sql` for many rows at once, each with its own target (``cur.i_target``):
    each SET item a CASE over the targets of the statement; made once per set of targets."""
    table = CommandStatus._meta.db_table
    columns = ", ".join(f"cs.{c}" for c in REPORT_COLUMNS)
    cases: dict[str, list[str]] = {}
    for target in targets:
        items = moved_sets(target, "cur", "cs", "cur.i_reason")
        if target == C.QUEUED:
            items.append("dispatched_at = COALESCE(cs.dispatched_at, %(now)s)")
        for item in items:
            column, expression = item.split(" = ", 1)
            cases.setdefault(column, []).append(f"WHEN {int(target)} THEN {expression}")
    sets = [
        f"{column} = CASE cur.i_target {' '.join(whens)} ELSE cs.{column} END"
        for column, whens in cases.items()
    ]
    sets += [
        "details = CASE WHEN cur.i_has_details THEN cur.i_details::jsonb ELSE cs.details END",
        "version = cs.version + 1",
        "updated_on = %(now)s",
    ]
    allowed = []
    for target in targets:
        sources = [int(state) for state in C if can_move(state, target, by_client=True)]
        if sources:
            allowed.append(
                f"(cur.i_target = {int(target)} AND cur.state IN ({', '.join(map(str, sources))}))"
            )
    duplicate = ""
    retried = [int(target) for target in targets if target in RETRIED_FAILURES]
    if retried:  # the failure that queued it again, repeated: not a new one (as _report_sql)
        duplicate = (
            f"AND NOT (cur.i_target IN ({', '.join(map(str, retried))}) AND cur.i_attempt IS NULL "
            f"AND cur.state = {int(C.QUEUED)} AND cur.attempt > 1)"
        )
    ctes, returned = _along_many_sql(targets, along)
    if notify:
        queued = f"SELECT device_id AS device_pk, tenant_id FROM moved WHERE moved.state = {int(C.QUEUED)}"
        ctes += f", notified AS ({push.upsert_sql(queued)})"
    # The row as it is now (moved, or as it was): one set of columns to read back, not both.
    as_now = ", ".join(f"CASE WHEN moved.id IS NULL THEN cur.{c} ELSE moved.{c} END" for c in REPORT_COLUMNS)
    sql = f"""
        WITH i AS (
            SELECT * FROM unnest(
                %(ord)s::int[], %(pk)s::bigint[], %(target)s::int[], %(reason)s::text[], %(details)s::text[],
                %(has_details)s::bool[], %(expected)s::int[], %(attempt)s::int[], %(tenant)s::bigint[],
                %(device)s::bigint[], %(actor)s::text[]
            ) AS i(ord, pk, target, reason, details, has_details, expected, attempt, tenant, device, actor)
        ), cur AS (
            SELECT {columns}, d.device_id AS device_ref, i.ord AS i_ord, i.target AS i_target,
                i.reason AS i_reason, i.details AS i_details, i.has_details AS i_has_details,
                i.expected AS i_expected, i.attempt AS i_attempt, i.actor AS i_actor
            FROM i
            JOIN {table} cs ON cs.id = i.pk
                AND (i.tenant IS NULL OR cs.tenant_id = i.tenant)
                AND (i.device IS NULL OR cs.device_id = i.device)
            JOIN {Device._meta.db_table} d ON d.id = cs.device_id
            ORDER BY cs.id
            FOR UPDATE OF cs
        ), moved AS (
            UPDATE {table} cs SET {", ".join(sets)}
            FROM cur
            WHERE cs.id = cur.id AND ({" OR ".join(allowed) or "false"})
              AND (cur.i_expected IS NULL OR cur.version = cur.i_expected)
              AND (cur.i_attempt IS NULL OR cur.attempt = cur.i_attempt)
              {duplicate}
            RETURNING {columns}
        ), logged AS (
            INSERT INTO {CommandHistory._meta.db_table}
                (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, cur.state, moved.state, moved.reason, cur.i_actor, %(now)s
            FROM moved JOIN cur USING (id)
        ), {_REPORT_EVENT}{ctes}
        SELECT cur.i_ord, cur.state, moved.id IS NOT NULL, {as_now}, cur.device_ref{returned}
        FROM cur LEFT JOIN moved ON moved.id = cur.id
    """
    return sql, bool(returned)


def _along_many_sql(targets: tuple[CommandState, ...], along: tuple[Along, ...]) -> tuple[str, str]:
    """:func:`_along_sql` for a statement of many reports: a followers' row is read once per
    owner, and a counted one moves once by the sum of the deltas of the reports that reached
    their target; each report gets the rows of its owners (a counted one only if its own move
    counted)."""
    ctes: list[str] = []
    pairs: list[str] = []
    deltas: dict[str, list[str]] = {}
    for target in targets:
        for name, terms in counting.report_terms(target, "cur").items():
            deltas.setdefault(name, []).append(f"WHEN {int(target)} THEN {terms}")
    for part in along:
        ours = ", ".join(f"cur.{column}" for _, column in part.keys)
        mine = " AND ".join(f"a.{column} = cur.{own}" for column, own in part.keys)
        if not part.counts:
            shown = ", ".join(f"a.{column}" for column in part.columns)
            key_columns = ", ".join(f"t.{column}" for column, _ in part.keys)
            read = ", ".join(f"t.{column}" for column in part.columns if column not in dict(part.keys))
            ctes.append(
                f"{part.name} AS (SELECT {key_columns}{', ' + read if read else ''} FROM {part.table} t "
                f"WHERE ({key_columns}) IN (SELECT {ours} FROM cur))"
            )
            read_back = f"SELECT row_to_json(x) FROM (SELECT {shown} FROM {part.name} a WHERE {mine}) x"
            pairs.append(f"'{part.name}', ({read_back})")
            continue
        if not deltas:
            continue
        grouped = ", ".join(f"cur.{own} AS k{number}" for number, (_, own) in enumerate(part.keys))
        group_by = ", ".join(f"k{number}" for number in range(len(part.keys)))
        sums = ", ".join(
            f"sum(CASE cur.i_target {' '.join(whens)} ELSE 0 END) AS {name}" for name, whens in deltas.items()
        )
        matched = " AND ".join(f"t.{column} = g.k{number}" for number, (column, _) in enumerate(part.keys))
        touched = f", {part.touch} = %(now)s" if part.touch else ""
        returned = ", ".join(
            f"t.{name}" for name in (*(column for column, _ in part.keys), *counting.COUNTERS)
        )
        ctes.append(
            f"{part.name} AS (UPDATE {part.table} t SET "
            + ", ".join(f"{name} = t.{name} + g.{name}" for name in deltas)
            + f"{touched} FROM (SELECT {grouped}, {sums} FROM moved JOIN cur USING (id) "
            f"WHERE moved.state = cur.i_target GROUP BY {group_by}) g WHERE {matched} RETURNING {returned})"
        )
        shown = ", ".join(f"a.{name}" for name in (*(column for column, _ in part.keys), *counting.COUNTERS))
        pairs.append(
            f"'{part.name}', CASE WHEN moved.state = cur.i_target THEN "
            f"(SELECT row_to_json(x) FROM (SELECT {shown} FROM {part.name} a WHERE {mine}) x) END"
        )
    if not pairs:
        return "".join(f", {cte}" for cte in ctes), ""
    return "".join(f", {cte}" for cte in ctes), f", json_build_object({', '.join(pairs)}) AS along"


class _ReportStatement(NamedTuple):
    """The report's SQL, and whether its last column is the followers' rows (``along``): known
    with the text, so the hot path never builds the cursor's description (46 column objects,
    about 0.1 ms a report)."""

    sql: str
    returns_along: bool


#: Report targets that may leave the command Queued (a retry, a release): its device then
#: hears a notify (``commands.push``), written in the report's statement.
NOTIFYING_TARGETS = frozenset({*RETRIED_FAILURES, C.QUEUED})


@functools.lru_cache(maxsize=256)
def _report_sql(
    target: CommandState, with_details: bool, along: tuple[Along, ...], notify: bool = False
) -> _ReportStatement:
    """The report statement for a move to ``target``: made once per target (and followers),
    so the prepared statement is the same text every time. ``notify``: write the device's
    push outbox row when the move leaves the command Queued."""
    table = CommandStatus._meta.db_table
    columns = ", ".join(f"cs.{c}" for c in REPORT_COLUMNS)
    extra_sets = ", details = %(details)s" if with_details else ""
    if target == C.QUEUED:  # released: dispatched now, unless it was before (as a set move does)
        extra_sets += ", dispatched_at = COALESCE(cs.dispatched_at, %(now)s)"
    duplicate = ""
    if target in RETRIED_FAILURES:  # the failure that queued it again, repeated: not a new one
        # Only without an attempt named: a report naming the current attempt is that attempt's.
        duplicate = f"AND NOT (%(attempt)s::int IS NULL AND cur.state = {int(C.QUEUED)} AND cur.attempt > 1)"
    ctes, returned = _along_sql(target, along)
    if notify:
        queued = f"SELECT device_id AS device_pk, tenant_id FROM moved WHERE moved.state = {int(C.QUEUED)}"
        ctes += f", notified AS ({push.upsert_sql(queued)})"
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
            SET {", ".join(moved_sets(target, "cur", "cs", "%(reason)s"))},
                version = cs.version + 1, updated_on = %(now)s {extra_sets}
            FROM cur
            WHERE cs.id = cur.id AND cur.state = ANY(%(sources)s)
              AND (%(expected)s::int IS NULL OR cur.version = %(expected)s)
              AND (%(attempt)s::int IS NULL OR cur.attempt = %(attempt)s)
              {duplicate}
            RETURNING {columns}
        ), logged AS (
            INSERT INTO {CommandHistory._meta.db_table}
                (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, cur.state, moved.state, moved.reason, %(actor)s, %(now)s FROM moved JOIN cur USING (id)
        ), {_REPORT_EVENT}{ctes}
        SELECT cur.*, moved.*{returned} FROM cur LEFT JOIN moved USING (id)
    """
    return _ReportStatement(sql, bool(returned))


def move_commands(
    commands: QuerySet[CommandStatus],
    target: CommandState,
    reason: str,
    actor: str = "system",
    extra: dict[str, Any] | None = None,
    retry: bool = False,
) -> list[Moved]:
    """Move every command of ``commands`` (a filtered queryset) that the table allows to
    ``target`` as one set: one UPDATE, one INSERT of history.

    ``retry``: a failure the row's retry budget allows queues the command again instead (a
    rollout's retries; the in-progress timeout sweep asks for it). Rows locked by a
    concurrent mover are skipped, never moved twice. Call inside a transaction; the caller
    then calls :func:`settle` with the result.
    """
    sources = [int(s) for s in C if can_move(s, target)]
    now = timezone.now()
    candidates = commands.filter(state__in=sources)
    return _move_statement(candidates, target, reason, actor, now, extra or {}, retry)


def _move_statement(
    candidates: QuerySet[CommandStatus],
    target: CommandState,
    reason: str,
    actor: str,
    now: dt.datetime,
    extra: dict[str, Any],
    retry: bool,
) -> list[Moved]:
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    select_sql, select_params = (
        candidates.order_by()
        .values("id", "state", "dispatched_at")
        .select_for_update(skip_locked=True, of=("self",))
        .query
    ).sql_with_params()
    sets = [*moved_sets(target, "old", "cs", "p.reason", retry, now="p.now")]
    sets += ["version = cs.version + 1", "updated_on = p.now"]
    params: list[Any] = []
    if target == C.QUEUED:
        sets.append("dispatched_at = COALESCE(cs.dispatched_at, p.now)")
    for column, value in extra.items():
        sets.append(f"{column} = %s")
        params.append(value)
    returned = ", ".join(f"cs.{column}" for column in PAYLOAD_COLUMNS)
    notified = ""
    if (target == C.QUEUED or (retry and target in RETRIED_FAILURES)) and push.enabled():
        # Back in the queue (a window opening, redelivery, a retry): the devices hear a notify.
        queued = f"SELECT device_pk, tenant_id FROM moved WHERE state = {int(C.QUEUED)}"
        notified = f", notified AS ({push.upsert_sql(queued)})"
    sql = f"""
        WITH p AS (SELECT %s::text AS reason, %s::timestamptz AS now),
        old AS ({select_sql}),
        moved AS (
            UPDATE {table} cs SET {", ".join(sets)}
            FROM old, p WHERE cs.id = old.id
            RETURNING {returned}, cs.tenant_id, cs.device_id AS device_pk,
                      old.state AS old_state, old.dispatched_at IS NOT NULL AS was_dispatched
        ),
        logged AS (
            INSERT INTO {history} (command_id, from_state, to_state, reason, actor, created_at)
            SELECT moved.id, moved.old_state, moved.state, moved.reason, %s, p.now FROM moved, p
        ), {_MOVED_EVENT}{notified}
        SELECT operation_id, tenant_id, state AS new_state, old_state, was_dispatched, count(*) AS count, wave
        FROM moved GROUP BY operation_id, tenant_id, state, old_state, was_dispatched, wave
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [reason, now, *select_params, *params, actor])
        names = [column.name for column in cursor.description]
        moved = [Moved(**dict(zip(names, row, strict=True))) for row in cursor.fetchall()]
    for group in moved:
        _CHANGED_TO[C(group.new_state)].inc(group.count)
    return moved


#: ``command.state_changed`` for each row of a set move, in the move's statement, from the
#: rows as the move left them.
_MOVED_EVENT = outbox_cte(
    "emitted",
    EventType.COMMAND_STATE_CHANGED,
    "SELECT m.tenant_id, "
    + event_data_sql("m", "d.device_id", "m.old_state")
    + f" AS data, p.now AS created_at FROM moved m JOIN {Device._meta.db_table} d ON d.id = m.device_pk, p",
)


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
    retry: bool = False,
) -> int:
    """:func:`move_commands` and :func:`settle` in one transaction; returns how many moved."""
    with transaction.atomic():
        moved = move_commands(commands, target, reason, actor, extra, retry)
        settle(moved, actor)
        if after is not None:
            after(moved)
        if any(group.new_state == C.QUEUED for group in moved):
            for tenant_id in {group.tenant_id for group in moved if group.new_state == C.QUEUED}:
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
    push.notify_devices([(tenant_id, device_pk)])
    transaction.on_commit(lambda: inbox_cache.forget_device(device_pk))
    return status_row


class HandedOut(NamedTuple):
    """A poll's hand-out: the rows (``PAYLOAD_COLUMNS``) and whether a gate held back some of
    the device's queued commands for a while (then "nothing new" must not be cached)."""

    rows: list[dict[str, Any]]
    held: bool


@functools.cache
def _hand_out_event(device_ref: str, previous: str) -> str:
    """``command.state_changed`` for each row of ``moved`` (``PAYLOAD_COLUMNS`` and
    ``event_tenant_id``), moved from ``previous`` (SQL), at ``%(now)s``. Made once per pair:
    every poll that runs the hand-out needs it."""
    return outbox_cte(
        "emitted",
        EventType.COMMAND_STATE_CHANGED,
        "SELECT moved.event_tenant_id AS tenant_id, "
        + event_data_sql("moved", device_ref, previous)
        + " AS data, %(now)s AS created_at FROM moved",
    )


class _GateSql(NamedTuple):
    """A gate's rule (``commands.followers.HandOutRule``) as parts of the hand-out statement."""

    joins: str
    condition: str
    columns: tuple[tuple[str, str], ...]
    held: str | None
    params: dict[str, Any]


def _gate_sql(alias: str, rule: HandOutRule) -> _GateSql:
    """The SQL of one gate's rule over ``cs`` (the command rows), its owner row as ``alias``:
    a command of an owner in a holding state, or past its owner's wave frontier, or of an
    owner held back for now (its rate spent), is not picked."""
    states = f"{alias}_holding"
    params: dict[str, Any] = {states: list(rule.holding_states)}
    open_now = f"{alias}.{rule.state_column} <> ALL(%({states})s::smallint[])"
    if rule.frontier_column:
        open_now += f" AND cs.wave <= {alias}.{rule.frontier_column}"
    condition = f"cs.operation_id IS NULL OR ({open_now})"
    held = None
    if rule.held_back:
        back = f"{alias}_held_back"
        params[back] = list(rule.held_back)
        condition = f"cs.operation_id IS NULL OR ({open_now} AND cs.operation_id <> ALL(%({back})s::uuid[]))"
        held = f"cs.operation_id = ANY(%({back})s::uuid[]) AND {open_now}"
    columns = ((f"{alias}.{rule.rate_column}", "rate"),) if rule.rate_column else ()
    return _GateSql(
        joins=f"LEFT JOIN {rule.table} {alias} ON {alias}.{rule.key} = cs.operation_id",
        condition=condition,
        columns=columns,
        held=held,
        params=params,
    )


class HandOutAsk(NamedTuple):
    """One device asking for its commands (:func:`hand_out_many`): its key, who asks (the
    history's actor) and its public id when the caller has it (else it is read)."""

    device_pk: int
    actor: str
    device_ref: str | None = None


def _hand_out_gates() -> tuple[list[_GateSql], str, str, list[tuple[str, str]], str, str]:
    """The gates' parts of a hand-out statement (:func:`hand_out`, :func:`hand_out_many`): their
    rules' SQL, joins and condition, the extra columns they read (a rate), those columns as
    the pick returns them, and the moved row's payload columns with them."""
    rules = [gate.hand_out_rule() for gate in gates()]
    parts = [_gate_sql(f"g{number}", rule) for number, rule in enumerate(rules)]
    joins = " ".join(part.joins for part in parts)
    condition = " AND ".join(f"({part.condition})" for part in parts) or "true"
    extra = [column for part in parts for column in part.columns]
    picked_columns = "".join(f", {expression} AS {name}" for expression, name in extra)
    returned = ", ".join(f"cs.{column}" for column in PAYLOAD_COLUMNS)
    returned += "".join(f", picked.{name}" for _expression, name in extra)
    return parts, joins, condition, extra, picked_columns, returned


#: The device's public id, read by its key, for hand-outs whose caller did not give it.
_DEVICE_REF = f"(SELECT device_id FROM {Device._meta.db_table} WHERE id = %(device)s)"


def hand_out(
    device_pk: int,
    limit: int,
    actor: str,
    reason: str,
    device_ref: str | None = None,
) -> HandedOut:
    """Move up to ``limit`` of the device's queued commands to Initiated (:data:`HAND_OUT`)
    and return their rows, highest priority first, then oldest. An HTTP poll's hand-out.

    One statement: pick with ``FOR UPDATE SKIP LOCKED`` (concurrent polls never hand out a
    row twice) among the rows the gates let through (``commands.followers.HandOutGate``: an
    operation paused or stopped, a wave not open), move, count the delivery, write history.
    It changes no counter of an operation, so no follower runs. A gate may then hold back
    rows it admitted in SQL (a rate spent meanwhile by another process): those go back to
    the queue at once, with their history.

    Its own statement, not :func:`hand_out_many`'s for one device: that one's ``unnest`` and
    ``LATERAL`` made one device's hand-out four times slower (2.30 against 0.58 ms a poll, in
    process on the benchmark box), and this is every poll's path.
    """
    source, target = HAND_OUT
    now = timezone.now()
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    parts, joins, condition, extra, picked_columns, returned = _hand_out_gates()
    returned += ", cs.tenant_id AS event_tenant_id"
    held = " OR ".join(f"({part.held})" for part in parts if part.held)
    params: dict[str, Any] = {
        "device": device_pk,
        "source": int(source),
        "target": int(target),
        "limit": limit,
        "now": now,
        "reason": reason,
        "actor": actor,
        "device_ref": device_ref,
    }
    # The inbox gives the device's public id, so its poll reads nothing of the device table.
    device = "%(device_ref)s::text" if device_ref is not None else _DEVICE_REF
    event = f", {_hand_out_event(device, '%(source)s')}"
    for part in parts:
        params.update(part.params)
    result = "SELECT * FROM moved"
    if held:
        result = f"""SELECT moved.*, h.held FROM (
            SELECT EXISTS (
                SELECT 1 FROM {table} cs {joins}
                WHERE cs.device_id = %(device)s AND cs.state = %(source)s AND ({held})
            ) AS held
        ) h LEFT JOIN moved ON true"""
    sql = f"""
        WITH picked AS (
            SELECT cs.id{picked_columns} FROM {table} cs {joins}
            WHERE cs.device_id = %(device)s AND cs.state = %(source)s AND {condition}
            ORDER BY cs.priority DESC, cs.id LIMIT %(limit)s
            FOR UPDATE OF cs SKIP LOCKED
        ), moved AS (
            UPDATE {table} cs SET state = %(target)s, delivered_at = %(now)s,
                delivery_count = cs.delivery_count + 1, version = cs.version + 1, updated_on = %(now)s
            FROM picked WHERE cs.id = picked.id
            RETURNING {returned}
        ), logged AS (
            INSERT INTO {history} (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, %(source)s, %(target)s, %(reason)s, %(actor)s, %(now)s FROM moved
        ){event}
        {result}
    """
    names = [*PAYLOAD_COLUMNS, *(name for _expression, name in extra), "event_tenant_id"]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    was_held = bool(held) and bool(found) and bool(found[0][-1])
    width = len(names)
    rows = [dict(zip(names, row[:width], strict=True)) for row in found if row[0] is not None]
    for gate in gates():
        back = gate.admit(rows) if rows else set()
        if back:
            _put_back(sorted(back), actor)
            rows = [row for row in rows if row["id"] not in back]
            was_held = True
    if rows:
        _CHANGED_TO[target].inc(len(rows))
    for row in rows:  # Django leaves jsonb undecoded on raw cursors
        for column in ("arguments", "details"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
        for _expression, name in extra:
            row.pop(name, None)
        row.pop("event_tenant_id", None)
    rows.sort(key=lambda row: (-row["priority"], row["id"]))
    return HandedOut(rows, was_held)


def hand_out_many(asks: list[HandOutAsk], limit: int, reason: str) -> list[HandedOut]:
    """Each device's hand-out (up to ``limit`` of its queued commands moved to Initiated), in
    the order of ``asks``, each device at most once.

    One statement for all of them (a batch of the MQTT bridge's ``inbox/get``:
    ``commands.batches``; one device's poll has :func:`hand_out`): for each device, pick with
    ``FOR UPDATE SKIP LOCKED`` (concurrent polls never hand out a row twice) among the rows the
    gates let through (``commands.followers.HandOutGate``: an operation paused or stopped, a
    wave not open), move, count the delivery, write history and events. It changes no counter of an
    operation, so no follower runs. A gate may then hold back rows it admitted in SQL (a rate
    spent meanwhile by another process): those go back to the queue at once, with their
    history.
    """
    if len({ask.device_pk for ask in asks}) != len(asks):
        raise ValueError("a device may ask once per hand-out statement")
    source, target = HAND_OUT
    now = timezone.now()
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    parts, joins, condition, extra, picked_columns, returned = _hand_out_gates()
    returned += ", cs.tenant_id AS event_tenant_id, cs.device_id AS a_device, picked.a_actor, picked.a_ref"
    held_rule = " OR ".join(f"({part.held})" for part in parts if part.held)
    params: dict[str, Any] = {
        "devices": [ask.device_pk for ask in asks],
        "actors": [ask.actor for ask in asks],
        "refs": [ask.device_ref for ask in asks],
        "source": int(source),
        "target": int(target),
        "limit": limit,
        "now": now,
        "reason": reason,
    }
    for part in parts:
        params.update(part.params)
    held = "false"
    if held_rule:
        held = f"""EXISTS (
            SELECT 1 FROM {table} cs {joins}
            WHERE cs.device_id = a.device AND cs.state = %(source)s AND ({held_rule})
        )"""
    # The inbox gives the device's public id, so its poll reads nothing of the device table.
    device_ref = "a.ref"
    if any(ask.device_ref is None for ask in asks):
        found_ref = f"(SELECT d.device_id FROM {Device._meta.db_table} d WHERE d.id = a.device)"
        device_ref = f"COALESCE(a.ref, {found_ref})"
    sql = f"""
        WITH a AS (
            SELECT * FROM unnest(%(devices)s::bigint[], %(actors)s::text[], %(refs)s::text[])
                AS a(device, actor, ref)
        ), picked AS (
            SELECT p.*, a.actor AS a_actor, {device_ref} AS a_ref FROM a CROSS JOIN LATERAL (
                SELECT cs.id{picked_columns} FROM {table} cs {joins}
                WHERE cs.device_id = a.device AND cs.state = %(source)s AND {condition}
                ORDER BY cs.priority DESC, cs.id LIMIT %(limit)s
                FOR UPDATE OF cs SKIP LOCKED
            ) p
        ), moved AS (
            UPDATE {table} cs SET state = %(target)s, delivered_at = %(now)s,
                delivery_count = cs.delivery_count + 1, version = cs.version + 1, updated_on = %(now)s
            FROM picked WHERE cs.id = picked.id
            RETURNING {returned}
        ), logged AS (
            INSERT INTO {history} (command_id, from_state, to_state, reason, actor, created_at)
            SELECT id, %(source)s, %(target)s, %(reason)s, a_actor, %(now)s FROM moved
        ), {_hand_out_event("moved.a_ref", "%(source)s")}
        SELECT a.device, {held} AS held, moved.* FROM a LEFT JOIN moved ON moved.a_device = a.device
    """
    extras = [name for _expression, name in extra]
    names = [*PAYLOAD_COLUMNS, *extras, "event_tenant_id", "device", "actor", "ref"]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    width = len(names)
    by_device: dict[int, list[dict[str, Any]]] = {ask.device_pk: [] for ask in asks}
    was_held: dict[int, bool] = {}
    for device, device_held, *values in found:
        was_held[device] = bool(device_held)
        if values[0] is not None:
            by_device[device].append(dict(zip(names, values[:width], strict=True)))
    rows = [row for ask in asks for row in by_device[ask.device_pk]]
    for gate in gates():
        back = gate.admit(rows) if rows else set()
        if back:
            device_of = {row["id"]: row["device"] for row in rows}
            actors = {ask.device_pk: ask.actor for ask in asks}
            for device, ids in _grouped(sorted(back), device_of).items():
                _put_back(ids, actors[device])
                was_held[device] = True
            rows = [row for row in rows if row["id"] not in back]
    if rows:
        _CHANGED_TO[target].inc(len(rows))
    answers: dict[int, list[dict[str, Any]]] = {ask.device_pk: [] for ask in asks}
    for row in rows:
        for column in ("arguments", "details"):  # Django leaves jsonb undecoded on raw cursors
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
        for _expression, name in extra:
            row.pop(name, None)
        answers[row.pop("device")].append(row)
        for name in ("event_tenant_id", "actor", "ref"):
            row.pop(name, None)
    handed = []
    for ask in asks:
        mine = answers[ask.device_pk]
        mine.sort(key=lambda row: (-row["priority"], row["id"]))
        handed.append(HandedOut(mine, was_held.get(ask.device_pk, False)))
    return handed


def _grouped(ids: list[int], device_of: dict[int, int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for pk in ids:
        groups.setdefault(device_of[pk], []).append(pk)
    return groups


#: The reason written when a device's poll (HTTP or MQTT, ``commands.batches``) hands a command out.
HANDED_OUT = "handed out to the device"
#: The reason written when a gate holds back a command it had let a poll pick.
HELD_BACK = "held back by its operation's rate; back in the queue"


_PUT_BACK_EVENT = _hand_out_event(
    f"(SELECT device_id FROM {Device._meta.db_table} WHERE id = moved.device_pk)", "%(target)s"
)


def _put_back(ids: list[int], actor: str) -> None:
    """Undo a hand-out of ``ids`` (still Initiated by this poll): back to Queued, the
    delivery uncounted, with a history row saying why."""
    source, target = HAND_OUT
    now = timezone.now()
    table = CommandStatus._meta.db_table
    history = CommandHistory._meta.db_table
    sql = f"""
        WITH moved AS (
            UPDATE {table} cs SET state = %(source)s, delivered_at = NULL,
                delivery_count = GREATEST(cs.delivery_count - 1, 0), version = cs.version + 1,
                updated_on = %(now)s
            WHERE cs.id = ANY(%(ids)s) AND cs.state = %(target)s
            RETURNING {", ".join(f"cs.{column}" for column in PAYLOAD_COLUMNS)}, cs.device_id AS device_pk,
                cs.tenant_id AS event_tenant_id
        ), {_PUT_BACK_EVENT}
        INSERT INTO {history} (command_id, from_state, to_state, reason, actor, created_at)
        SELECT id, %(target)s, %(source)s, %(reason)s, %(actor)s, %(now)s FROM moved
    """
    params: dict[str, Any] = {"source": int(source), "target": int(target), "ids": ids, "now": now}
    params |= {"reason": HELD_BACK, "actor": actor}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def waiting(device_pks: list[int], limit: int) -> dict[int, tuple[int, list[str]]]:
    """What each device of ``device_pks`` has waiting in its inbox, as a push notify tells it
    (``commands.notifier``): how many queued commands the gates let through now, and the
    ``id@version`` of the first ``limit`` as a poll would hand them out (highest priority
    first, then oldest; the version one higher, as the hand-out leaves it), from which the
    inbox's ``ETag`` of that answer is made. A rollout's rate is not applied: a command held
    back for a minute is still waiting. One statement for all the devices."""
    if not device_pks:
        return {}
    rules = [dataclasses.replace(gate.hand_out_rule(), held_back=()) for gate in gates()]
    parts = [_gate_sql(f"g{number}", rule) for number, rule in enumerate(rules)]
    joins = " ".join(part.joins for part in parts)
    condition = " AND ".join(f"({part.condition})" for part in parts) or "true"
    params: dict[str, Any] = {"devices": device_pks, "queued": int(C.QUEUED), "limit": limit}
    for part in parts:
        params.update(part.params)
    sql = f"""
        SELECT cs.device_id, count(*),
               (array_agg(cs.id || '@' || (cs.version + 1) ORDER BY cs.priority DESC, cs.id))[1:%(limit)s]
        FROM {CommandStatus._meta.db_table} cs {joins}
        WHERE cs.device_id = ANY(%(devices)s) AND cs.state = %(queued)s AND {condition}
        GROUP BY cs.device_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {int(device): (int(count), list(first)) for device, count, first in cursor.fetchall()}
