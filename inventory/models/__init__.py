"""Tenants, their API keys, devices and groups."""

from inventory.models.devices import Device, DeviceState, Group
from inventory.models.headless import HeadlessOperation, HeadlessStatus
from inventory.models.tenants import ApiKey, Role, Tenant

__all__ = [
    "ApiKey",
    "Device",
    "DeviceState",
    "Group",
    "HeadlessOperation",
    "HeadlessStatus",
    "Role",
    "Tenant",
]
