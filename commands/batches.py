"""Device requests settled in batches: many reports (and hand-outs) in one transaction.

The MQTT bridge (``commands.bridge``) takes device updates off the broker in batches (up to
``MQTT_BATCH_SIZE`` or ``MQTT_BATCH_MS``) and settles each batch here in **one transaction**,
acknowledging its messages only after that commit: a killed bridge loses nothing, and a
message redelivered after a crash finds its report already made (a repeat: a no-op by the
ladder's rule). The function knows nothing of MQTT; issue 28 means to reuse it for HTTP.

Each report is the HTTP PUT's own statement (``services.report``: the ladder, repeats,
retries, counters of the operation and its wave, events, history), run in order in the
batch's transaction, so two updates of the same command in one batch apply in the order they
came, and several reports on one operation add their counter deltas to its row one after the
other, exactly. The followers (an operation's state) are told once for the batch
(``services.reported_together``): an operation that a thousand reports of the batch touched
moves on once, not a thousand times. The statement is prepared once per connection
(``services.prepared_cursor``), so a batch costs one round trip per report and one commit. A
set-based statement for the whole batch (one round trip) is the next step (docs/mqtt-bridge.md,
"Throughput").

A report refused by the rules (a backwards move, another device's command) is an answer, not a
failure: the batch goes on. A report the database refuses (a value it cannot store) would
abort the transaction: the batch is then settled again with a savepoint around each request,
so only that one is refused (and a defect raised while settling one costs that one a 500).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, transaction

from commands import services
from commands.choices import CommandState
from commands.followers import Report
from commands.inbox import HANDED_OUT
from commands.models import CommandStatus
from commands.payload import command_payload, payload_of
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
            outcomes = [_settle_one(request, reports) for request in requests]
            services.reported_together(reports)
            return outcomes
    except OUTAGE_ERRORS:
        raise
    except Exception:
        logger.warning("a batch of %d failed; settled again one by one", len(requests), exc_info=True)
    with transaction.atomic():
        return [_isolated(request) for request in requests]


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


def _settle_one(request: Request, reports: list[Report]) -> Outcome:
    if isinstance(request, HandOutRequest):
        rows, held = services.hand_out(
            request.device_pk, request.limit, request.actor, HANDED_OUT, device_ref=request.device_id
        )
        return Outcome(commands=[command_payload(device=request.device_id, **row) for row in rows], held=held)
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
