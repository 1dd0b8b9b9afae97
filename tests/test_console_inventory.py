"""The console's inventory and maintenance screens: device file import with its report of
rejected rows, keys and tokens shown once, device command history, maintenance run now."""

from __future__ import annotations

import re
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from commands.models import CommandStatus
from inventory import tokens
from inventory.models import ApiKey, Device
from maintenance import services as maintenance
from maintenance.models import MaintenanceExecution
from operations.fanout import fan_out
from operations.services import create_operation
from tests.conftest import Api, DeviceActor, Org, add_device, make_org, staff_console, superuser_console
from tests.test_console_secrets import one_time_secrets

IMPORT = "/admin/inventory/device/import/"


def upload(console: Client, org: Org, text: str, on_conflict: str = "error") -> str:
    response = console.post(
        IMPORT,
        {
            "tenant": org.tenant.pk,
            "on_conflict": on_conflict,
            "file": SimpleUploadedFile("d.csv", text.encode()),
        },
    )
    assert response.status_code == 200
    return response.content.decode()


def test_import_reports_rejected_rows_and_imports_nothing(console: Client, org: Org) -> None:
    html = upload(
        console,
        org,
        "id,name,os,state,timezone,tags\n"
        "ok-1,One,android,active,UTC,a;b\n"
        "bad id!,Two,android,active,UTC,\n"
        "ok-3,Three,linux,sleeping,Mars/Base,\n",
    )

    assert "2 of 3 row(s) rejected" in html
    assert html.count('class="rejected-row"') == 2
    assert "bad id!" in html and "Mars/Base" in html
    assert not Device.objects.exists()


def test_import_creates_devices_and_shows_tokens_once(console: Client, org: Org) -> None:
    html = upload(console, org, "id,name,os,tags,groups\nimp-1,One,android,a;b,\nimp-2,Two,linux,,\n")

    assert "Imported 2 device(s)" in html and 'data-copy-target="import-tokens"' in html
    device = Device.objects.get(device_id="imp-1")
    assert device.tags == ["a", "b"] and device.os == "android"
    token = html.split("imp-1,")[1].split()[0]
    assert Api(token).get("/v2/command-inbox/", {"device_id": "imp-1"}).status_code == 200

    again = upload(console, org, "id\nimp-1\nimp-3\n", on_conflict="skip")
    assert "Imported 1 device(s)" in again and "skipped 1 existing id(s)" in again
    refused = upload(console, org, "id\nimp-2\n")
    assert "Nothing was imported: id: 1 device id(s) already exist: imp-2" in refused


def test_import_of_a_json_lines_file_and_of_garbage(console: Client, org: Org) -> None:
    assert "Imported 1 device(s)" in upload(console, org, '{"id": "j-1", "os": "ios"}\n')
    assert "line 1: not valid JSON" in upload(console, org, "{nope\n")


def test_a_new_api_key_is_shown_once_with_a_copy_button(console: Client, org: Org) -> None:
    response = console.post(
        "/admin/inventory/apikey/add/", {"tenant": org.tenant.pk, "name": "ci", "role": "viewer"}
    )

    _, [plain] = one_time_secrets(console, response)  # a page of its own, once, with a copy button
    key = ApiKey.objects.get(name="ci")
    assert plain.startswith(f"{tokens.API_KEY_KIND}_{key.prefix}_")
    assert Api(plain).get("/v0/devices/").status_code == 200
    assert plain not in console.get(f"/admin/inventory/apikey/{key.pk}/change/").content.decode()

    revoked = console.post(f"/admin/inventory/apikey/{key.pk}/revoke/")
    assert revoked.status_code == 302
    assert Api(plain).get("/v0/devices/").status_code == 401


def test_device_page_lists_commands_and_rotates_and_revokes_the_token(
    console: Client, org: Org, device: DeviceActor
) -> None:
    operation = create_operation(
        org.tenant.pk, {"operation_type": "LOCK", "operation_device_query": {"all": True}}, "t"
    )
    fan_out(operation.pk)
    base = "/admin/inventory/device/dev-1/"

    page = console.get(f"{base}change/").content.decode()
    rotated = console.post(f"{base}rotate-token/")

    assert "LOCK" in page and "Command Queued" in page and 'id="rotate-token"' in page
    assert CommandStatus.objects.get().get_state_display() == "Command Queued"
    _, [new_token] = one_time_secrets(console, rotated)
    assert device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}).status_code == 401
    assert Api(new_token).get("/v2/command-inbox/", {"device_id": "dev-1"}).status_code == 200
    assert console.post(f"{base}revoke-token/").status_code == 302
    assert Api(new_token).get("/v2/command-inbox/", {"device_id": "dev-1"}).status_code == 401


def test_upcoming_headless_runs_soonest_first(console: Client, org: Org, device: DeviceActor) -> None:
    for when in ("2099-03-01T00:00:00Z", "2099-01-01T00:00:00Z"):
        org.admin.post(
            "/api/v1/inventory_device_headless_operation/",
            {"device_id": "dev-1", "operation_type": "sync", "scheduled_at": when},
        )

    html = console.get("/admin/operations/upcomingheadlessrun/").content.decode()

    assert html.index("2099-01-01 00:00:00 UTC") < html.index("2099-03-01 00:00:00 UTC")


def test_maintenance_run_now_button(console: Client, org: Org) -> None:
    job = maintenance.create_job(org.tenant.pk, "0 0 4 ? * *")

    page = console.get(f"/admin/maintenance/maintenancejob/{job.pk}/change/").content.decode()
    response = console.post(f"/admin/maintenance/maintenancejob/{job.pk}/run-now/")

    assert 'id="run-now"' in page
    assert response.status_code == 302
    assert MaintenanceExecution.objects.filter(job=job, manual=True).count() == 1
    assert "success at" in console.get("/admin/maintenance/maintenancejob/").content.decode()


def test_a_devices_page_opens_by_its_own_id(org: Org) -> None:
    """Issue 16: ``/admin/inventory/device/kiosk-berlin-01/change/``, the id an operator reads
    on the device, opens its page; the lists link there; old links by integer key still work."""
    kiosk = add_device(org.tenant, "kiosk-berlin-01", name="Kiosk Berlin").device
    operation = create_operation(
        org.tenant.pk, {"operation_type": "LOCK", "operation_device_query": {"all": True}}, "t"
    )
    fan_out(operation.pk)
    console = staff_console("alice", org.tenant)

    page = console.get("/admin/inventory/device/kiosk-berlin-01/change/")
    old_link = console.get(f"/admin/inventory/device/{kiosk.pk}/change/")
    listing = console.get("/admin/inventory/device/").content.decode()
    commands = console.get("/admin/commands/commandstatus/").content.decode()
    command = console.get(f"/admin/commands/commandstatus/{CommandStatus.objects.get().pk}/change/")

    assert page.status_code == 200 and page.context["original"] == kiosk
    assert "Kiosk Berlin" in page.content.decode()
    assert 'action="/admin/inventory/device/kiosk-berlin-01/rotate-token/"' in page.content.decode()
    assert old_link.status_code == 200 and old_link.context["original"] == kiosk
    assert 'href="/admin/inventory/device/kiosk-berlin-01/change/' in listing
    assert f'href="/admin/inventory/device/{kiosk.pk}/change/' not in listing
    assert '<a href="/admin/inventory/device/kiosk-berlin-01/change/">kiosk-berlin-01</a>' in commands
    assert '<a href="/admin/inventory/device/kiosk-berlin-01/change/">kiosk-berlin-01</a>' in (
        command.content.decode()
    )
    assert console.post("/admin/inventory/device/kiosk-berlin-01/revoke-token/").status_code == 302
    kiosk.refresh_from_db()
    assert kiosk.token_revoked


def test_a_device_id_is_looked_up_in_the_users_tenant_only(org: Org) -> None:
    """Device ids are unique per tenant: a staff user gets their tenant's device, another
    tenant's id (or integer key) does not exist; a superuser sees both and is asked to pick."""
    other = make_org("globex")
    mine = add_device(org.tenant, "till-1", name="mine").device
    theirs = add_device(other.tenant, "till-1", name="theirs").device
    add_device(other.tenant, "only-theirs")
    alice = staff_console("alice", org.tenant)

    assert alice.get("/admin/inventory/device/till-1/change/").context["original"] == mine
    for path in ("only-theirs", str(theirs.pk), f"{other.tenant.slug}/till-1"):
        answer = alice.get(f"/admin/inventory/device/{path}/change/", follow=True)
        assert answer.redirect_chain[-1][0] == "/admin/", path
        assert "doesn\N{RIGHT SINGLE QUOTATION MARK}t exist" in answer.content.decode(), path

    root = superuser_console()
    ambiguous = root.get("/admin/inventory/device/till-1/change/", follow=True)
    assert ambiguous.redirect_chain[-1][0] == "/admin/inventory/device/?q=till-1"
    assert "Several tenants have a device “till-1”" in ambiguous.content.decode()
    assert 'href="/admin/inventory/device/globex_2Ftill-1/change/"' in ambiguous.content.decode()
    assert root.get("/admin/inventory/device/globex_2Ftill-1/change/").context["original"] == theirs
    assert root.get("/admin/inventory/device/acme/till-1/change/").context["original"] == mine
    listing = root.get("/admin/inventory/device/").content.decode()
    assert 'href="/admin/inventory/device/acme_2Ftill-1/change/' in listing
    assert 'href="/admin/inventory/device/only-theirs/change/' in listing


def test_the_os_filter_lists_the_tenants_systems_and_filters_by_one(org: Org, other_org: Org) -> None:
    """Its values come from a walk of the (tenant, os) index, not a scan of every device (issue 17)."""
    from inventory.services import bulk_import_devices

    bulk_import_devices(
        org.tenant.pk, [{"device_id": f"a{i}", "os": ["android", "linux"][i % 2]} for i in range(4)]
    )
    bulk_import_devices(other_org.tenant.pk, [{"device_id": "w1", "os": "windows"}])
    staff = staff_console("acme-staff", org.tenant)

    listing = staff.get("/admin/inventory/device/")
    filtered = staff.get("/admin/inventory/device/", {"os__exact": "linux"})
    everyone = superuser_console().get("/admin/inventory/device/")

    choices = [
        c["display"]
        for spec in listing.context["cl"].filter_specs
        if spec.title == "os"
        for c in spec.choices(listing.context["cl"])
    ]
    assert choices == ["All", "android", "linux"]
    assert sorted(d.device_id for d in filtered.context["cl"].result_list) == ["a1", "a3"]
    every = [
        c["display"]
        for spec in everyone.context["cl"].filter_specs
        if spec.title == "os"
        for c in spec.choices(everyone.context["cl"])
    ]
    assert every == ["All", "android", "linux", "windows"]


DEVICES = "/admin/inventory/device/"


def listed(page: Any) -> list[str]:
    return sorted(device.device_id for device in page.context["cl"].result_list)


def test_the_device_search_finds_an_id_whole_or_by_its_start_in_the_users_tenant(
    org: Org, other_org: Org
) -> None:
    """By id prefix through an index, not a scan of every device's id, name and serial (issue 26)."""
    from inventory.services import bulk_import_devices

    bulk_import_devices(
        org.tenant.pk,
        [{"device_id": d} for d in ("s_4242", "s_42420", "s_4243", "sx4242", "x_s_4242", "S_42429")],
    )
    bulk_import_devices(other_org.tenant.pk, [{"device_id": d} for d in ("s_4242", "s_42421")])
    staff = staff_console("acme-staff", org.tenant)

    # a prefix finds the id and those it starts; "_" is no wildcard, case counts, nothing contains
    assert listed(staff.get(DEVICES, {"q": "s_4242"})) == ["s_4242", "s_42420"]
    assert listed(staff.get(DEVICES, {"q": " s_42420 "})) == ["s_42420"]  # the whole id
    # a superuser's search spans the tenants, each listed once
    root = superuser_console().get(DEVICES, {"q": "s_4242"})
    assert sorted((d.tenant.slug, d.device_id) for d in root.context["cl"].result_list) == [
        ("acme", "s_4242"),
        ("acme", "s_42420"),
        ("globex", "s_4242"),
        ("globex", "s_42421"),
    ]


def test_a_text_no_id_starts_with_finds_ids_names_and_serials_containing_it(org: Org, other_org: Org) -> None:
    add_device(org.tenant, "kiosk-1", name="Berlin Lobby", serial="SN-77")
    add_device(org.tenant, "till-lobby-2")
    add_device(org.tenant, "till-3", serial="XLOBBY9")
    add_device(org.tenant, "till-4")
    add_device(other_org.tenant, "lobby-elsewhere", name="Lobby")
    staff = staff_console("acme-staff", org.tenant)

    page = staff.get(DEVICES, {"q": "lobby"})

    assert listed(page) == ["kiosk-1", "till-3", "till-lobby-2"]
    assert "whole or its start" in page.content.decode()  # the search box says how it searches


def test_the_device_list_works_without_a_full_count_and_says_about_beyond_the_threshold(
    org: Org, settings: Any
) -> None:
    """No ``COUNT(*)`` of the whole fleet: the list's own count is the planner's estimate beyond
    COUNT_ESTIMATE_THRESHOLD (config.console.paging), and the page says "about"."""
    from django.db import connection

    from inventory.services import bulk_import_devices

    bulk_import_devices(org.tenant.pk, [{"device_id": f"d{i:03d}"} for i in range(30)])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Device._meta.db_table}")
    staff = staff_console("acme-staff", org.tenant)

    settings.COUNT_ESTIMATE_THRESHOLD = 5
    estimated = staff.get(DEVICES)
    settings.COUNT_ESTIMATE_THRESHOLD = 1000
    exact = staff.get(DEVICES)
    searched = staff.get(DEVICES, {"q": "d01"})

    assert estimated.status_code == 200 and not estimated.context["cl"].show_full_result_count
    assert estimated.context["cl"].paginator.estimated
    assert re.search(r"about \d+ devices", estimated.content.decode())
    assert len(estimated.context["cl"].result_list) == 30
    assert not exact.context["cl"].paginator.estimated and "30 devices" in exact.content.decode()
    assert listed(searched) == [f"d01{i}" for i in range(10)]
    assert "10 devices" in searched.content.decode()
