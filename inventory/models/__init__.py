"""Tenants, their API keys, devices and groups."""

from inventory.models.audit import AuditEntry
from inventory.models.console import ConsoleUser
from inventory.models.devices import Device, DeviceState, Group
from inventory.models.tenants import ApiKey, Role, Tenant

__all__ = [
    "ApiKey",
    "AuditEntry",
    "ConsoleUser",
    "Device",
    "DeviceState",
    "Group",
    "Role",
    "Tenant",
]
