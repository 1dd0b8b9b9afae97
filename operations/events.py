"""The ``data`` of the operation events: the operation as ``/v0/operations/{id}/`` shows it.

Built here rather than by the API's serializer, which sits above ``progress`` (the one writer
that emits): the same fields, without ``operation_activity`` (the history, which an event
about one step does not need and which grows with every step).
"""

from __future__ import annotations

from typing import Any

from config import timestamps
from operations.choices import ApprovalState, OperationState
from operations.models import Operation


def operation_data(operation: Operation, previous_state: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(operation.pk),
        "operation": operation.operation_type,
        "operation_type": operation.operation_type,
        "state": operation.state_name,
        "state_code": operation.state,
        "schedule_type": operation.schedule_type,
        "schedule_args": operation.schedule_args,
        "operation_device_query": operation.device_query,
        "arguments": operation.arguments,
        "reason": operation.reason,
        "created_at": timestamps.format(operation.created_at),
        "created_by": operation.created_by,
        "updated_at": timestamps.format(operation.updated_at),
        "updated_by": operation.updated_by,
        "operation_stats": {"device_operation_statuses_count": operation.counts()},
        "rollout": operation.rollout,
        "approval": approval_data(operation),
        "parent": str(operation.parent_id) if operation.parent_id else None,
        "scheduled_for": timestamps.format(operation.scheduled_for) if operation.scheduled_for else None,
        "template": str(operation.template_id) if operation.template_id else None,
        "template_parameters": operation.template_parameters,
        "target_selection": operation.target_selection,
        "continuous_closed_at": timestamps.format(operation.continuous_closed_at)
        if operation.continuous_closed_at
        else None,
        "rerun_of": str(operation.rerun_of_id) if operation.rerun_of_id else None,
    }
    if previous_state is not None:
        data["previous_state"] = OperationState(previous_state).name
    return data


def approval_data(operation: Operation) -> dict[str, Any]:
    """``approval`` as the API and the events show it. An operation cancelled while it waited
    shows ``WITHDRAWN``: nobody decided, and it waits no more."""
    if not operation.approval_state:
        return {
            "required": False,
            "state": None,
            "requested_by": None,
            "decided_by": None,
            "decided_at": None,
            "remark": "",
            "expires_at": None,
        }
    state = operation.approval_state
    if state == ApprovalState.WAITING and operation.state != OperationState.WAITING_FOR_APPROVAL:
        state = "WITHDRAWN"
    return {
        "required": True,
        "state": state,
        "requested_by": operation.created_by,
        "decided_by": operation.approval_decided_by or None,
        "decided_at": timestamps.format(operation.approval_decided_at)
        if operation.approval_decided_at
        else None,
        "remark": operation.approval_remark,
        "expires_at": timestamps.format(operation.approval_expires_at)
        if operation.approval_expires_at
        else None,
    }
