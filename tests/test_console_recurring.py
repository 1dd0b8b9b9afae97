"""The console's parts of contract section 12: "recurring" in the operation form with its next
five runs in words, a series' page listing its runs with their outcomes, the template picker
that fills the form, and the templates' list and form."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.test import Client

from inventory.services import bulk_import_devices
from operations import series
from operations.models import Operation, OperationTemplate
from tests.conftest import Org
from tests.test_console_operations import form

ADD = "/admin/operations/operation/add/"
SERIES_PREVIEW = "/admin/operations/operation/series-preview/"
TEMPLATES = "/admin/operations/operationtemplate/"


@pytest.fixture
def org_with_devices(org: Org) -> Org:
    bulk_import_devices(org.tenant.pk, [{"device_id": f"and-{i}", "os": "android"} for i in range(3)])
    return org


def test_the_form_offers_recurring_and_creates_a_series(console: Client, org_with_devices: Org) -> None:
    assert 'value="RECURRING"' in console.get(ADD).content.decode()
    response = console.post(
        ADD,
        form(
            org_with_devices,
            all_devices="on",
            schedule_type="RECURRING",
            time_expression="0 30 2 ? * MON-FRI",
            duration_minutes="90",
            max_runs="10",
            timezone="Europe/Berlin",
        ),
    )

    assert response.status_code == 302, response.content.decode()[-2000:]
    operation = Operation.objects.get()
    assert operation.schedule_type == "RECURRING" and operation.state_name == "SCHEDULED"
    assert operation.schedule_args["time_expression"] == "0 30 2 ? * MON-FRI"
    assert operation.schedule_args["duration_minutes"] == 90 and operation.schedule_args["max_runs"] == 10
    assert operation.schedule_args["timezone"] == "Europe/Berlin"
    page = console.get(response["Location"]).content.decode()
    assert "At 02:30, Monday through Friday" in page
    assert page.count("<li>") >= 5 and "no run yet" in page


def test_a_bad_expression_is_refused_in_the_apis_words(console: Client, org_with_devices: Org) -> None:
    response = console.post(
        ADD,
        form(org_with_devices, all_devices="on", schedule_type="RECURRING", time_expression="0 0 9 * * MON"),
    )
    assert response.status_code == 200
    assert "schedule_args.time_expression: day_of_week" in response.content.decode()
    assert not Operation.objects.exists()


def test_the_next_five_runs_in_words(console: Client, org: Org) -> None:
    answer = console.post(
        SERIES_PREVIEW, {"time_expression": "0 0 2 * * ?", "time_type": "console", "timezone": "Asia/Tokyo"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["description"] == "At 02:00"
    assert len(body["runs"]) == 5 and all("02:00 Asia/Tokyo" in line for line in body["runs"])
    device = console.post(SERIES_PREVIEW, {"time_expression": "0 0 2 * * ?", "time_type": "device"}).json()
    assert all("02:00" in line and "each device's own time" in line for line in device["runs"])
    refused = console.post(SERIES_PREVIEW, {"time_expression": "nonsense"})
    assert refused.status_code == 400 and refused.json()["errors"][0].startswith(
        "schedule_args.time_expression"
    )


def test_a_series_page_lists_its_runs_with_their_outcomes(console: Client, org_with_devices: Org) -> None:
    response = console.post(
        ADD,
        form(org_with_devices, all_devices="on", schedule_type="RECURRING", time_expression="0 0 3 * * ?"),
    )
    operation = Operation.objects.get()
    assert operation.next_run_at is not None
    assert series.fire_due(operation.next_run_at) == 1
    assert series.fire_due(operation.next_run_at + dt.timedelta(days=1)) == 1
    runs = list(Operation.objects.filter(parent=operation))

    page = console.get(response["Location"]).content.decode()
    assert 'class="series-runs"' in page
    for run in runs:
        assert f"/admin/operations/operation/{run.pk}/change/" in page
    assert "op-badge-created" in page  # each run's outcome as the list shows it
    run_page = console.get(f"/admin/operations/operation/{runs[0].pk}/change/").content.decode()
    assert f"/admin/operations/operation/{operation.pk}/change/" in run_page


def test_the_template_picker_fills_the_form_and_the_operation_records_it(
    console: Client, org_with_devices: Org
) -> None:
    template = OperationTemplate.objects.create(
        tenant=org_with_devices.tenant,
        name="pos",
        operation_type="INSTALL_APP",
        arguments={"package": "com.example.pos", "version": "{{version}}"},
        parameters={
            "version": {"type": "string", "required": True},
            "silent": {"type": "boolean", "default": True},
        },
        device_query={"devices": ["and-1"]},
        schedule_type="RECURRING",
        schedule_args={"time_expression": "0 0 4 * * ?", "time_type": "device"},
    )
    page = console.get(f"{ADD}?template={template.pk}").content.decode()
    assert '<option value="INSTALL_APP" selected>' in page
    assert "{{version}}" in page and "and-1" in page and "0 0 4 * * ?" in page
    assert re.search(r'value="RECURRING"[^>]*checked', page)

    response = console.post(
        ADD,
        form(
            org_with_devices,
            template=str(template.pk),
            template_parameters=json.dumps({"version": "4.2"}),
            operation_type="INSTALL_APP",
            arguments=json.dumps(template.arguments),
            devices="and-1",
            schedule_type="RECURRING",
            time_type="device",
            time_expression="0 0 4 * * ?",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    operation = Operation.objects.get()
    assert operation.template_id == template.pk
    assert operation.arguments == {"package": "com.example.pos", "version": "4.2"}
    assert operation.template_parameters == {"version": "4.2", "silent": True}

    missing = console.post(
        ADD,
        form(
            org_with_devices,
            template=str(template.pk),
            devices="and-1",
            arguments=json.dumps(template.arguments),
        ),
    )
    assert "template_parameters.version: is required by the template" in missing.content.decode()


def test_the_templates_list_and_form(console: Client, org: Org) -> None:
    fields = {
        "tenant": org.tenant.pk,
        "name": "nightly-reboot",
        "description": "",
        "operation_type": "REBOOT",
        "arguments": json.dumps({"why": "{{why}}"}),
        "parameters": json.dumps({"why": {"type": "string", "default": "nightly"}}),
        "device_query": "null",
        "rollout": "null",
        "schedule_type": "",
        "schedule_args": "null",
    }
    created = console.post(f"{TEMPLATES}add/", fields)
    assert created.status_code == 302, created.content.decode()[-3000:]
    template = OperationTemplate.objects.get()
    assert template.created_by == "admin:root" and template.parameters["why"]["default"] == "nightly"
    listed = console.get(TEMPLATES).content.decode()
    assert "nightly-reboot" in listed and f"{ADD}?template={template.pk}" in listed

    refused = console.post(
        f"{TEMPLATES}add/", {**fields, "name": "bad", "parameters": json.dumps({"why": {"type": "date"}})}
    )
    assert refused.status_code == 200 and "parameters.why.type" in refused.content.decode()
    assert OperationTemplate.objects.count() == 1
