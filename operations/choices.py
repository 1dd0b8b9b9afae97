"""Operation enums and the one table of allowed state moves."""

from __future__ import annotations

import re

from django.db import models


class OperationType(models.TextChoices):
    """Every operation type of seed 003; anything else is refused with a 400.

    Each with the label people read (the console's forms, lists, filters and messages): the
    one table of them. Django's default would title-case the value ("Install Ota")."""

    CONVERGE = "CONVERGE", "Converge"
    INSTALL = "INSTALL", "Install"
    UNINSTALL = "UNINSTALL", "Uninstall"
    INSTALL_APP = "INSTALL_APP", "Install app"
    UNINSTALL_APP = "UNINSTALL_APP", "Uninstall app"
    REBOOT = "REBOOT", "Reboot"
    LOCK = "LOCK", "Lock"
    SHUT_DOWN = "SHUT_DOWN", "Shut down"
    WIPE = "WIPE", "Wipe"
    ADD_EMM_ACCOUNT = "ADD_EMM_ACCOUNT", "Add EMM account"
    ADD_OVERRIDE_APN = "ADD_OVERRIDE_APN", "Add override APN"
    ADD_WIFI_AP = "ADD_WIFI_AP", "Add Wi-Fi AP"
    REMOVE_WIFI_AP = "REMOVE_WIFI_AP", "Remove Wi-Fi AP"
    SET_ETHERNET_SETTINGS = "SET_ETHERNET_SETTINGS", "Set Ethernet settings"
    SET_STATIC_IP = "SET_STATIC_IP", "Set static IP"
    USE_ONLY_SAVED_WIFI_AP = "USE_ONLY_SAVED_WIFI_AP", "Use only saved Wi-Fi AP"
    ADD_TO_WHITELIST = "ADD_TO_WHITELIST", "Add to whitelist"
    REMOVE_FROM_WHITELIST = "REMOVE_FROM_WHITELIST", "Remove from whitelist"
    ALLOW_BLUETOOTH = "ALLOW_BLUETOOTH", "Allow Bluetooth"
    ALLOW_CAMERA = "ALLOW_CAMERA", "Allow camera"
    ALLOW_FACTORY_RESET = "ALLOW_FACTORY_RESET", "Allow factory reset"
    ALLOW_UNENROLLMENT_FROM_DEVICE = "ALLOW_UNENROLLMENT_FROM_DEVICE", "Allow unenrollment from device"
    DEFER_OS_UPDATES = "DEFER_OS_UPDATES", "Defer OS updates"
    PAUSE_OS_UPDATES = "PAUSE_OS_UPDATES", "Pause OS updates"
    SET_OS_UPDATE_POLICY = "SET_OS_UPDATE_POLICY", "Set OS update policy"
    APPLE_APP_UNINSTALL = "APPLE_APP_UNINSTALL", "Apple app uninstall"
    APPLY_APP_CONFIG = "APPLY_APP_CONFIG", "Apply app config"
    CLEAR_APP_DATA = "CLEAR_APP_DATA", "Clear app data"
    DIRECT_IOS_APP_INSTALL = "DIRECT_IOS_APP_INSTALL", "Direct iOS app install"
    INSTALL_CERTIFICATE = "INSTALL_CERTIFICATE", "Install certificate"
    INSTALL_OTA = "INSTALL_OTA", "Install OTA"
    NOTIFY_OTA = "NOTIFY_OTA", "Notify OTA"
    REFRESH_APPLIST = "REFRESH_APPLIST", "Refresh app list"
    SET_APP_NOTIFICATIONS = "SET_APP_NOTIFICATIONS", "Set app notifications"
    SET_APP_PERMISSION = "SET_APP_PERMISSION", "Set app permission"
    SET_APP_STATE = "SET_APP_STATE", "Set app state"
    SET_KIOSK_APP = "SET_KIOSK_APP", "Set kiosk app"
    SET_MULTI_APP_MODE = "SET_MULTI_APP_MODE", "Set multi app mode"
    SET_NEW_POLICY = "SET_NEW_POLICY", "Set new policy"
    SIMPLE_INSTALL = "SIMPLE_INSTALL", "Simple install"
    SYNC_CONTENT = "SYNC_CONTENT", "Sync content"
    UNINSTALL_CERTIFICATE = "UNINSTALL_CERTIFICATE", "Uninstall certificate"
    VPP_APP_INSTALL = "VPP_APP_INSTALL", "VPP app install"
    INSTALL_PROFILE = "INSTALL_PROFILE", "Install profile"
    INSTALL_PROVISIONING_PROFILE = "INSTALL_PROVISIONING_PROFILE", "Install provisioning profile"
    INSTALL_WEBCLIP = "INSTALL_WEBCLIP", "Install web clip"
    REMOVE_PROVISIONING_PROFILE = "REMOVE_PROVISIONING_PROFILE", "Remove provisioning profile"
    UNINSTALL_WEBCLIP = "UNINSTALL_WEBCLIP", "Uninstall web clip"
    LIST_PROVISIONING_PROFILES = "LIST_PROVISIONING_PROFILES", "List provisioning profiles"
    BEEP_DEVICE = "BEEP_DEVICE", "Beep device"
    CAPTURE_SCREENSHOT = "CAPTURE_SCREENSHOT", "Capture screenshot"
    INITIATE_CONFERENCE_CALL = "INITIATE_CONFERENCE_CALL", "Initiate conference call"
    INITIATE_OFFER = "INITIATE_OFFER", "Initiate offer"
    NOTIFY_DEVICE = "NOTIFY_DEVICE", "Notify device"
    NUDGE_DEVICE = "NUDGE_DEVICE", "Nudge device"
    REQUEST_BUGREPORT = "REQUEST_BUGREPORT", "Request bug report"
    REQUEST_DPCLOG = "REQUEST_DPCLOG", "Request DPC log"
    DEPLOY_SYSTEM_OTA = "DEPLOY_SYSTEM_OTA", "Deploy system OTA"
    UPDATE_BLUEPRINT = "UPDATE_BLUEPRINT", "Update blueprint"
    UPDATE_DEVICE_CONFIG = "UPDATE_DEVICE_CONFIG", "Update device config"
    UPDATE_OEM_CONFIG = "UPDATE_OEM_CONFIG", "Update OEM config"
    CLEAR_PASSCODE = "CLEAR_PASSCODE", "Clear passcode"
    RESET_LOCKSCREEN_PASSWORD = "RESET_LOCKSCREEN_PASSWORD", "Reset lockscreen password"
    SET_ADB_STATE = "SET_ADB_STATE", "Set ADB state"
    SET_DEVICE_LOCKDOWN_STATE = "SET_DEVICE_LOCKDOWN_STATE", "Set device lockdown state"
    DISABLE_LOST_MODE = "DISABLE_LOST_MODE", "Disable lost mode"
    ENABLE_LOST_MODE = "ENABLE_LOST_MODE", "Enable lost mode"
    LOST_MODE_DEVICE_LOCATION = "LOST_MODE_DEVICE_LOCATION", "Lost mode device location"
    PLAY_LOST_MODE_SOUND = "PLAY_LOST_MODE_SOUND", "Play lost mode sound"
    SET_BLUETOOTH_STATE = "SET_BLUETOOTH_STATE", "Set Bluetooth state"
    SET_BRIGHTNESS_SCALE = "SET_BRIGHTNESS_SCALE", "Set brightness scale"
    SET_DEVICE_LANGUAGE = "SET_DEVICE_LANGUAGE", "Set device language"
    SET_GEO_FENCE = "SET_GEO_FENCE", "Set geo fence"
    SET_GPS_STATE = "SET_GPS_STATE", "Set GPS state"
    SET_LOCATION_SERVICE = "SET_LOCATION_SERVICE", "Set location service"
    SET_ROTATION_STATE = "SET_ROTATION_STATE", "Set rotation state"
    SET_SCREEN_OFF_TIMEOUT = "SET_SCREEN_OFF_TIMEOUT", "Set screen off timeout"
    SET_STREAM_VOLUME = "SET_STREAM_VOLUME", "Set stream volume"
    SET_TIMEZONE = "SET_TIMEZONE", "Set timezone"
    SET_WALLPAPER = "SET_WALLPAPER", "Set wallpaper"
    SET_WIDGET = "SET_WIDGET", "Set widget"
    SET_WIFI_STATE = "SET_WIFI_STATE", "Set Wi-Fi state"
    RUN_CSP_PAYLOAD = "RUN_CSP_PAYLOAD", "Run CSP payload"
    SET_PFN = "SET_PFN", "Set PFN"
    COLLECT_LOGS = "COLLECT_LOGS", "Collect logs"
    REMOTE_CONNECTION = "REMOTE_CONNECTION", "Remote connection"
    REMOVE_AGENT = "REMOVE_AGENT", "Remove agent"
    REMOVE_DEVICE = "REMOVE_DEVICE", "Remove device"
    RUN_CUSTOM_ACTION = "RUN_CUSTOM_ACTION", "Run custom action"
    RUN_SHELL_SCRIPT = "RUN_SHELL_SCRIPT", "Run shell script"
    DECLARATIVE_MANAGEMENT = "DECLARATIVE_MANAGEMENT", "Declarative management"


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
