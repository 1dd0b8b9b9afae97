"""Sending an operation's fan-out to a worker, written once for every service that starts one
(a create, a resume, an approval)."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app

logger = logging.getLogger(__name__)

#: The fan-out task, sent by name: the tasks module imports the services, never the reverse.
FAN_OUT_TASK = "operations.tasks.fan_out_operation"


def send_fan_out(operation_id: Any) -> None:
    """Hand the fan-out to a worker, after the operation committed. A broker that is down must
    not fail the request (a client would retry and create it twice): ``recover_stuck_fan_outs``
    sends it again later."""
    try:
        current_app.send_task(FAN_OUT_TASK, args=[str(operation_id)])
    except Exception:
        logger.warning("fan-out of %s not sent; the recovery sweep will send it", operation_id, exc_info=True)
