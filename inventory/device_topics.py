"""The MQTT topics of one device (contract section 14), named in one place.

``dos/v1/{t}/{d}/...``: ``{t}`` the tenant's slug, ``{d}`` the device id. Neither can hold
``/``, ``+`` or ``#`` (``inventory.device_rows.DEVICE_ID_PATTERN``, slugs), so a device's
topics never overlap another's and a topic parses back to exactly one device.

Used by the bridge (what it subscribes to, where it replies), the push (where a notify goes),
the broker logins (the ACLs that confine a device to its own topics) and the credentials
endpoint (the topics it lists).
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "dos/v1"
#: The device-to-server topics the bridge subscribes to, as filters.
INBOX_GET_FILTER = f"{ROOT}/+/+/inbox/get"
UPDATE_FILTER = f"{ROOT}/+/+/commands/+/update"


def prefix(tenant_slug: str, device_id: str) -> str:
    return f"{ROOT}/{tenant_slug}/{device_id}"


def notify(tenant_slug: str, device_id: str) -> str:
    """Server to device, QoS 1: a command became available."""
    return f"{prefix(tenant_slug, device_id)}/notify"


def inbox_get(tenant_slug: str, device_id: str) -> str:
    return f"{prefix(tenant_slug, device_id)}/inbox/get"


def inbox_get_accepted(tenant_slug: str, device_id: str) -> str:
    return f"{inbox_get(tenant_slug, device_id)}/accepted"


def update(tenant_slug: str, device_id: str, command_id: int | str) -> str:
    return f"{prefix(tenant_slug, device_id)}/commands/{command_id}/update"


def update_accepted(tenant_slug: str, device_id: str, command_id: int | str) -> str:
    return f"{update(tenant_slug, device_id, command_id)}/accepted"


def update_rejected(tenant_slug: str, device_id: str, command_id: int | str) -> str:
    return f"{update(tenant_slug, device_id, command_id)}/rejected"


@dataclass(frozen=True)
class DeviceTopics:
    """What a device may do on the broker: subscribe to and receive these, publish those."""

    subscribe: tuple[str, ...]
    publish: tuple[str, ...]


def allowed(tenant_slug: str, device_id: str) -> DeviceTopics:
    """A device's own topics, as topic filters (its ACLs and its credentials' ``topics``)."""
    base = prefix(tenant_slug, device_id)
    return DeviceTopics(
        subscribe=(
            f"{base}/notify",
            f"{base}/inbox/get/accepted",
            f"{base}/commands/+/update/accepted",
            f"{base}/commands/+/update/rejected",
        ),
        publish=(f"{base}/inbox/get", f"{base}/commands/+/update"),
    )


@dataclass(frozen=True)
class Incoming:
    """A device-to-server topic, parsed: ``kind`` is ``"inbox/get"`` or ``"update"``."""

    tenant_slug: str
    device_id: str
    kind: str
    command_id: str | None = None


def parse(topic: str) -> Incoming | None:
    """The device and request a device-to-server topic names (a ``$share/...`` prefix removed
    by the caller); ``None`` for any other topic."""
    parts = topic.split("/")
    if len(parts) < 6 or "/".join(parts[:2]) != ROOT:
        return None
    tenant_slug, device_id, rest = parts[2], parts[3], parts[4:]
    if not tenant_slug or not device_id:
        return None
    if rest == ["inbox", "get"]:
        return Incoming(tenant_slug, device_id, "inbox/get")
    if len(rest) == 3 and rest[0] == "commands" and rest[2] == "update" and rest[1]:
        return Incoming(tenant_slug, device_id, "update", rest[1])
    return None
