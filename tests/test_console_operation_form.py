"""The new-operation form helps (issue 26): every refusal at its own field in one submit, tag
and group pickers, a live count scoped to the user's tenant that hints before it counts, the
series' next runs, the approval the policy will ask for, saving the form as a template, and
operation types under the labels people read."""

from __future__ import annotations

import re

from django.test import Client

from inventory.models import Group
from inventory.services import get_or_create_tenant
from operations import approvals
from operations.models import Operation, OperationTemplate
from tests.conftest import Org, staff_console
from tests.test_console_operations import ADD, PREVIEW, form, org_with_devices  # noqa: F401  (a fixture)


def field_errors(html: str, field: str) -> list[str]:
    """The errors shown at the form row of ``field`` (``<div class="form-row field-<name>">``)."""
    start = html.find(f'class="form-row field-{field}"')
    assert start != -1, f"no row of {field}"
    end = html.find('class="form-row', start + 10)
    row = html[start : end if end != -1 else None]
    found = re.search(r'<ul class="errorlist"[^>]*>(.*?)</ul>', row, re.S)
    return re.findall(r"<li>(.*?)</li>", found.group(1), re.S) if found else []


def test_every_refusal_is_at_its_field_in_one_submit(console: Client, org_with_devices: Org) -> None:  # noqa: F811
    """The form's own checks, the rollout's, the API's serializer and the device query's, all
    in the one answer, each at the field it is about, none twice; nothing is created."""
    response = console.post(
        ADD,
        form(
            org_with_devices,
            timezone="Mars/Olympus",
            devices="and-0 ghost",
            arguments="[1]",
            waves="50, 20",
            schedule_type="WINDOW",
            start="2030-01-02T10:00",
            end="2030-01-01T10:00",
        ),
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert field_errors(html, "timezone") == [
        "is not an IANA time zone name (for example &#x27;Europe/Berlin&#x27;)"
    ]
    assert field_errors(html, "devices") == ["operation_device_query.devices: unknown device id(s): ghost"]
    assert field_errors(html, "arguments") == ["must be a JSON object"]
    assert len(field_errors(html, "waves")) == 1 and field_errors(html, "waves")[0].startswith(
        "rollout.waves"
    )
    assert field_errors(html, "end") == ["schedule_args.end_datetime: must be after start_datetime"]
    summary = re.search(r'<div class="errornote" id="api-errors">(.*?)</div>', html, re.S)
    assert summary is not None and "5 problems, each shown at its field below" in summary.group(1)
    assert not Operation.objects.exists()


def test_a_query_selecting_nothing_is_said_in_the_devices_section(
    console: Client,
    org_with_devices: Org,  # noqa: F811
) -> None:
    html = console.post(ADD, form(org_with_devices)).content.decode()
    section = html[html.index('id="devices-fields"') : html.index('id="when-fields"')]
    assert 'id="query-errors"' in section and "operation_device_query: selects no devices" in section


def test_the_pickers_send_tags_checked_and_typed_and_groups(
    console: Client,
    org_with_devices: Org,  # noqa: F811
) -> None:
    page = console.get(ADD).content.decode()
    assert re.search(r'<input type="checkbox" name="tags" value="shop"[^>]*id="id_tags_0"', page), page
    assert 'id="id_tags_typed"' in page
    group = Group.objects.get()
    assert f'<option value="{group.pk}">berlin</option>' in page and 'id="no-groups"' not in page

    response = console.post(
        ADD, form(org_with_devices, tags=["shop", "lobby, shop"], groups=[str(group.pk)], device_type="all")
    )

    assert response.status_code == 302, field_errors(response.content.decode(), "tags")
    operation = Operation.objects.get()
    assert operation.device_query == {
        "device_type": "all",
        "groups": [str(group.pk)],
        "filters": {"tags__contains": ["shop", "lobby"]},
    }


def test_a_refused_form_keeps_the_typed_tags_in_the_box_and_the_checked_ones_checked(
    console: Client,
    org_with_devices: Org,  # noqa: F811
) -> None:
    html = console.post(
        ADD, form(org_with_devices, tags=["shop", "lobby"], timezone="nowhere")
    ).content.decode()
    assert re.search(r'<input type="checkbox" name="tags" value="shop"[^>]*checked', html)
    assert re.search(r'id="id_tags_typed" value="lobby"', html)


def test_no_groups_yet_says_so_with_a_link(console: Client, org: Org) -> None:
    html = console.get(ADD).content.decode()
    assert 'id="no-groups"' in html and "No groups yet." in html
    assert 'href="/admin/inventory/group/add/"' in html
    assert 'id="id_groups"' not in html


def test_the_live_count_hints_before_it_counts_and_stays_in_the_users_tenant(
    org_with_devices: Org,  # noqa: F811
) -> None:
    """A tenant's console user counts its own tenant's devices only: another tenant's id is
    no tenant (a hint), another tenant's group is unknown; before any condition, a hint."""
    other = get_or_create_tenant("other")[0]
    other_group = Group.objects.create(tenant=other, name="their-group")
    theirs = staff_console("bob", other)
    mine = staff_console("alice", org_with_devices.tenant)

    assert mine.post(PREVIEW, form(org_with_devices)).json() == {
        "hint": "Pick groups, tags, an OS, device ids or the whole fleet.",
        "approval": "",
    }
    assert mine.post(PREVIEW, {"all_devices": "on"}).json() == {"hint": "Pick a tenant to count its devices."}
    assert theirs.post(PREVIEW, form(org_with_devices, all_devices="on")).json() == {
        "hint": "Pick a tenant to count its devices."
    }
    assert mine.post(PREVIEW, form(org_with_devices, all_devices="on")).json()["device_count"] == 8
    refused = mine.post(PREVIEW, form(org_with_devices, groups=[str(other_group.pk)]))
    assert refused.status_code == 400
    assert refused.json()["errors"] == [f"operation_device_query.groups: unknown group(s): {other_group.pk}"]
    assert "their-group" not in mine.get(ADD).content.decode()


def test_the_form_says_when_the_type_waits_for_approval(console: Client, org_with_devices: Org) -> None:  # noqa: F811
    wipe = console.post(PREVIEW, form(org_with_devices, operation_type="WIPE", all_devices="on")).json()
    assert (
        wipe["approval"]
        == "Wipe operations of this tenant wait for a second admin's approval before they start."
    )
    reboot = console.post(PREVIEW, form(org_with_devices, all_devices="on")).json()
    assert reboot["approval"] == ""
    approvals.set_policy(org_with_devices.tenant.pk, [], 5, 72, "test")
    few = console.post(PREVIEW, form(org_with_devices, os=["linux"])).json()
    many = console.post(PREVIEW, form(org_with_devices, all_devices="on")).json()
    assert few["device_count"] == 3 and few["approval"] == ""
    assert many["approval"].startswith("It will wait for a second admin's approval: it targets at least 5")


def test_a_refused_series_shows_its_next_runs_on_the_page(console: Client, org_with_devices: Org) -> None:  # noqa: F811
    html = console.post(
        ADD,
        form(
            org_with_devices,
            devices="ghost",
            schedule_type="RECURRING",
            time_expression="0 30 2 ? * MON-FRI",
            timezone="Europe/Berlin",
        ),
    ).content.decode()
    runs = re.search(r'<ul id="series-runs">(.*?)</ul>', html, re.S)
    assert runs is not None
    lines = re.findall(r"<li>(.*?)</li>", runs.group(1))
    assert len(lines) == 5 and all("Europe/Berlin" in line for line in lines), lines
    assert "At 02:30, Monday through Friday" in html
    assert not Operation.objects.exists()


def test_the_form_is_saved_as_a_template_and_fills_the_form_again(
    console: Client,
    org_with_devices: Org,  # noqa: F811
) -> None:
    unnamed = console.post(ADD, {**form(org_with_devices, os=["android"]), "_save_template": "1"})
    assert "The template was not saved: 1 problem," in unnamed.content.decode()
    assert field_errors(unnamed.content.decode(), "new_template_name") == [
        "give the template a name to save the form as one"
    ]

    saved = console.post(
        ADD,
        {
            **form(org_with_devices, os=["android"], waves="50, 100", arguments='{"force": true}'),
            "new_template_name": "android-reboot",
            "_save_template": "1",
        },
    )

    template = OperationTemplate.objects.get()
    assert saved.status_code == 302 and saved["Location"] == f"{ADD}?template={template.pk}"
    assert template.name == "android-reboot" and template.operation_type == "REBOOT"
    assert template.arguments == {"force": True} and (template.rollout or {})["waves"] == [50, 100]
    assert template.device_query == {"device_type": "active", "filters": {"os__in": ["android"]}}
    assert not Operation.objects.exists()
    filled = console.get(saved["Location"]).content.decode()
    assert re.search(r'<option value="android" selected>', filled)
    again = console.post(
        ADD,
        {
            **form(org_with_devices, all_devices="on"),
            "new_template_name": "android-reboot",
            "_save_template": "1",
        },
    )
    assert field_errors(again.content.decode(), "new_template_name") == [
        "name: a template named &#x27;android-reboot&#x27; already exists"
    ]


def test_operation_types_show_their_labels(console: Client, org_with_devices: Org) -> None:  # noqa: F811
    html = console.get(ADD).content.decode()
    assert '<option value="INSTALL_OTA">Install OTA</option>' in html
    assert '<option value="ADD_WIFI_AP">Add Wi-Fi AP</option>' in html
    assert "Install Ota" not in html
    response = console.post(
        ADD, form(org_with_devices, operation_type="INSTALL_OTA", all_devices="on"), follow=True
    )
    page = response.content.decode()
    assert "Created Install OTA operation" in page
    listed = console.get("/admin/operations/operation/").content.decode()
    assert "Install OTA" in listed and "Install Ota" not in listed
