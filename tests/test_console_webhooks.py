"""Webhook endpoints in the console: the secret shown once, events as checkboxes, a test ping,
recent deliveries with a Redeliver button, disabled endpoints marked, tenant scoping."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from config.encryption import unseal
from inventory.models import PendingDelivery, WebhookDelivery, WebhookEndpoint, WebhookEvent
from inventory.webhooks.services import create_endpoint
from tests.conftest import Org, add_device, staff_console
from tests.test_console_secrets import one_time_secrets

pytestmark = pytest.mark.django_db

ADMIN = "/admin/inventory/webhookendpoint/"
PUBLIC = "https://93.184.216.34/hooks"


def _add(console: Client, org: Org, **fields: Any) -> Any:
    data = {"tenant": org.tenant.pk, "url": PUBLIC, "description": "", "events": ["*"], "active": "on"}
    data.update(fields)
    return console.post(f"{ADMIN}add/", data)


def test_adding_an_endpoint_shows_its_secret_once(console: Client, org: Org) -> None:
    page = console.get(f"{ADMIN}add/")
    html = page.content.decode()
    assert 'type="checkbox" name="events" value="command.state_changed"' in html
    assert 'value="*"' in html

    response = _add(console, org, events=["device.created", "command.state_changed"])
    _, [secret] = one_time_secrets(console, response)

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["device.created", "command.state_changed"]
    assert unseal(endpoint.secret_sealed) == secret and secret.startswith("whsec_")
    Webhook(secret)  # the library takes it as given


def test_a_private_address_is_refused_on_the_form(console: Client, org: Org) -> None:
    page = _add(console, org, url="http://10.0.0.1/x")
    assert page.status_code == 200 and "private" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_list_and_the_page_mark_a_disabled_endpoint(console: Client, org: Org) -> None:
    endpoint, _ = create_endpoint(org.tenant.pk, PUBLIC, ["*"])
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        active=False, disabled_at=timezone.now(), disabled_reason="the endpoint answered 410 Gone"
    )
    listing = console.get(ADMIN).content.decode()
    assert "DISABLED" in listing and "410 Gone" in listing
    page = console.get(f"{ADMIN}{endpoint.pk}/change/").content.decode()
    assert "DISABLED" in page and 'id="ping-endpoint"' not in page


def test_ping_and_redeliver_from_the_page(console: Client, org: Org) -> None:
    endpoint, _ = create_endpoint(org.tenant.pk, PUBLIC, ["*"])
    assert 'id="ping-endpoint"' in console.get(f"{ADMIN}{endpoint.pk}/change/").content.decode()

    response = console.post(f"{ADMIN}{endpoint.pk}/ping/")
    assert response.status_code == 302
    event = WebhookEvent.objects.get(type="webhook.ping")
    assert PendingDelivery.objects.filter(endpoint=endpoint, event=event).exists()

    PendingDelivery.objects.all().delete()
    attempt = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=event,
        event_type=event.type,
        attempt=1,
        status_code=502,
        created_at=timezone.now(),
    )
    page = console.get(f"{ADMIN}{endpoint.pk}/change/").content.decode()
    table = re.search(r'<table id="webhook-deliveries">.*?</table>', page, re.S)
    assert table is not None and "502" in table.group(0) and f"evt_{event.pk}" in table.group(0)
    redeliver = f"{ADMIN}{endpoint.pk}/deliveries/{attempt.pk}/redeliver/"
    assert f'formaction="{redeliver}"' in table.group(0)

    assert console.post(redeliver).status_code == 302
    assert PendingDelivery.objects.get(endpoint=endpoint, event=event).attempt == 2


def test_rotating_the_secret_shows_the_new_one_once(console: Client, org: Org) -> None:
    endpoint, old = create_endpoint(org.tenant.pk, PUBLIC, ["*"])
    _, [new] = one_time_secrets(console, console.post(f"{ADMIN}{endpoint.pk}/rotate-secret/"))
    endpoint.refresh_from_db()
    assert new != old and unseal(endpoint.secret_sealed) == new


def test_a_tenants_staff_sees_only_its_endpoints(org: Org, other_org: Org) -> None:
    mine, _ = create_endpoint(org.tenant.pk, PUBLIC, ["*"])
    theirs, _ = create_endpoint(other_org.tenant.pk, "https://93.184.216.35/x", ["*"])
    staff = staff_console("alice", org.tenant)
    listing = staff.get(ADMIN).content.decode()
    assert PUBLIC in listing and "93.184.216.35" not in listing
    assert staff.get(f"{ADMIN}{theirs.pk}/change/").status_code in (302, 404)
    assert staff.post(f"{ADMIN}{theirs.pk}/ping/").status_code == 404
    assert not WebhookEvent.objects.exists()
    assert staff.get(f"{ADMIN}{mine.pk}/change/").status_code == 200


def test_deleting_devices_in_the_console_emits_device_deleted(console: Client, org: Org) -> None:
    create_endpoint(org.tenant.pk, PUBLIC, ["device.deleted"])
    devices = [add_device(org.tenant, f"gone-{i}").device for i in range(3)]
    response = console.post(
        "/admin/inventory/device/",
        {"action": "delete_selected", "_selected_action": [d.pk for d in devices], "post": "yes"},
    )
    assert response.status_code == 302
    deleted = sorted(e.data["id"] for e in WebhookEvent.objects.filter(type="device.deleted"))
    assert deleted == ["gone-0", "gone-1", "gone-2"]
