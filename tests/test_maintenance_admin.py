"""The console for maintenance schedules: descriptions, next fires, history, actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_celery_beat.models import PeriodicTask

from config.quartz import describe
from maintenance import services
from maintenance.models import MaintenanceExecution, MaintenanceJob, Outcome
from tests.conftest import Org

CHANGELIST = "/admin/maintenance/maintenancejob/"


@pytest.mark.parametrize(
    ("expression", "meaning"),
    [
        # Quartz numbers days from 1 = Sunday; cron_descriptor's default reads 2 as Tuesday.
        ("0 0 0 ? * 2", "At 00:00, only on Monday"),
        ("0 0 0 ? * 1", "At 00:00, only on Sunday"),
        ("0 0 0 ? * 7", "At 00:00, only on Saturday"),
        ("0 0 0 ? * MON", "At 00:00, only on Monday"),
        ("0 0 0 ? * 2-6", "At 00:00, Monday through Friday"),
        ("0 0 0 ? * 6#3", "At 00:00, on the third Friday of the month"),
        ("0 0 0 ? * 6L", "At 00:00, on the last Friday of the month"),
        ("0 0 0 ? * L", "At 00:00, only on Saturday"),
        ("0 0 0 L * ?", "At 00:00, on the last day of the month"),
        ("0 0 0 15W * ?", "At 00:00, on the weekday nearest day 15 of the month"),
        ("0 0 4 ? * * *", "At 04:00"),
    ],
)
def test_describe_reads_quartz_day_numbers(expression: str, meaning: str) -> None:
    assert describe(expression) == meaning


def test_describe_says_when_an_expression_is_invalid() -> None:
    assert describe("0 0 0 * * MON").startswith("invalid: day_of_week")


def test_changelist_and_change_page_show_meaning_next_fires_and_history(console: Client, org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 0 0 ? * 6#3")
    services.run_now(job)

    listing = console.get(CHANGELIST)
    page = console.get(f"{CHANGELIST}{job.pk}/change/")

    assert listing.status_code == 200 and "third Friday" in listing.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    assert "third Friday" in html
    assert html.count(" Fri</div>") == 5
    assert "success" in html  # the execution inline


def test_adding_a_job_in_the_console_creates_its_beat_entry(console: Client, org: Org) -> None:
    form = {
        "tenant": org.tenant.pk,
        "time_expression": "0 0 3 ? * SUN",
        "active": "on",
        "executions-TOTAL_FORMS": "0",
        "executions-INITIAL_FORMS": "0",
    }
    bad = console.post(f"{CHANGELIST}add/", {**form, "time_expression": "0 0 3 * * SUN"})
    assert bad.status_code == 200 and "day_of_week" in bad.content.decode()

    response = console.post(f"{CHANGELIST}add/", form)

    assert response.status_code == 302, response.content.decode()[:2000]
    job = MaintenanceJob.objects.get()
    assert job.created_by_user == "root"
    assert job.periodic_task is not None and job.periodic_task.crontab is not None
    assert job.periodic_task.crontab.day_of_week == "0"


def test_the_console_refuses_a_frequent_full_build_and_a_job_past_the_tenants_limit(
    console: Client, org: Org, settings: Any
) -> None:
    settings.MAINTENANCE_JOBS_PER_TENANT = 1
    form = {
        "tenant": org.tenant.pk,
        "time_expression": "0 * * ? * *",
        "active": "on",
        "executions-TOTAL_FORMS": "0",
        "executions-INITIAL_FORMS": "0",
    }

    frequent = console.post(f"{CHANGELIST}add/", {**form, "full_build": "on"})
    incremental = console.post(f"{CHANGELIST}add/", form)
    second = console.post(f"{CHANGELIST}add/", {**form, "time_expression": "0 0 4 ? * *"})

    assert frequent.status_code == 200
    assert "MAINTENANCE_FULL_BUILD_MIN_MINUTES" in str(
        frequent.context["adminform"].form.errors["time_expression"]
    )
    assert incremental.status_code == 302
    assert second.status_code == 200
    assert "MAINTENANCE_JOBS_PER_TENANT" in str(second.context["adminform"].form.errors["tenant"])
    assert MaintenanceJob.objects.count() == 1


def test_actions_deactivate_activate_run_now_and_delete(console: Client, org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")

    def act(action: str) -> None:
        response = console.post(CHANGELIST, {"action": action, "_selected_action": [str(job.pk)]})
        assert response.status_code == 302

    act("deactivate")
    job.refresh_from_db()
    assert job.active is False and PeriodicTask.objects.get(pk=job.periodic_task_id).enabled is False
    act("activate")
    assert PeriodicTask.objects.get(pk=job.periodic_task_id).enabled is True
    act("run_now")
    assert MaintenanceExecution.objects.get(job=job, manual=True).outcome == Outcome.SUCCESS

    task_id = job.periodic_task_id
    response = console.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [str(job.pk)], "post": "yes"}
    )
    assert response.status_code == 302
    assert not MaintenanceJob.objects.exists() and not PeriodicTask.objects.filter(pk=task_id).exists()
