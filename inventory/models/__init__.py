"""Tenants, their API keys, devices and groups."""

from inventory.models.audit import AuditEntry
from inventory.models.broker import BrokerLogin
from inventory.models.console import ConsoleUser
from inventory.models.devices import Device, DeviceState, Group
from inventory.models.tenants import ApiKey, Role, Tenant
from inventory.models.webhooks import (
    EventType,
    PendingDelivery,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "ApiKey",
    "AuditEntry",
    "BrokerLogin",
    "ConsoleUser",
    "Device",
    "DeviceState",
    "EventType",
    "Group",
    "PendingDelivery",
    "Role",
    "Tenant",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
