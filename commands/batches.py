"""Device requests settled in batches: many reports (and hand-outs) in one transaction.

The MQTT bridge (``commands.bridge``) takes device updates off the broker in batches (up to
``MQTT_BATCH_SIZE`` or ``MQTT_BATCH_MS``) and settles each batch here in **one transaction**,
acknowledging its messages only after that commit: a killed bridge loses nothing, and a
message redelivered after a crash finds its report already made (a repeat: a no-op by the
ladder's rule). The function knows nothing of MQTT; issue 28 means to reuse it for HTTP.

Each run of consecutive reports is **one statement** (``services.report_many``): every report
judged by the HTTP PUT's own rules (the ladder, repeats, retries, ``expected_version`` and
``attempt``, history, events, notifies), the counters of each operation and wave moved once by
the sum of its reports' deltas. A command reported twice in a batch takes a second statement
for its second report (rounds), so two updates of one command apply in the order they came.
Each run of consecutive hand-outs is one statement too (``services.hand_out_many``), between
the runs of reports, in its place. The followers (an operation's state) are told
once for the batch (``services.reported_together``): an operation that a thousand reports of
the batch touched moves on once, not a thousand times. ``tests/test_batch_reports.py`` checks
that a batch settles every report exactly as the one-report statement of the PUT does.

A report refused by the rules (a backwards move, another device's command) is an answer, not a
failure: the batch goes on. A report the database refuses (a value it cannot store) would
abort the transaction: the batch is then settled again with a savepoint around each request,
so only that one is refused (and a defect raised while settling one costs that one a 500);
that second pass uses the one-report statement of the PUT, in a savepoint each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, DataError, InterfaceError, OperationalError, transaction

from commands import services
from commands.choices import CommandState
from commands.followers import Report
from commands.models import CommandStatus
from commands.payload import command_payload, payload_of
from commands.services import HANDED_OUT
from config.api.exceptions import DATA_ERROR
from config.errors import DomainError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportRequest:
    """A device's report of one of its commands, validated as the HTTP PUT validates it
    (``CommandStatusUpdateSerializer``); the device as its channel identified it."""

    command_id: int
    target: CommandState
    tenant_id: int
    device_pk: int
    actor: str
    reason: str = ""
    details: Any = None
    expected_version: int | None = None
    attempt: int | None = None


@dataclass(frozen=True)
class HandOutRequest:
    """A device asking for its commands, as a poll of the HTTP inbox does."""

    tenant_id: int
    device_pk: int
    device_id: str
    actor: str
    limit: int


Request = ReportRequest | HandOutRequest


@dataclass
class Outcome:
    """What a request came to: for a report, the command as the API shows it (``command``) or
    the refusal (``status``, ``code``, ``errors``, as the HTTP PUT words them); for a
    hand-out, the commands handed out and whether some were held back (``held``)."""

    command: dict[str, Any] | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    held: bool = False
    status: int = 200
    code: str = ""
    errors: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.status >= 400


NOT_FOUND = "Not found."

#: Errors of the connection (the database went away): the batch is not settled and its
#: messages are not acknowledged; the caller tries again later.
OUTAGE_ERRORS = (OperationalError, InterfaceError)


def settle(requests: list[Request]) -> list[Outcome]:
    """Settle ``requests`` in order, in one transaction; their outcomes, in the same order.

    Raises :data:`OUTAGE_ERRORS` (nothing committed) when the database cannot be reached, or
    when PostgreSQL broke a deadlock with another bridge's batch: the caller settles the batch
    again (every report of it is then a repeat or a first, never a double count)."""
    try:
        with transaction.atomic():
            reports: list[Report] = []
            outcomes = _settle_in_sets(requests, reports)
            services.reported_together(reports)
            return outcomes
    except OUTAGE_ERRORS:
        raise
    except Exception:
        logger.warning("a batch of %d failed; settled again one by one", len(requests), exc_info=True)
    with transaction.atomic():
        return [_isolated(request) for request in requests]


def settle_alone(request: Request) -> Outcome:
    """One request on its own, as the HTTP device views settled each before group commit: its
    own statement in autocommit (a report is one round trip, its followers told right after
    it), no transaction around it. What a batch of one comes to (``commands.coalesce``): for a
    single request, :func:`settle`'s transaction and many-report statement cost more than this
    (docs/performance.md, "The lean device path"). A value the database refuses is this
    request's 400; an outage is raised (nothing was committed)."""
    try:
        return _settle_one(request, None)
    except DataError as refused:
        logger.warning("input refused by the database: %s", refused)
        return Outcome(status=400, code="invalid", errors={"detail": [DATA_ERROR]})


def _isolated(request: Request) -> Outcome:
    """One request in a savepoint, its followers told with it: a value the database refuses
    is this request's 400 only."""
    try:
        with transaction.atomic():
            reports: list[Report] = []
            outcome = _settle_one(request, reports)
            services.reported_together(reports)
            return outcome
    except OUTAGE_ERRORS:
        raise
    except DatabaseError as refused:
        logger.warning("input refused by the database: %s", refused)
        return Outcome(status=400, code="invalid", errors={"detail": [DATA_ERROR]})
    except Exception:  # a defect: this request's answer only, never the batch's or the process's
        logger.exception("a device request could not be settled")
        return Outcome(status=500, code="server_error", errors={})


#: Most devices of one hand-out statement. A rollout's rate (``operations.gate``) is checked
#: after the statement picked and moved the rows, and the rows past the rate go back to the
#: queue (with a history row and an event each): the operations whose rate is spent are left
#: out of the next statement's picks. One statement for a whole batch of 1,000 ``inbox/get``
#: would hand a rate-limited operation's command to each of its devices in the batch and put
#: nearly all back; statements of 16 bound that to 15 per operation and rate window, and are
#: still 16 times fewer than one per device.
HAND_OUT_RUN = 16


def _settle_in_sets(requests: list[Request], reports: list[Report]) -> list[Outcome]:
    """Each run of consecutive reports in one statement (``services.report_many``), each run
    of consecutive hand-outs in one statement (``services.hand_out_many``; a device asking
    twice, another ``limit``, or :data:`HAND_OUT_RUN` devices start the next statement): the
    order of the batch is kept."""
    outcomes: list[Outcome] = []
    run: list[ReportRequest] = []
    asks: list[HandOutRequest] = []
    asking: set[int] = set()

    def flush() -> None:
        if run:
            inputs = [_report_input(request) for request in run]
            outcomes.extend(_outcome(result) for result in services.report_many(inputs, reports))
            run.clear()
        if asks:
            outcomes.extend(_hand_out(asks))
            asks.clear()
            asking.clear()

    for request in requests:
        if isinstance(request, ReportRequest):
            if asks:
                flush()
            run.append(request)
        else:
            full = len(asks) >= HAND_OUT_RUN
            if run or (asks and (full or asks[0].limit != request.limit or request.device_pk in asking)):
                flush()
            asks.append(request)
            asking.add(request.device_pk)
    flush()
    return outcomes


def _hand_out(requests: list[HandOutRequest]) -> list[Outcome]:
    """Hand-outs of distinct devices, with one ``limit``, in one statement (one device: the HTTP
    poll's own, faster for one)."""
    if len(requests) == 1:
        (one,) = requests
        handed = [
            services.hand_out(one.device_pk, one.limit, one.actor, HANDED_OUT, device_ref=one.device_id)
        ]
    else:
        asks = [services.HandOutAsk(r.device_pk, r.actor, r.device_id) for r in requests]
        handed = services.hand_out_many(asks, requests[0].limit, HANDED_OUT)
    return [
        Outcome(commands=[command_payload(device=r.device_id, **row) for row in rows], held=held)
        for r, (rows, held) in zip(requests, handed, strict=True)
    ]


def _report_input(request: ReportRequest) -> services.ReportInput:
    return services.ReportInput(
        pk=request.command_id,
        target=request.target,
        reason=request.reason,
        details=request.details,
        expected_version=request.expected_version,
        actor=request.actor,
        tenant_id=request.tenant_id,
        device_pk=request.device_pk,
        attempt=request.attempt,
    )


def _outcome(result: services.ReportResult) -> Outcome:
    if isinstance(result, CommandStatus.DoesNotExist):
        return Outcome(status=404, code="not_found", errors={})
    if isinstance(result, DomainError):
        return Outcome(status=result.status, code=result.code, errors=dict(result.errors))
    if isinstance(result, Exception):
        raise result
    command, _ = result
    return Outcome(command=payload_of(command))


def _settle_one(request: Request, reports: list[Report] | None) -> Outcome:
    if isinstance(request, HandOutRequest):
        return _hand_out([request])[0]
    try:
        command, _ = services.report(
            request.command_id,
            request.target,
            reason=request.reason,
            details=request.details,
            expected_version=request.expected_version,
            actor=request.actor,
            tenant_id=request.tenant_id,
            device_pk=request.device_pk,
            attempt=request.attempt,
            batch=reports,
        )
    except CommandStatus.DoesNotExist:
        return Outcome(status=404, code="not_found", errors={})
    except DomainError as refused:
        return Outcome(status=refused.status, code=refused.code, errors=dict(refused.errors))
    return Outcome(command=payload_of(command))
