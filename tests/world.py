"""One tenant's worth of every kind of object, and the path parameters that reach each of them.

The fuzz, isolation and mass-assignment tests walk every path of the OpenAPI document;
:func:`path_parameters` fills a path's parameters from a :class:`World`, and fails loudly for
a path it does not know, so a new endpoint cannot be left out of those tests.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from commands.models import CommandStatus
from inventory.models import Group, WebhookDelivery, WebhookEndpoint, WebhookEvent
from inventory.webhooks.services import create_endpoint
from maintenance import services as maintenance
from maintenance.models import MaintenanceJob
from operations import headless
from operations.models import HeadlessOperation, Operation, OperationTemplate
from operations.services import create_operation
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, add_device


@dataclass
class World:
    org: Org
    device: DeviceActor
    second_device: DeviceActor
    group: Group
    operation: Operation
    #: A WIPE waiting for approval (the default policy holds it), asked for by another principal
    #: than the org's keys, so that an admin key may approve or deny it.
    waiting: Operation
    command: CommandStatus
    second_command: CommandStatus
    headless: HeadlessOperation
    job: MaintenanceJob
    webhook: WebhookEndpoint
    delivery: WebhookDelivery
    template: OperationTemplate

    def ids(self) -> set[str]:
        """Every id of this world that a list could show."""
        return {
            self.device.device.device_id,
            self.second_device.device.device_id,
            str(self.group.pk),
            str(self.operation.pk),
            str(self.waiting.pk),
            str(self.command.pk),
            str(self.second_command.pk),
            str(self.headless.pk),
            str(self.job.pk),
            str(self.webhook.pk),
            str(self.template.pk),
        }


def build_world(org: Org, prefix: str = "w") -> World:
    device = add_device(org.tenant, f"{prefix}-dev-1", tags=["fleet"])
    second = add_device(org.tenant, f"{prefix}-dev-2")
    group = Group.objects.create(tenant=org.tenant, name=f"{prefix}-group")
    device.device.groups.add(group)
    operation = dispatched_operation(org.tenant, [device, second])
    waiting = create_operation(
        org.tenant.pk,
        {"operation_type": "WIPE", "operation_device_query": {"devices": [second.device.device_id]}},
        "tests",
        "key:someone-else",
    )
    operation_headless = headless.create_operation(
        org.tenant.pk,
        device.device,
        operation_type="firmware_update",
        scheduled_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        parameters={"version": "1.2.3"},
        priority=1,
        actor="tests",
    )
    job = maintenance.create_job(org.tenant.pk, "0 0 3 ? * MON", created_by="tests")
    # A public address literal: the SSRF guard lets it through without DNS, and no test sends to it.
    webhook, _ = create_endpoint(org.tenant.pk, "https://93.184.216.34/hooks", ["*"])
    event = WebhookEvent.objects.create(tenant=org.tenant, type="webhook.ping", data={}, endpoint=webhook)
    delivery = WebhookDelivery.objects.create(
        endpoint=webhook,
        event=event,
        event_type=event.type,
        attempt=1,
        status_code=500,
        created_at=timezone.now(),
    )
    template = OperationTemplate.objects.create(
        tenant=org.tenant,
        name=f"{prefix}-template",
        operation_type="INSTALL_APP",
        arguments={"version": "{{version}}"},
        parameters={"version": {"type": "string", "default": "1.0"}},
        device_query={"devices": [device.device.device_id]},
        created_by="tests",
    )
    return World(
        org=org,
        device=device,
        second_device=second,
        group=group,
        operation=operation,
        waiting=waiting,
        command=command_of(operation, device),
        second_command=command_of(operation, second),
        headless=operation_headless,
        job=job,
        webhook=webhook,
        delivery=delivery,
        template=template,
    )


#: OpenAPI path templates (with ``{}`` for each parameter) and how to fill them from a World.
_FILLERS: list[tuple[str, Any]] = [
    ("/v0/devices/{}/", lambda w: {"id": w.device.device.device_id}),
    ("/v0/devices/{}/rotate-token/", lambda w: {"id": w.second_device.device.device_id}),
    ("/v0/devices/{}/revoke-token/", lambda w: {"id": w.second_device.device.device_id}),
    ("/v0/groups/{}/", lambda w: {"id": str(w.group.pk)}),
    ("/v0/webhooks/{}/", lambda w: {"id": str(w.webhook.pk)}),
    ("/v0/webhooks/{}/rotate-secret/", lambda w: {"id": str(w.webhook.pk)}),
    ("/v0/webhooks/{}/ping/", lambda w: {"id": str(w.webhook.pk)}),
    ("/v0/webhooks/{}/deliveries/", lambda w: {"id": str(w.webhook.pk)}),
    (
        "/v0/webhooks/{}/deliveries/{}/redeliver/",
        lambda w: {"id": str(w.webhook.pk), "delivery_id": str(w.delivery.pk)},
    ),
    ("/v0/operations/{}/", lambda w: {"id": str(w.operation.pk)}),
    ("/v0/operations/{}/approve/", lambda w: {"id": str(w.waiting.pk)}),
    ("/v0/operations/{}/deny/", lambda w: {"id": str(w.waiting.pk)}),
    ("/v0/operation-templates/{}/", lambda w: {"id": str(w.template.pk)}),
    ("/v0/operations/{}/rerun/", lambda w: {"id": str(w.operation.pk)}),
    ("/commands/v0/status/{}/", lambda w: {"id": str(w.command.pk)}),
    ("/api/v1/inventory_device_headless_operation/{}/", lambda w: {"id": str(w.headless.pk)}),
    ("/api/v1/inventory_device_headless_operation/{}/cancel/", lambda w: {"id": str(w.headless.pk)}),
    ("/aggregates/maintenance/scheduler/jobs/orgId/{}", lambda w: {"org_id": w.org.tenant.slug}),
    (
        "/api/1.0/aggregates/maintenance-schedule/jobs/orgId/{}/jobId/{}",
        lambda w: {"org_id": w.org.tenant.slug, "job_id": str(w.job.pk)},
    ),
]
FILLERS = dict(_FILLERS)


def shape(path: str) -> str:
    """``/v0/devices/{id}/`` -> ``/v0/devices/{}/``."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def path_parameters(path: str, world: World) -> dict[str, str]:
    """The parameters of an OpenAPI path that reach ``world``'s objects; loud for an unknown path."""
    if "{" not in path:
        return {}
    try:
        filler = FILLERS[shape(path)]
    except KeyError:
        raise AssertionError(
            f"{path}: no known way to fill its parameters; add it to tests/world.py _FILLERS "
            "(and to the isolation and mass-assignment tables)"
        ) from None
    return dict(filler(world))


def fill(path: str, params: dict[str, str]) -> str:
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return path
