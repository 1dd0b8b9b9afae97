"""Command states (seed 002's nine strings) and the one table of allowed moves."""

from __future__ import annotations

from django.db import models


class CommandState(models.IntegerChoices):
    """Stored as small integers (a million rows index smaller); the API shows the labels."""

    QUEUED = 1, "Command Queued"
    INITIATED = 2, "Command Initiated"
    ACKNOWLEDGED = 3, "Command Acknowledged"
    IN_PROGRESS = 4, "Command In Progress"
    TIMEOUT = 5, "Command TimeOut"
    SUCCESS = 6, "Command Success"
    FAILURE = 7, "Command Failure"
    SCHEDULED = 8, "Command Scheduled"
    CANCELLED = 9, "Command Cancelled"


C = CommandState
TERMINAL_STATES = frozenset({C.TIMEOUT, C.SUCCESS, C.FAILURE, C.CANCELLED})
UNFINISHED_STATES = frozenset(set(C) - TERMINAL_STATES)
#: Not yet received by the device: a timeout here is a dispatch failure, not a device failure.
UNDELIVERED_STATES = frozenset({C.SCHEDULED, C.QUEUED, C.INITIATED})
#: States only a device's report reaches: the device has the command and said so.
REPORTED_STATES = frozenset({C.ACKNOWLEDGED, C.IN_PROGRESS, C.SUCCESS, C.FAILURE})

#: The only place that decides which command state may follow which (contract section 5).
#: A device climbs the ladder Queued/Initiated → Acknowledged → In Progress → Success | Failure
#: and may skip rungs forward (Initiated → Success, Acknowledged → Failure), as agents written
#: to seed 002 do; it never goes down.
ALLOWED_TRANSITIONS: dict[CommandState, frozenset[CommandState]] = {
    C.SCHEDULED: frozenset({C.QUEUED, C.CANCELLED, C.TIMEOUT}),
    C.QUEUED: frozenset(
        {C.INITIATED, C.ACKNOWLEDGED, C.IN_PROGRESS, C.SUCCESS, C.FAILURE}
        | {C.SCHEDULED, C.CANCELLED, C.TIMEOUT}
    ),
    C.INITIATED: frozenset(
        {C.ACKNOWLEDGED, C.IN_PROGRESS, C.SUCCESS, C.FAILURE, C.QUEUED, C.CANCELLED, C.TIMEOUT}
    ),
    C.ACKNOWLEDGED: frozenset({C.IN_PROGRESS, C.SUCCESS, C.FAILURE, C.CANCELLED, C.TIMEOUT}),
    C.IN_PROGRESS: frozenset({C.SUCCESS, C.FAILURE, C.TIMEOUT, C.CANCELLED}),
    C.SUCCESS: frozenset(),
    C.FAILURE: frozenset(),
    C.TIMEOUT: frozenset(),
    C.CANCELLED: frozenset(),
}

#: Handing a command out to its device (the inbox), the one move a poll makes.
HAND_OUT = (C.QUEUED, C.INITIATED)
assert HAND_OUT[1] in ALLOWED_TRANSITIONS[HAND_OUT[0]]

#: Moves only the server makes (handing out, redelivery, a window closing); a PUT asking
#: for one of them is refused like any move outside the table.
SYSTEM_ONLY_MOVES = frozenset({(C.QUEUED, C.INITIATED), (C.INITIATED, C.QUEUED), (C.QUEUED, C.SCHEDULED)})

#: States a client may PUT (seed 002's enum for the update endpoint).
REQUESTABLE_STATES = frozenset(
    {C.ACKNOWLEDGED, C.IN_PROGRESS, C.TIMEOUT, C.SUCCESS, C.FAILURE, C.SCHEDULED, C.CANCELLED}
)

BY_LABEL = {state.label: state for state in CommandState}


def can_move(current: CommandState | int, target: CommandState | int, by_client: bool = False) -> bool:
    current, target = CommandState(current), CommandState(target)
    if by_client and (current, target) in SYSTEM_ONLY_MOVES:
        return False
    return target in ALLOWED_TRANSITIONS[current]


class Priority(models.IntegerChoices):
    """Inbox order: highest first. Operations are NORMAL; headless runs carry their own."""

    LOW = 0, "low"
    NORMAL = 1, "normal"
    HIGH = 2, "high"
    CRITICAL = 3, "critical"
