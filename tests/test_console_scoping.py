"""Tenant scoping of the console: a tenant's staff user sees nothing of another tenant.

The checks are generated from the admin registry, so a ModelAdmin added later is checked too:
it must be tenant-scoped (and get a factory below) or superuser-only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db import models
from django.urls import reverse
from django.utils import timezone

from commands.models import CommandStatus
from config.console.actions import key_problem
from inventory.models import (
    ApiKey,
    Device,
    Group,
    Tenant,
    WebhookEndpoint,
)
from inventory.scoping import SuperuserOnlyAdmin, TenantScopedAdmin
from inventory.services import create_api_key, create_device, get_or_create_tenant
from inventory.webhooks.services import create_endpoint
from maintenance import services as maintenance
from maintenance.models import MaintenanceJob
from operations.approvals import set_policy
from operations.choices import OperationState
from operations.models import (
    ApprovalPolicy,
    HeadlessOperation,
    Operation,
    OperationTemplate,
    UpcomingHeadlessRun,
)
from tests.conftest import staff_console, superuser_console

OTHER = "zz-other"  # every object of the other tenant carries this, so a leak shows in the HTML


def _device(tenant: Tenant, name: str) -> Device:
    return create_device(tenant.pk, {"device_id": f"{name}-dev"})[0]


def _operation(tenant: Tenant, name: str) -> Operation:
    return Operation.objects.create(
        tenant=tenant, operation_type="REBOOT", device_query={"all": True}, created_by=name
    )


def _headless(tenant: Tenant, name: str) -> HeadlessOperation:
    return HeadlessOperation.objects.create(
        tenant=tenant,
        device=_device(tenant, name),
        operation_type=f"{name}_task".replace("-", "_"),
        scheduled_at=timezone.now() + dt.timedelta(hours=1),
    )


def _policy(tenant: Tenant, name: str) -> ApprovalPolicy:
    set_policy(tenant.pk, ["WIPE"], None, 72, name)
    return ApprovalPolicy.objects.get(tenant=tenant)


FACTORIES: dict[type[models.Model], Callable[[Tenant, str], models.Model]] = {
    Tenant: lambda tenant, name: tenant,
    ApiKey: lambda tenant, name: create_api_key(tenant, "viewer", f"{name}-key")[0],
    Group: lambda tenant, name: Group.objects.create(tenant=tenant, name=f"{name}-group"),
    Device: _device,
    HeadlessOperation: _headless,
    UpcomingHeadlessRun: lambda tenant, name: UpcomingHeadlessRun.objects.get(pk=_headless(tenant, name).pk),
    Operation: _operation,
    CommandStatus: lambda tenant, name: CommandStatus.objects.create(
        tenant=tenant, operation=_operation(tenant, name), device=_device(tenant, name), command="REBOOT"
    ),
    MaintenanceJob: lambda tenant, name: maintenance.create_job(tenant.pk, "0 0 4 ? * *", created_by=name),
    WebhookEndpoint: lambda tenant, name: create_endpoint(tenant.pk, f"https://93.184.216.34/{name}", ["*"])[
        0
    ],
    OperationTemplate: lambda tenant, name: OperationTemplate.objects.create(
        tenant=tenant, name=f"{name}-template", operation_type="REBOOT", created_by=name
    ),
    ApprovalPolicy: _policy,
}

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
SCOPED = [model for model, model_admin in REGISTRY if isinstance(model_admin, TenantScopedAdmin)]
SUPERUSER_ONLY = [model for model, model_admin in REGISTRY if isinstance(model_admin, SuperuserOnlyAdmin)]


#: An object's pages another tenant's staff user must not reach.
VIEWS = ("change", "history", "delete")


def label(model: Any) -> str:
    return str(model._meta.label)


def url(model: type[models.Model], view: str, *args: Any) -> str:
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"
    return reverse(name, args=[quote(arg) for arg in args])


def keys(obj: models.Model) -> list[str]:
    """The keys the console's URLs take for an object, the one its links use first: a device
    by its device id (and, for older links, its integer key), the rest by primary key."""
    if isinstance(obj, Device):
        return [obj.device_id, str(obj.pk)]
    return [str(obj.pk)]


@pytest.fixture
def tenants(db: None) -> tuple[Tenant, Tenant]:
    return get_or_create_tenant("mine")[0], get_or_create_tenant(OTHER)[0]


@pytest.mark.parametrize("model", [model for model, _ in REGISTRY], ids=label)
def test_every_registered_admin_is_tenant_scoped_or_superuser_only(model: type[models.Model]) -> None:
    model_admin = admin.site._registry[model]

    assert isinstance(model_admin, TenantScopedAdmin | SuperuserOnlyAdmin), (
        f"{type(model_admin).__name__} must derive from config.inventory.scoping.TenantScopedAdmin "
        "(or SuperuserOnlyAdmin)"
    )
    if isinstance(model_admin, TenantScopedAdmin):
        assert model in FACTORIES, f"add a factory for {label(model)} to {__name__}.FACTORIES"
        assert model_admin.get_tenant_field(), f"{label(model)}: no path to a tenant; set tenant_field"


@pytest.mark.parametrize("model", SCOPED, ids=label)
def test_staff_user_sees_only_their_tenant(model: type[models.Model], tenants: tuple[Tenant, Tenant]) -> None:
    mine_tenant, other_tenant = tenants
    mine = FACTORIES[model](mine_tenant, "mine")
    theirs = FACTORIES[model](other_tenant, OTHER)
    console = staff_console("alice", mine_tenant)

    listing = console.get(url(model, "changelist"))
    own_pages = [console.get(url(model, "change", key)) for key in keys(mine)]
    can_add = admin.site._registry[model].has_add_permission(listing.wsgi_request)
    add_page = console.get(url(model, "add")) if can_add else None  # before the "doesn't exist" messages
    their_pages = [console.get(url(model, view, key)) for key in keys(theirs) for view in VIEWS]

    assert listing.status_code == 200
    html = listing.content.decode()
    assert url(model, "change", keys(mine)[0]) in html
    assert all(url(model, "change", key) not in html for key in keys(theirs))
    assert OTHER not in html, "another tenant's name or objects leak into the list (filters?)"
    for own_page in own_pages:
        assert own_page.status_code == 200 and OTHER not in own_page.content.decode()
    for page in their_pages:
        assert page.status_code in (302, 403, 404)
        assert page.status_code != 302 or page["Location"] == reverse("admin:index")
    if add_page is not None:
        assert add_page.status_code == 200 and OTHER not in add_page.content.decode(), "foreign key choices"


@pytest.mark.parametrize("model", SCOPED, ids=label)
def test_actions_ignore_another_tenants_objects(
    model: type[models.Model], tenants: tuple[Tenant, Tenant]
) -> None:
    mine_tenant, other_tenant = tenants
    theirs = FACTORIES[model](other_tenant, OTHER)
    console = staff_console("alice", mine_tenant)
    model_admin = admin.site._registry[model]
    request = console.get(url(model, "changelist")).wsgi_request

    for action in model_admin.get_actions(request):
        console.post(
            url(model, "changelist"), {"action": action, "_selected_action": [str(theirs.pk)], "post": "yes"}
        )

    assert type(theirs)._base_manager.filter(pk=theirs.pk).exists()


def test_cancel_action_cannot_reach_another_tenants_operation(tenants: tuple[Tenant, Tenant]) -> None:
    mine_tenant, other_tenant = tenants
    theirs = _operation(other_tenant, OTHER)
    console = staff_console("alice", mine_tenant)

    console.post(url(Operation, "changelist"), {"action": "cancel", "_selected_action": [str(theirs.pk)]})

    theirs.refresh_from_db()
    assert theirs.state == OperationState.CREATED


@pytest.mark.parametrize("model", SCOPED, ids=label)
def test_superuser_sees_every_tenant(model: type[models.Model], tenants: tuple[Tenant, Tenant]) -> None:
    mine = FACTORIES[model](tenants[0], "mine")
    theirs = FACTORIES[model](tenants[1], OTHER)
    console = superuser_console()

    html = console.get(url(model, "changelist")).content.decode()

    assert url(model, "change", keys(mine)[0]) in html and url(model, "change", keys(theirs)[0]) in html
    assert all(console.get(url(model, "change", key)).status_code == 200 for key in keys(theirs))


def test_staff_user_without_a_tenant_sees_nothing(tenants: tuple[Tenant, Tenant]) -> None:
    for model in SCOPED:
        FACTORIES[model](tenants[0], f"mine-{model._meta.model_name}")
    console = staff_console("nobody", None)

    index = console.get(reverse("admin:index"))

    assert index.status_code == 200 and index.context["app_list"] == []
    for model in SCOPED:
        assert console.get(url(model, "changelist")).status_code == 403, label(model)


@pytest.mark.parametrize("model", SUPERUSER_ONLY, ids=label)
def test_superuser_only_screens_refuse_staff(
    model: type[models.Model], tenants: tuple[Tenant, Tenant]
) -> None:
    console = staff_console("alice", tenants[0])

    assert console.get(url(model, "changelist")).status_code == 403


def test_console_user_links_a_staff_user_to_one_tenant(tenants: tuple[Tenant, Tenant]) -> None:
    console = staff_console("alice", tenants[0])

    index = console.get(reverse("admin:index"))

    assert index.status_code == 200
    sections = {app["name"]: app for app in index.context["app_list"]}
    assert list(sections) == ["Operations", "Devices", "Templates", "Maintenance", "Webhooks", "Settings"]
    links = {model["name"] for app in sections.values() for model in app["models"]}
    assert {"Active", "Failing now", "Devices", "Command statuses", "API keys"} <= links
    assert not links & {"Users", "User groups", "Periodic tasks", "Access attempts", "Console users"}


#: ``_selected_action`` values an integer or UUID key cannot take (a character key takes most,
#: and matches nothing): a browser never sends them, a hand-made POST may, and the console must
#: answer with a message rather than a 500.
NOT_KEYS = ("not-a-key", "1.5", "", "\x00", "9" * 40, "-1e9")


@pytest.mark.parametrize("model", [model for model, _ in REGISTRY], ids=label)
def test_an_action_on_keys_that_are_not_keys_is_a_message_not_a_500(
    model: type[models.Model], tenants: tuple[Tenant, Tenant]
) -> None:
    console = superuser_console()
    console.raise_request_exception = False
    model_admin = admin.site._registry[model]
    key_field = model._meta.pk
    assert key_field is not None
    request = console.get(url(model, "changelist")).wsgi_request

    for action in model_admin.get_actions(request):
        for value in NOT_KEYS:
            for extra in ({}, {"post": "yes"}, {"index": "0"}):
                answer = console.post(
                    url(model, "changelist"), {"action": action, "_selected_action": [value], **extra}
                )

                assert answer.status_code < 500, (action, value, extra)
                if key_problem(key_field, value) is not None:  # refused before the query
                    assert answer.status_code == 302, (action, value, extra)
                    shown = [str(m) for m in console.get(answer["Location"]).context["messages"]]
                    assert any("No items have been changed" in m for m in shown), shown
