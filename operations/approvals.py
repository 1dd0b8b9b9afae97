"""Four eyes for destructive work (contract section 13): the tenant's policy, holding an
operation in WAITING_FOR_APPROVAL, and the decisions that end the wait.

Why here and this way:

- An operation the policy holds is created in WAITING_FOR_APPROVAL and nothing else happens:
  no fan-out is sent, so nothing is resolved, written or handed out (the fan-out claims only
  CREATED operations, the recovery sweep looks only at the fan-out's states).
- Every decision is one move of ``operations.progress.move``, the one writer of the state,
  from WAITING_FOR_APPROVAL only, with the approval columns set in the same compare-and-swap
  (``also``). Two admins approving at once, an approval racing the expiry sweep or a cancel:
  the first to lock the row moves it, the others find it moved and are told so (409). The
  decision's event commits in the same transaction as the move, so there is one of each.
- An approval moves the operation to CREATED and sends the fan-out after commit: from there
  it is exactly an operation just created (IMMEDIATE or WINDOW alike).
- The four-eyes rule compares principals (``key:<id>``, ``user:<pk>``), not labels: two API
  keys may share a name, and a console user and a key are different people's hands.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config import timestamps
from config.errors import Conflict, DomainError, Forbidden
from inventory.events import emit
from inventory.models import AuditEntry, EventType
from operations import progress, recurring
from operations.choices import DESTRUCTIVE_TYPES, ApprovalState, OperationState, OperationType, ScheduleType
from operations.device_query import DeviceQuery
from operations.events import operation_data
from operations.models import ApprovalPolicy, Operation
from operations.sending import send_fan_out

S = OperationState
A = ApprovalState
logger = logging.getLogger(__name__)

DEFAULT_EXPIRES_AFTER_HOURS = 72
#: A year: an approval that waits longer is forgotten, not pending.
MAX_EXPIRES_AFTER_HOURS = 24 * 366
#: The reason an expired approval leaves on the operation (contract section 13).
EXPIRED_REASON = "approval expired"
#: ``error_code``s of the decisions (docs/errors.md).
NOT_WAITING = "not_waiting"
REQUESTER_CANNOT_DECIDE = "requester_cannot_decide"
APPROVAL_EXPIRED = "approval_expired"
#: Operations the expiry sweep moves per run; the next run takes the rest.
EXPIRY_BATCH = 500


@dataclass(frozen=True)
class Policy:
    """A tenant's policy as ``/v0/approval-policy/`` shows it."""

    operation_types: list[str]
    min_devices: int | None
    expires_after_hours: int

    def as_json(self) -> dict[str, Any]:
        return {
            "operation_types": list(self.operation_types),
            "min_devices": self.min_devices,
            "expires_after_hours": self.expires_after_hours,
        }


DEFAULT_POLICY = Policy([str(t) for t in DESTRUCTIVE_TYPES], None, DEFAULT_EXPIRES_AFTER_HOURS)


@dataclass(frozen=True)
class Decider:
    """Who asks to decide: a principal (``key:<id>`` or ``user:<pk>``), the label that
    ``updated_by`` and the activity record, and whether it is an admin."""

    identity: str
    label: str
    is_admin: bool


def policy_of(tenant_id: int) -> Policy:
    """The tenant's policy; a tenant that never set one has the default (the destructive
    types), so a new tenant is protected from its first request."""
    row = ApprovalPolicy.objects.filter(tenant_id=tenant_id).first()
    if row is None:
        return DEFAULT_POLICY
    return Policy(list(row.operation_types), row.min_devices, row.expires_after_hours)


def set_policy(
    tenant_id: int,
    operation_types: list[str],
    min_devices: int | None,
    expires_after_hours: int,
    actor: str,
) -> Policy:
    """Replace the tenant's policy (the API's PUT and the console). Operations already
    waiting keep their expiry; the policy decides only for operations created from now on."""
    known = set(OperationType.values)
    unknown = [name for name in operation_types if name not in known]
    if unknown:
        raise DomainError({"operation_types": [f"unknown operation type(s): {', '.join(unknown)}"]})
    if min_devices is not None and min_devices < 1:
        raise DomainError({"min_devices": ["must be at least 1, or null for no device threshold"]})
    if not 1 <= expires_after_hours <= MAX_EXPIRES_AFTER_HOURS:
        raise DomainError({"expires_after_hours": [f"must be between 1 and {MAX_EXPIRES_AFTER_HOURS}"]})
    types = sorted(set(operation_types), key=list(OperationType.values).index)
    ApprovalPolicy.objects.update_or_create(
        tenant_id=tenant_id,
        defaults={
            "operation_types": types,
            "min_devices": min_devices,
            "expires_after_hours": expires_after_hours,
            "updated_by": actor[:200],
        },
    )
    return Policy(types, min_devices, expires_after_hours)


def holds(tenant_id: int, operation_type: str, query: DeviceQuery) -> Policy | None:
    """The policy, when it holds an operation of this type and query for approval; else None.

    The device threshold counts at most ``min_devices`` rows (a bounded count), so asking
    costs the same for a fleet of ten devices and one of ten million.
    """
    policy = policy_of(tenant_id)
    if operation_type in policy.operation_types:
        return policy
    if policy.min_devices is not None:
        matched = query.queryset(tenant_id).order_by()[: policy.min_devices].count()
        if matched >= policy.min_devices:
            return policy
    return None


def waiting_fields(policy: Policy, requester: str, now: dt.datetime) -> dict[str, Any]:
    """The columns of an operation created to wait (``services.create_operation``)."""
    return {
        "state": S.WAITING_FOR_APPROVAL,
        "approval_state": A.WAITING,
        "approval_requester": requester[:200],
        "approval_expires_at": now + dt.timedelta(hours=policy.expires_after_hours),
    }


def requested(operation: Operation) -> None:
    """``operation.approval_requested``, in the creation's transaction."""
    emit(operation.tenant_id, EventType.OPERATION_APPROVAL_REQUESTED, operation_data(operation))


def may_decide(operation: Operation, decider: Decider) -> str | None:
    """Why ``decider`` may not decide on ``operation`` (None: it may). The console hides its
    buttons by the same rule the service enforces."""
    if not decider.is_admin:
        return "only an admin may approve or deny an operation"
    if operation.approval_requester and decider.identity == operation.approval_requester:
        return "you requested this operation; another admin must approve or deny it (four eyes)"
    return None


def approve(operation: Operation, decider: Decider, remark: str = "") -> Operation:
    """On to CREATED, as if just created, and the fan-out sent after commit."""
    return _decide(operation, decider, approved=True, remark=remark)


def deny(operation: Operation, decider: Decider, remark: str) -> Operation:
    """APPROVAL_DENIED (terminal), the remark as its reason."""
    if not remark.strip():
        raise DomainError({"remark": ["is required to deny an operation: say why"]})
    return _decide(operation, decider, approved=False, remark=remark)


def _decide(operation: Operation, decider: Decider, *, approved: bool, remark: str) -> Operation:
    refusal = may_decide(operation, decider)
    if refusal is not None:
        code = "permission_denied" if not decider.is_admin else REQUESTER_CANNOT_DECIDE
        raise Forbidden({"detail": [refusal]}, code=code)
    now = timezone.now()
    series = operation.schedule_type == ScheduleType.RECURRING
    target = (S.SCHEDULED if series else S.CREATED) if approved else S.APPROVAL_DENIED
    verdict = A.APPROVED if approved else A.DENIED
    fields: dict[str, Any] = {
        "approval_state": verdict,
        "approval_decider": decider.identity[:200],
        "approval_decided_by": decider.label[:200],
        "approval_decided_at": now,
        "approval_remark": remark,
    }
    if approved and series:  # approved once for its runs: it waits for its first firing from now
        fields.update(recurring.first_firing(operation.schedule_args, now))
    reason = f"approved: {remark}" if approved and remark else ("approved" if approved else remark)
    with transaction.atomic():
        won = progress.move(
            operation.pk,
            target,
            reason,
            decider.label,
            only_from=[S.WAITING_FOR_APPROVAL],
            when=Q(approval_expires_at__gt=now),
            also=fields,
        )
        if won:
            decided = Operation.objects.get(pk=operation.pk)
            event = EventType.OPERATION_APPROVED if approved else EventType.OPERATION_DENIED
            emit(decided.tenant_id, event, operation_data(decided))
            if approved and not series:
                transaction.on_commit(functools.partial(send_fan_out, decided.pk))
    if won:
        return Operation.objects.get(pk=operation.pk)
    # Lost: someone decided, cancelled or the approval expired first. An approval past its
    # expiry that the sweep has not reached yet is expired here, so the answer is final.
    expire(operation.pk, now)
    current = Operation.objects.get(pk=operation.pk)
    if current.approval_state == A.EXPIRED:
        raise Conflict(
            {"state": [f"the approval expired at {timestamps.format(current.approval_expires_at)}"]},
            code=APPROVAL_EXPIRED,
        )
    raise Conflict({"state": [_not_waiting(current)]}, code=NOT_WAITING)


def _not_waiting(operation: Operation) -> str:
    name = S(operation.state).name
    if operation.approval_state in (A.APPROVED, A.DENIED):
        by = operation.approval_decided_by or "another admin"
        return (
            f"the operation no longer waits for approval: {by} {operation.approval_state.lower()} it ({name})"
        )
    return f"the operation does not wait for approval; it is {name}"


def expire(operation_id: Any, now: dt.datetime | None = None) -> bool:
    """Deny one operation whose approval expired undecided, with the reason ``approval
    expired``; returns whether this call did it. The move is conditional on the row still
    waiting and past its expiry, so a sweep and a late approval, or two sweeps, expire it once:
    one event, one audit entry (the system's)."""
    now = now or timezone.now()
    with transaction.atomic():
        won = progress.move(
            operation_id,
            S.APPROVAL_DENIED,
            EXPIRED_REASON,
            "system",
            only_from=[S.WAITING_FOR_APPROVAL],
            when=Q(approval_expires_at__lte=now),
            also={
                "approval_state": A.EXPIRED,
                "approval_decided_by": "system",
                "approval_decided_at": now,
                "approval_remark": EXPIRED_REASON,
            },
        )
        if won:
            expired = Operation.objects.get(pk=operation_id)
            emit(expired.tenant_id, EventType.OPERATION_DENIED, operation_data(expired))
            AuditEntry.objects.create(
                tenant_id=expired.tenant_id,
                actor_kind=AuditEntry.ActorKind.SYSTEM,
                actor="system",
                method="SYSTEM",
                path=EXPIRED_REASON,
                object_type="operations.Operation",
                object_id=str(expired.pk),
                status_code=200,
            )
    return won


def expire_due(now: dt.datetime | None = None) -> int:
    """The beat's sweep (``expire-approvals``): every approval past its expiry, at most
    ``EXPIRY_BATCH`` per run (the partial index holds only what waits)."""
    now = now or timezone.now()
    due = Operation.objects.filter(state=S.WAITING_FOR_APPROVAL, approval_expires_at__lte=now).order_by(
        "approval_expires_at"
    )
    return sum(expire(pk, now) for pk in due.values_list("pk", flat=True)[:EXPIRY_BATCH])
