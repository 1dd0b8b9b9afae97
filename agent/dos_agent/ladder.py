"""The command states a device reports (seed 002; contract section 5), named once.

The ladder is Queued/Initiated -> Acknowledged -> In Progress -> Success | Failure; a device
may skip rungs forward, and repeating the current state is a no-op the server answers 200,
which is what makes every report of this agent safe to retry.
"""

from __future__ import annotations

ACKNOWLEDGED = "Command Acknowledged"
IN_PROGRESS = "Command In Progress"
SUCCESS = "Command Success"
FAILURE = "Command Failure"

#: The states after which the server changes a command no more.
FINAL = frozenset({SUCCESS, FAILURE, "Command Cancelled", "Command TimeOut"})
