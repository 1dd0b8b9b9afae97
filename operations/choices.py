"""Operation enums and the one table of allowed state moves."""

from __future__ import annotations

import re

from django.db import models


class OperationType(models.TextChoices):
    """Every operation type of seed 003; anything else is refused with a 400."""

    CONVERGE = "CONVERGE"
    INSTALL = "INSTALL"
    UNINSTALL = "UNINSTALL"
    INSTALL_APP = "INSTALL_APP"
    UNINSTALL_APP = "UNINSTALL_APP"
    REBOOT = "REBOOT"
    LOCK = "LOCK"
    SHUT_DOWN = "SHUT_DOWN"
    WIPE = "WIPE"
    ADD_EMM_ACCOUNT = "ADD_EMM_ACCOUNT"
    ADD_OVERRIDE_APN = "ADD_OVERRIDE_APN"
    ADD_WIFI_AP = "ADD_WIFI_AP"
    REMOVE_WIFI_AP = "REMOVE_WIFI_AP"
    SET_ETHERNET_SETTINGS = "SET_ETHERNET_SETTINGS"
    SET_STATIC_IP = "SET_STATIC_IP"
    USE_ONLY_SAVED_WIFI_AP = "USE_ONLY_SAVED_WIFI_AP"
    ADD_TO_WHITELIST = "ADD_TO_WHITELIST"
    REMOVE_FROM_WHITELIST = "REMOVE_FROM_WHITELIST"
    ALLOW_BLUETOOTH = "ALLOW_BLUETOOTH"
    ALLOW_CAMERA = "ALLOW_CAMERA"
    ALLOW_FACTORY_RESET = "ALLOW_FACTORY_RESET"
    ALLOW_UNENROLLMENT_FROM_DEVICE = "ALLOW_UNENROLLMENT_FROM_DEVICE"
    DEFER_OS_UPDATES = "DEFER_OS_UPDATES"
    PAUSE_OS_UPDATES = "PAUSE_OS_UPDATES"
    SET_OS_UPDATE_POLICY = "SET_OS_UPDATE_POLICY"
    APPLE_APP_UNINSTALL = "APPLE_APP_UNINSTALL"
    APPLY_APP_CONFIG = "APPLY_APP_CONFIG"
    CLEAR_APP_DATA = "CLEAR_APP_DATA"
    DIRECT_IOS_APP_INSTALL = "DIRECT_IOS_APP_INSTALL"
    INSTALL_CERTIFICATE = "INSTALL_CERTIFICATE"
    INSTALL_OTA = "INSTALL_OTA"
    NOTIFY_OTA = "NOTIFY_OTA"
    REFRESH_APPLIST = "REFRESH_APPLIST"
    SET_APP_NOTIFICATIONS = "SET_APP_NOTIFICATIONS"
    SET_APP_PERMISSION = "SET_APP_PERMISSION"
    SET_APP_STATE = "SET_APP_STATE"
    SET_KIOSK_APP = "SET_KIOSK_APP"
    SET_MULTI_APP_MODE = "SET_MULTI_APP_MODE"
    SET_NEW_POLICY = "SET_NEW_POLICY"
    SIMPLE_INSTALL = "SIMPLE_INSTALL"
    SYNC_CONTENT = "SYNC_CONTENT"
    UNINSTALL_CERTIFICATE = "UNINSTALL_CERTIFICATE"
    VPP_APP_INSTALL = "VPP_APP_INSTALL"
    INSTALL_PROFILE = "INSTALL_PROFILE"
    INSTALL_PROVISIONING_PROFILE = "INSTALL_PROVISIONING_PROFILE"
    INSTALL_WEBCLIP = "INSTALL_WEBCLIP"
    REMOVE_PROVISIONING_PROFILE = "REMOVE_PROVISIONING_PROFILE"
    UNINSTALL_WEBCLIP = "UNINSTALL_WEBCLIP"
    LIST_PROVISIONING_PROFILES = "LIST_PROVISIONING_PROFILES"
    BEEP_DEVICE = "BEEP_DEVICE"
    CAPTURE_SCREENSHOT = "CAPTURE_SCREENSHOT"
    INITIATE_CONFERENCE_CALL = "INITIATE_CONFERENCE_CALL"
    INITIATE_OFFER = "INITIATE_OFFER"
    NOTIFY_DEVICE = "NOTIFY_DEVICE"
    NUDGE_DEVICE = "NUDGE_DEVICE"
    REQUEST_BUGREPORT = "REQUEST_BUGREPORT"
    REQUEST_DPCLOG = "REQUEST_DPCLOG"
    DEPLOY_SYSTEM_OTA = "DEPLOY_SYSTEM_OTA"
    UPDATE_BLUEPRINT = "UPDATE_BLUEPRINT"
    UPDATE_DEVICE_CONFIG = "UPDATE_DEVICE_CONFIG"
    UPDATE_OEM_CONFIG = "UPDATE_OEM_CONFIG"
    CLEAR_PASSCODE = "CLEAR_PASSCODE"
    RESET_LOCKSCREEN_PASSWORD = "RESET_LOCKSCREEN_PASSWORD"
    SET_ADB_STATE = "SET_ADB_STATE"
    SET_DEVICE_LOCKDOWN_STATE = "SET_DEVICE_LOCKDOWN_STATE"
    DISABLE_LOST_MODE = "DISABLE_LOST_MODE"
    ENABLE_LOST_MODE = "ENABLE_LOST_MODE"
    LOST_MODE_DEVICE_LOCATION = "LOST_MODE_DEVICE_LOCATION"
    PLAY_LOST_MODE_SOUND = "PLAY_LOST_MODE_SOUND"
    SET_BLUETOOTH_STATE = "SET_BLUETOOTH_STATE"
    SET_BRIGHTNESS_SCALE = "SET_BRIGHTNESS_SCALE"
    SET_DEVICE_LANGUAGE = "SET_DEVICE_LANGUAGE"
    SET_GEO_FENCE = "SET_GEO_FENCE"
    SET_GPS_STATE = "SET_GPS_STATE"
    SET_LOCATION_SERVICE = "SET_LOCATION_SERVICE"
    SET_ROTATION_STATE = "SET_ROTATION_STATE"
    SET_SCREEN_OFF_TIMEOUT = "SET_SCREEN_OFF_TIMEOUT"
    SET_STREAM_VOLUME = "SET_STREAM_VOLUME"
    SET_TIMEZONE = "SET_TIMEZONE"
    SET_WALLPAPER = "SET_WALLPAPER"
    SET_WIDGET = "SET_WIDGET"
    SET_WIFI_STATE = "SET_WIFI_STATE"
    RUN_CSP_PAYLOAD = "RUN_CSP_PAYLOAD"
    SET_PFN = "SET_PFN"
    COLLECT_LOGS = "COLLECT_LOGS"
    REMOTE_CONNECTION = "REMOTE_CONNECTION"
    REMOVE_AGENT = "REMOVE_AGENT"
    REMOVE_DEVICE = "REMOVE_DEVICE"
    RUN_CUSTOM_ACTION = "RUN_CUSTOM_ACTION"
    RUN_SHELL_SCRIPT = "RUN_SHELL_SCRIPT"
    DECLARATIVE_MANAGEMENT = "DECLARATIVE_MANAGEMENT"


#: A new tenant's approval policy (contract section 13): the types that destroy data or take a
#: device out of management, which one admin key could otherwise send to a whole fleet.
DESTRUCTIVE_TYPES = (
    OperationType.WIPE,
    OperationType.REMOVE_DEVICE,
    OperationType.REMOVE_AGENT,
    OperationType.RESET_LOCKSCREEN_PASSWORD,
    OperationType.CLEAR_PASSCODE,
    OperationType.ALLOW_FACTORY_RESET,
    OperationType.SHUT_DOWN,
)


class ApprovalState(models.TextChoices):
    """``approval.state`` of an operation that needed approval (empty: it did not)."""

    WAITING = "WAITING"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    EXPIRED = "EXPIRED"


class ScheduleType(models.TextChoices):
    IMMEDIATE = "IMMEDIATE"
    WINDOW = "WINDOW"
    #: A series: a Quartz expression makes one WINDOW run per firing (``operations.recurring``).
    RECURRING = "RECURRING"


class TargetSelection(models.TextChoices):
    """Contract section 12: the devices that match once (SNAPSHOT), or also every device that
    comes to match later, until the operation is closed (CONTINUOUS)."""

    SNAPSHOT = "SNAPSHOT"
    CONTINUOUS = "CONTINUOUS"


#: ``only`` of a re-run (``operations.services.rerun``): how a command ended, as the counters
#: and the abort rules name it.
RERUN_OUTCOMES = ("FAILED", "TIMED_OUT", "DISPATCH_FAILED", "CANCELLED")
#: A re-run without ``only``: the devices that did not do what the operation asked.
DEFAULT_RERUN_OUTCOMES = ("FAILED", "TIMED_OUT")


class TimeType(models.TextChoices):
    CONSOLE = "console"
    DEVICE = "device"


class OperationState(models.IntegerChoices):
    """The integers of seed 000; the API shows the name without the ``OPERATION_`` prefix."""

    CREATED = 10
    RESOLVING = 20
    RESOLVED = 30
    DISPATCHING = 40
    DISPATCHED = 50
    PROCESSING = 60
    COMPLETED = 70
    SUCCESS = 80
    FAILURE = 90
    SCHEDULED = 100
    CANCELLED = 110
    TIMEOUT = 120
    PAUSED = 130
    #: Held for a second admin's decision (contract section 13): nothing resolved or written.
    WAITING_FOR_APPROVAL = 140
    #: Denied by an admin, or undecided until its approval expired; terminal.
    APPROVAL_DENIED = 150


S = OperationState
TERMINAL_STATES = frozenset({S.SUCCESS, S.FAILURE, S.CANCELLED, S.TIMEOUT, S.APPROVAL_DENIED})
#: Before its commands reach the inbox: the fan-out's states, which the recovery sweep resumes.
PRE_DISPATCH_STATES = frozenset({S.CREATED, S.RESOLVING, S.RESOLVED, S.DISPATCHING})
#: A continuous operation takes devices that come to match in these states (``operations.continuous``):
#: after its fan-out, before it finishes; not while paused (it catches up on resuming).
JOINABLE_STATES = frozenset({S.SCHEDULED, S.DISPATCHED, S.PROCESSING})
#: Stopping moves, allowed from every state that is not terminal.
_STOP = frozenset({S.CANCELLED, S.TIMEOUT, S.FAILURE})
#: States an operator may pause (contract section 9): every unfinished one. ``PAUSED`` goes
#: back to the one it left (``Operation.paused_from``), or stops.
PAUSABLE_STATES = frozenset(
    {S.CREATED, S.RESOLVING, S.RESOLVED, S.SCHEDULED, S.DISPATCHING, S.DISPATCHED, S.PROCESSING}
)
#: The inbox hands out no command of an operation in these states (``commands.services.hand_out``),
#: and no sweep queues one of them again, releases or reschedules it (``operations.sweeps.held``):
#: a paused one waits as it is, a stopped one's stop moves them (``operations.stopping``).
HOLDING_STATES = frozenset({S.PAUSED}) | TERMINAL_STATES

#: The only place that decides which state may follow which.
ALLOWED_TRANSITIONS: dict[OperationState, frozenset[OperationState]] = {
    S.CREATED: frozenset({S.RESOLVING, S.PAUSED}) | _STOP,
    S.RESOLVING: frozenset({S.RESOLVED, S.PAUSED}) | _STOP,
    S.RESOLVED: frozenset({S.DISPATCHING, S.SCHEDULED, S.PAUSED}) | _STOP,
    S.SCHEDULED: frozenset({S.DISPATCHING, S.COMPLETED, S.PAUSED}) | _STOP,
    S.DISPATCHING: frozenset({S.DISPATCHED, S.PAUSED}) | _STOP,
    S.DISPATCHED: frozenset({S.PROCESSING, S.COMPLETED, S.SCHEDULED, S.PAUSED}) | _STOP,
    S.PROCESSING: frozenset({S.COMPLETED, S.SCHEDULED, S.PAUSED}) | _STOP,
    # Resuming goes back to the state the pause left (Operation.paused_from).
    S.PAUSED: PAUSABLE_STATES | _STOP,
    # Approval (operations.approvals): on to CREATED as if just created (a RECURRING series to
    # SCHEDULED, waiting for its first firing), or denied; a waiting operation may also be
    # withdrawn (cancelled) or stopped like any unfinished one.
    S.WAITING_FOR_APPROVAL: frozenset({S.CREATED, S.SCHEDULED, S.APPROVAL_DENIED}) | _STOP,
    S.COMPLETED: frozenset({S.SUCCESS, S.FAILURE}),
    S.SUCCESS: frozenset(),
    S.FAILURE: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMEOUT: frozenset(),
    S.APPROVAL_DENIED: frozenset(),
}

#: The states a PUT may ask for, with the state each is stored as.
REQUESTABLE_STATES = {
    "CANCELLED": S.CANCELLED,
    "TIMEOUT": S.TIMEOUT,
    "FAILED": S.FAILURE,
    "FAILURE": S.FAILURE,
    "SCHEDULED": S.SCHEDULED,
    "PAUSED": S.PAUSED,
    "COMPLETED": S.COMPLETED,
}
#: ``state: RESUMED`` in a PUT: not a state of its own, the way back from PAUSED.
RESUMED = "RESUMED"

#: How each state is named in ``operation_activity`` (seed 003's activity enum where it has one).
ACTIVITY_NAMES = {
    S.CREATED: "CREATED",
    S.RESOLVING: "QUERY INITIATED",
    S.RESOLVED: "QUERY RESOLVED",
    S.DISPATCHING: "DISPATCHING",
    S.DISPATCHED: "DISPATCHED",
    S.PROCESSING: "PROCESSING",
    S.COMPLETED: "COMPLETED",
    S.SUCCESS: "SUCCESS",
    S.FAILURE: "FAILURE",
    S.SCHEDULED: "SCHEDULED",
    S.CANCELLED: "CANCELLED",
    S.TIMEOUT: "TIMEOUT",
    S.PAUSED: "PAUSED",
    S.WAITING_FOR_APPROVAL: "WAITING_FOR_APPROVAL",
    S.APPROVAL_DENIED: "APPROVAL_DENIED",
}


def can_move(current: OperationState | int, target: OperationState | int) -> bool:
    return OperationState(target) in ALLOWED_TRANSITIONS[OperationState(current)]


def state_from_param(value: str) -> OperationState | None:
    """``?state=`` takes the integer, the name, or the name with its ``OPERATION_`` prefix.

    The integer is ASCII digits only, and short: ``str.isdigit`` also accepts superscripts
    such as ``²`` (which ``int`` refuses), other scripts' digits would be read as numbers
    nobody typed, and ``int`` refuses more than 4,300 digits. Anything else is unknown (None).
    """
    text = value.strip().upper().removeprefix("OPERATION_")
    if re.fullmatch(r"[0-9]{1,4}", text):
        return OperationState(int(text)) if int(text) in OperationState.values else None
    return OperationState.__members__.get(text)
