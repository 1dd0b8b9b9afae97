"""The audit log: every write by an API key or a console user, once; read-only in the console."""

from __future__ import annotations

from typing import Any

from django.test import Client

from inventory.models import AuditEntry
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org


def test_an_api_write_is_recorded_with_who_what_when_and_where(org: Org) -> None:
    response = org.operator.post("/v0/groups/", {"name": "audited"}, HTTP_USER_AGENT="fleet-cli/1.0")

    entry = AuditEntry.objects.get()
    assert response.status_code == 201
    assert entry.actor_kind == "key" and entry.actor == "operator" and entry.key_id is not None
    assert entry.tenant_id == org.tenant.pk
    assert (entry.method, entry.path, entry.status_code) == ("POST", "/v0/groups/", 201)
    assert entry.object_type == "inventory.Group" and entry.object_id == response.json()["content"]["id"]
    assert entry.ip == "127.0.0.1" and entry.user_agent == "fleet-cli/1.0"
    assert entry.created_at is not None


def test_behind_trusted_proxies_the_address_is_the_forwarded_one(org: Org, settings: Any) -> None:
    forwarded = {"HTTP_X_FORWARDED_FOR": "198.51.100.9, 203.0.113.4", "REMOTE_ADDR": "10.0.0.2"}
    org.operator.post("/v0/groups/", {"name": "direct"}, **forwarded)
    settings.TRUSTED_PROXY_COUNT = 1
    org.operator.post("/v0/groups/", {"name": "proxied"}, **forwarded)

    assert list(AuditEntry.objects.order_by("id").values_list("ip", flat=True)) == ["10.0.0.2", "203.0.113.4"]


def test_updates_deletes_and_refused_writes_are_recorded_reads_are_not(org: Org, device: DeviceActor) -> None:
    org.viewer.get("/v0/devices/")
    org.admin.patch("/v0/devices/dev-1/", {"name": "renamed"})
    org.viewer.delete("/v0/devices/dev-1/")  # a viewer: 403
    org.admin.post("/v0/operations/preview/", {"operation_device_query": {"all": True}})  # changes nothing

    rows = list(AuditEntry.objects.order_by("id").values_list("actor", "method", "object_id", "status_code"))
    assert rows == [("admin", "PATCH", "dev-1", 200), ("viewer", "DELETE", "dev-1", 403)]


def test_device_status_reports_are_not_audited(org: Org, device: DeviceActor) -> None:
    command = command_of(dispatched_operation(org.tenant, [device]), device)

    response = device.api.put(f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged"})

    assert response.status_code == 200
    assert not AuditEntry.objects.exists()


def test_maintenance_writes_are_recorded(org: Org) -> None:
    path = "/aggregates/maintenance/scheduler/jobs/orgId/acme"
    response = org.admin.post(path, {"time_expression": "0 0 3 ? * MON", "scheduler_type": "time-based"})

    entry = AuditEntry.objects.get()
    assert entry.object_id == "acme"
    assert entry.status_code == 200 and response.status_code == 200


def test_console_writes_are_recorded(org: Org, console: Client) -> None:
    console.post("/admin/inventory/group/add/", {"tenant": org.tenant.pk, "name": "from the console"})

    entry = AuditEntry.objects.get()
    assert entry.actor_kind == "console" and entry.actor == "root"
    assert (entry.method, entry.object_type) == ("POST", "inventory.group")


def test_the_audit_log_is_read_only_in_the_console(org: Org, console: Client) -> None:
    org.admin.post("/v0/groups/", {"name": "audited"})
    entry = AuditEntry.objects.get()

    assert console.get("/admin/inventory/auditentry/").status_code == 200
    assert console.get(f"/admin/inventory/auditentry/{entry.pk}/change/").status_code == 200
    assert console.get("/admin/inventory/auditentry/add/").status_code == 403
    assert console.post(f"/admin/inventory/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    console.post(f"/admin/inventory/auditentry/{entry.pk}/change/", {"actor": "forged"})
    entry.refresh_from_db()
    assert entry.actor == "admin"
