"""The ``data`` of the operation events: the operation as ``/v0/operations/{id}/`` shows it.

Built here rather than by the API's serializer, which sits above ``progress`` (the one writer
that emits): the same fields, without ``operation_activity`` (the history, which an event
about one step does not need and which grows with every step).
"""

from __future__ import annotations

from typing import Any

from config import timestamps
from operations.choices import OperationState
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
        "target_selection": operation.target_selection,
        "continuous_closed_at": timestamps.format(operation.continuous_closed_at)
        if operation.continuous_closed_at
        else None,
        "rerun_of": str(operation.rerun_of_id) if operation.rerun_of_id else None,
    }
    if previous_state is not None:
        data["previous_state"] = OperationState(previous_state).name
    return data
