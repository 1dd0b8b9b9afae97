"""A rollout's abort rules (contract section 9): stop an operation when too many fail.

Evaluated at each settlement from the exact counters the settling statement left (a
report's own statement returns them), and taken by the one conditional UPDATE of the
operation's state (``progress.move``) whose WHERE re-checks the rule against the counters
as they are then: a hundred reports that all see the threshold crossed abort it once, and
the reason names the rule and the rate measured. The abort is a stop as a PUT ``CANCELLED``
is one (``operations.stopping.stop``, with the rule as its ``when``): the state at once, the
unfinished commands by a worker in batches.
"""

from __future__ import annotations

from typing import Any

from commands.counting import COUNTERS
from operations import stopping
from operations.choices import TERMINAL_STATES, OperationState
from operations.models import Operation
from operations.rollouts import rollout_of

S = OperationState


def abort_if_met(operation_id: Any, counts: dict[str, int] | None, actor: str = "system") -> bool:
    """Abort the operation if one of its rollout's rules is met; whether this call did.

    ``counts`` are the counters a report's statement returned (None: read them now).
    """
    rollout = rollout_of(str(operation_id))
    if rollout is None or not rollout.abort:
        return False
    if counts is None:
        found = Operation.objects.filter(pk=operation_id).values(*COUNTERS, "state").first()
        if found is None or found["state"] in TERMINAL_STATES:
            return False
        counts = found
    met = rollout.tripped(counts)
    if met is None:
        return False
    rule, rate, finished = met
    reason = f"abort: {rule.failure_type} {rate:.1f}% >= {rule.threshold_percent:g}% after {finished} devices"
    return stopping.stop(
        operation_id, S.CANCELLED, reason, actor="rollout", when=rollout.abort_condition(rule)
    )
