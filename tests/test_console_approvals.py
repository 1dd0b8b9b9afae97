"""The console's approvals queue (issue 25): two console users of one tenant, each a principal
of their own; the requester sees their request without buttons, another admin approves or
denies it with a remark; the queue shows who asked, when it expires and the devices its query
matches now; the dashboard counts what waits; another tenant's users see none of it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from inventory.models import AuditEntry, ConsoleUser, Tenant
from inventory.services import bulk_import_devices
from operations.choices import OperationState
from operations.models import Operation
from tests.conftest import Org

S = OperationState
ADD = "/admin/operations/operation/add/"
QUEUE = "/admin/operations/operation/approvals/"


def console_user(username: str, tenant: Tenant, may_approve: bool = True) -> tuple[User, Client]:
    """A staff user of ``tenant`` with every model permission (or every one but approving)."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    permissions = Permission.objects.all()
    if not may_approve:
        permissions = permissions.exclude(codename="approve_operation")
    user.user_permissions.set(permissions)
    ConsoleUser.objects.create(user=user, tenant=tenant)
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def fleet(org: Org) -> Org:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"kiosk-{i}"} for i in range(5)])
    return org


def create_wipe(client: Client, org: Org) -> Operation:
    form = {
        "tenant": org.tenant.pk,
        "operation_type": "WIPE",
        "schedule_type": "IMMEDIATE",
        "device_type": "active",
        "time_type": "console",
        "timezone": "UTC",
        "arguments": "{}",
        "all_devices": "on",
        "devices": "kiosk-0\nkiosk-1\nkiosk-2",
    }
    response = client.post(ADD, form, follow=True)
    assert response.status_code == 200, response.content[:2000]
    operation = Operation.objects.get()
    assert "waits for another admin" in response.content.decode()
    return operation


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_requester_sees_no_buttons_and_another_admin_approves(fleet: Org) -> None:
    alice, as_alice = console_user("alice", fleet.tenant)
    bob, as_bob = console_user("bob", fleet.tenant)

    operation = create_wipe(as_alice, fleet)

    assert operation.state == S.WAITING_FOR_APPROVAL and operation.approval_requester == f"user:{alice.pk}"
    mine = as_alice.get(QUEUE).content.decode()
    assert str(operation.pk) in mine and "admin:alice" in mine
    assert "/approve/" not in mine and "/deny/" not in mine
    assert "another admin must approve" in mine
    # the preview: how many devices match now, and the first of them
    theirs = as_bob.get(QUEUE)
    html = theirs.content.decode()
    assert f"{operation.pk}/approve/" in html and f"{operation.pk}/deny/" in html
    assert '<b class="preview-count">3</b>' in html and "kiosk-0, kiosk-1, kiosk-2" in html
    assert theirs.context["rows"][0]["expires_at"].endswith("UTC")
    # the dashboard counts what waits
    assert as_bob.get("/admin/").context["dashboard"]["awaiting_approval"] == 1

    # the operation's page says it waits, and its live data reads
    page = as_bob.get(f"/admin/operations/operation/{operation.pk}/change/")
    assert page.status_code == 200 and "Waits for the approval of an admin" in page.content.decode()
    live = as_bob.get(f"/admin/operations/operation/{operation.pk}/progress/").json()
    assert live["state"] == "WAITING_FOR_APPROVAL"

    # the requester's own POST is refused all the same
    refused = as_alice.post(f"/admin/operations/operation/{operation.pk}/approve/", follow=True)
    assert any("another admin" in line for line in messages_of(refused))
    operation.refresh_from_db()
    assert operation.state == S.WAITING_FOR_APPROVAL

    approved = as_bob.post(
        f"/admin/operations/operation/{operation.pk}/approve/", {"remark": "checked"}, follow=True
    )

    assert any("Approved Wipe" in line for line in messages_of(approved))
    operation.refresh_from_db()
    assert operation.state == S.CREATED and operation.approval_state == "APPROVED"
    assert (operation.approval_decided_by, operation.approval_remark) == ("admin:bob", "checked")
    assert operation.approval_decider == f"user:{bob.pk}"
    approve = f"/admin/operations/operation/{operation.pk}/approve/"
    entry = AuditEntry.objects.get(path=approve, user_id=bob.pk)
    assert entry.actor == "bob" and entry.tenant_id == fleet.tenant.pk
    assert str(operation.pk) not in as_bob.get(QUEUE).content.decode()
    decided = as_bob.get(f"/admin/operations/operation/{operation.pk}/change/").content.decode()
    assert "APPROVED" in decided and "admin:bob" in decided


def test_deny_needs_a_remark(fleet: Org) -> None:
    _, as_alice = console_user("alice", fleet.tenant)
    _, as_bob = console_user("bob", fleet.tenant)
    operation = create_wipe(as_alice, fleet)
    deny = f"/admin/operations/operation/{operation.pk}/deny/"

    refused = as_bob.post(deny, {"remark": " "}, follow=True)
    assert any("remark" in line for line in messages_of(refused))
    asked = as_bob.post(deny, {"remark": "wrong stores"})
    assert "none of them will run it" in asked.content.decode()
    operation.refresh_from_db()
    assert operation.state == S.WAITING_FOR_APPROVAL  # asked, not yet denied
    denied = as_bob.post(deny, {"remark": "wrong stores", "confirmed": "yes"}, follow=True)

    assert any("Denied Wipe" in line for line in messages_of(denied))
    operation.refresh_from_db()
    assert operation.state == S.APPROVAL_DENIED and operation.reason == "wrong stores"
    again = as_bob.post(f"/admin/operations/operation/{operation.pk}/approve/", follow=True)
    assert any("no longer waits" in line for line in messages_of(again))


def test_a_user_who_may_not_approve_sees_no_buttons(fleet: Org) -> None:
    _, as_alice = console_user("alice", fleet.tenant)
    _, as_carol = console_user("carol", fleet.tenant, may_approve=False)
    operation = create_wipe(as_alice, fleet)

    html = as_carol.get(QUEUE).content.decode()

    assert str(operation.pk) in html and "/approve/" not in html
    assert "only an admin" in html
    as_carol.post(f"/admin/operations/operation/{operation.pk}/approve/")
    operation.refresh_from_db()
    assert operation.state == S.WAITING_FOR_APPROVAL


def test_another_tenants_user_sees_nothing_of_the_queue(fleet: Org, other_org: Org) -> None:
    _, as_alice = console_user("alice", fleet.tenant)
    _, as_stranger = console_user("mallory", other_org.tenant)
    operation = create_wipe(as_alice, fleet)

    assert str(operation.pk) not in as_stranger.get(QUEUE).content.decode()
    assert as_stranger.post(f"/admin/operations/operation/{operation.pk}/approve/").status_code == 404
    assert as_stranger.get("/admin/").context["dashboard"]["awaiting_approval"] == 0
    operation.refresh_from_db()
    assert operation.state == S.WAITING_FOR_APPROVAL
