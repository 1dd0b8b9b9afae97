"""Seed 004: maintenance schedules over the API (shapes, errors, roles, tenant isolation)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from config.errors import DomainError
from maintenance import services
from maintenance.models import MaintenanceExecution, MaintenanceJob, Outcome
from tests.conftest import Api, Org, add_device
from tests.helpers import iso


def jobs_path(org_id: str) -> str:
    return f"/aggregates/maintenance/scheduler/jobs/orgId/{org_id}"


def job_path(org_id: str, job_id: str) -> str:
    return f"/api/1.0/aggregates/maintenance-schedule/jobs/orgId/{org_id}/jobId/{job_id}"


def create(api: Api, org_id: str, expression: str = "0 0 0 ? * MON", **params: str) -> dict:
    query = {"time_expression": expression, "scheduler_type": "time-based", **params}
    # Like the seed's clients: parameters in the query string, no body at all.
    headers: dict[str, Any] = api._headers()
    response = api.client.generic("POST", f"{jobs_path(org_id)}?{urlencode(query)}", **headers)
    assert response.status_code == 200, response.content
    return response.json()


def assert_envelope_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"]["code"] == status
    assert body["status"]["message"]
    assert body["responseCreated"].endswith("Z")
    assert body["response"] is None
    assert body["error_code"], body
    return body


# --- POST -----------------------------------------------------------------------------------------


def test_create_from_the_query_string_answers_the_seed_shape(org: Org) -> None:
    body = create(org.admin, "acme")

    assert body["status"] == {"code": 200, "message": "Time-based schedule successfully created."}
    assert body["responseCreated"].endswith("Z")
    created = body["response"]
    uuid.UUID(created["job_id"])
    assert created["time_expression"] == "0 0 0 ? * MON"
    assert created["scheduler_type"] == "time-based/maintenance"
    assert created["created_by_user"] == "admin"
    assert created["created_at"].endswith("Z")
    assert created["full_build"] is False
    next_fire = dt.datetime.fromisoformat(created["next_execution"])
    assert next_fire.weekday() == 0 and (next_fire.hour, next_fire.minute) == (0, 0)


def test_create_from_the_json_body_with_full_build(org: Org) -> None:
    response = org.operator.post(
        jobs_path("acme"),
        {"time_expression": "0 0 4 ? * * *", "scheduler_type": "time-based", "full_build": True, "x": 1},
    )

    assert response.status_code == 200, response.content
    created = response.json()["response"]
    job = MaintenanceJob.objects.get(pk=created["job_id"])
    assert job.full_build is True and job.active is True
    assert job.tenant_id == org.tenant.pk and job.created_by_user == "operator"


def test_create_makes_a_utc_crontab_periodic_task_and_tells_beat(org: Org) -> None:
    before = PeriodicTasks.last_change()

    created = create(org.admin, "acme", "0 30 4 ? * 6#3")["response"]

    job = MaintenanceJob.objects.get(pk=created["job_id"])
    task = job.periodic_task
    assert task is not None and task.enabled
    assert task.task == "maintenance.tasks.run_maintenance_job"
    assert json.loads(task.args) == [created["job_id"]]
    assert task.crontab is not None
    assert str(task.crontab.timezone) == "UTC"
    assert (task.crontab.minute, task.crontab.hour) == ("30", "4")
    assert (task.crontab.day_of_week, task.crontab.day_of_month) == ("5", "15-21")
    assert PeriodicTasks.last_change() != before


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("0 0 25 * * ?", "hours"),
        ("0 0 0 32 * ?", "day_of_month"),
        ("0 0 0 * * MON", "day_of_week"),
        ("0 0 0 ? * 6#9", "day_of_week"),
        ("0 0 0 ? FOO *", "month"),
        ("0 0 0 *", "expression"),
        ("", "time_expression"),
    ],
)
def test_an_invalid_expression_is_400_naming_the_field(org: Org, expression: str, field: str) -> None:
    response = org.admin.post(
        jobs_path("acme"), {"time_expression": expression, "scheduler_type": "time-based"}
    )

    body = assert_envelope_error(response, 400)
    assert body["status"]["message"].startswith("time_expression: ")
    assert field in body["status"]["message"]
    assert "time_expression" in body["errors"]
    assert not MaintenanceJob.objects.exists()


def test_an_expression_beat_cannot_honour_is_400_with_the_reason(org: Org) -> None:
    response = org.admin.post(
        jobs_path("acme"), {"time_expression": "*/10 * * ? * *", "scheduler_type": "time-based"}
    )

    body = assert_envelope_error(response, 400)
    assert "more than once a minute" in body["status"]["message"]


def test_a_tenant_past_its_maintenance_jobs_is_409_too_many_jobs(
    org: Org, other_org: Org, settings: Any
) -> None:
    settings.MAINTENANCE_JOBS_PER_TENANT = 3
    made = [create(org.admin, "acme", f"0 0 {hour} ? * *")["response"]["job_id"] for hour in range(3)]
    MaintenanceJob.objects.filter(pk=made[0]).update(active=False)  # an inactive job counts too

    refused = org.admin.post(
        jobs_path("acme"), {"time_expression": "0 0 5 ? * *", "scheduler_type": "time-based"}
    )
    create(other_org.admin, other_org.tenant.slug)  # another tenant has room of its own
    assert org.admin.delete(job_path("acme", made[1])).status_code == 200
    create(org.admin, "acme", "0 0 5 ? * *")  # room again

    body = assert_envelope_error(refused, 409)
    assert body["error_code"] == "too_many_jobs"
    assert list(body["errors"]) == ["orgId"] and "MAINTENANCE_JOBS_PER_TENANT" in body["errors"]["orgId"][0]
    assert MaintenanceJob.objects.filter(tenant=org.tenant).count() == 3


@pytest.mark.parametrize(
    ("expression", "full_build", "floor", "status"),
    [
        ("0 * * ? * *", True, 60, 400),  # the every-minute full build
        ("0 0/30 * ? * *", True, 60, 400),
        ("0 0 * ? * *", True, 60, 200),  # hourly: at the floor
        ("0 * * ? * *", False, 60, 200),  # an incremental run may come every minute
        ("0 0 0,23 ? * MON,TUE", True, 90, 400),  # Monday 23:00, Tuesday 00:00: 1 h apart
        ("0 0 0,23 ? * MON,WED", True, 90, 200),  # never on two days in a row: 23 h at the closest
        ("0 * * ? * *", True, 1, 200),  # a floor of 1 minute is beat's own
    ],
)
def test_a_full_build_firing_more_often_than_the_floor_is_400_full_build_too_frequent(
    org: Org, settings: Any, expression: str, full_build: bool, floor: int, status: int
) -> None:
    settings.MAINTENANCE_FULL_BUILD_MIN_MINUTES = floor

    response = org.admin.post(
        jobs_path("acme"),
        {"time_expression": expression, "scheduler_type": "time-based", "full_build": full_build},
    )

    assert response.status_code == status, response.content
    if status == 400:
        body = assert_envelope_error(response, 400)
        assert body["error_code"] == "full_build_too_frequent"
        assert body["status"]["message"].startswith("time_expression: fires ")
        assert "MAINTENANCE_FULL_BUILD_MIN_MINUTES" in body["errors"]["time_expression"][0]
        assert not MaintenanceJob.objects.exists()


def test_turning_a_frequent_job_into_a_full_build_is_refused_and_switching_it_is_not(org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 * * ? * *")
    old = MaintenanceJob.objects.create(
        tenant=org.tenant, time_expression="0 * * ? * *", full_build=True
    )  # stored before the floor

    with pytest.raises(DomainError) as refused:
        services.update_job(job, full_build=True)
    services.set_active(old, False)
    services.set_active(old, True)

    assert refused.value.code == "full_build_too_frequent"
    job.refresh_from_db()
    assert job.full_build is False
    assert MaintenanceJob.objects.get(pk=old.pk).active is True


@pytest.mark.parametrize(
    "body",
    [
        {"time_expression": "0 0 0 ? * MON"},
        {"time_expression": "0 0 0 ? * MON", "scheduler_type": "event-based"},
        {"scheduler_type": "time-based"},
        {"time_expression": "0 0 0 ? * MON", "scheduler_type": "time-based", "full_build": "maybe"},
        {"time_expression": 5, "scheduler_type": "time-based"},
    ],
    ids=["no-type", "bad-type", "no-expression", "bad-full-build", "number"],
)
def test_missing_or_wrong_parameters_are_400(org: Org, body: dict) -> None:
    assert_envelope_error(org.admin.post(jobs_path("acme"), body), 400)


def test_malformed_json_or_a_list_body_is_400(org: Org) -> None:
    assert_envelope_error(org.admin.post(jobs_path("acme"), raw="{oops"), 400)
    assert_envelope_error(org.admin.post(jobs_path("acme"), ["0 0 0 ? * MON"]), 400)


# --- GET ------------------------------------------------------------------------------------------


def test_list_items_have_the_seed_fields(org: Org) -> None:
    created = create(org.admin, "acme", "0 0 4 ? * * *")["response"]

    response = org.viewer.get(jobs_path("acme"))

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == {"code": 200, "message": "success"}
    [item] = body["response"]
    assert item == {
        "job_id": created["job_id"],
        "organization_Id": "acme",
        "full_build": False,
        "time_expression": "0 0 4 ? * * *",
        "created_by_user": "admin",
        "created_at": created["created_at"],
        "latest_execution": None,
        "path": "time-based",
        "active": True,
        "next_execution": item["next_execution"],
    }
    assert dt.datetime.fromisoformat(item["next_execution"]).hour == 4


def test_latest_execution_is_the_newest_run(org: Org) -> None:
    job = services.create_job(org.tenant.pk, "0 0 4 ? * *")
    now = timezone.now()
    for minutes_ago in (30, 10, 20):
        when = now - dt.timedelta(minutes=minutes_ago)
        MaintenanceExecution.objects.create(
            job=job, scheduled_for=when, started_at=when, finished_at=when, outcome=Outcome.SUCCESS
        )
    newest = MaintenanceExecution.objects.get(job=job, started_at=now - dt.timedelta(minutes=10))

    [item] = org.admin.get(jobs_path("acme")).json()["response"]

    assert item["latest_execution"] == {
        "id": str(newest.pk),
        "jobId": str(job.pk),
        "executedAt": iso(newest.started_at),
    }


def test_active_filter(org: Org) -> None:
    on = services.create_job(org.tenant.pk, "0 0 1 ? * *")
    off = services.set_active(services.create_job(org.tenant.pk, "0 0 2 ? * *"), False)

    def ids(**params: str) -> set[str]:
        response = org.admin.get(jobs_path("acme"), params)
        assert response.status_code == 200
        return {item["job_id"] for item in response.json()["response"]}

    assert ids() == {str(on.pk), str(off.pk)}
    assert ids(active="true") == {str(on.pk)}
    assert ids(active="false") == {str(off.pk)}
    assert ids(active="FALSE") == {str(off.pk)}
    inactive = next(
        i for i in org.admin.get(jobs_path("acme")).json()["response"] if i["job_id"] == str(off.pk)
    )
    assert inactive["active"] is False and inactive["next_execution"] is None


@pytest.mark.parametrize("value", ["yes", "1", "", "null"])
def test_an_active_filter_that_is_not_true_or_false_is_400(org: Org, value: str) -> None:
    body = assert_envelope_error(org.admin.get(jobs_path("acme"), {"active": value}), 400)
    assert body["status"]["message"].startswith("active: ")


# --- DELETE and PATCH -----------------------------------------------------------------------------


def test_delete_answers_the_seed_message_and_removes_the_beat_entry(org: Org) -> None:
    job_id = create(org.admin, "acme", "0 15 3 ? * SUN")["response"]["job_id"]
    task_id = MaintenanceJob.objects.get(pk=job_id).periodic_task_id
    before = PeriodicTasks.last_change()

    response = org.operator.delete(job_path("acme", job_id))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == {"code": 200, "message": "success"}
    assert body["response"] == f"successfully deleted job with Id: [{job_id}]"
    assert not MaintenanceJob.objects.filter(pk=job_id).exists()
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
    assert not CrontabSchedule.objects.filter(minute="15", hour="3").exists()
    assert PeriodicTasks.last_change() != before
    assert org.admin.get(jobs_path("acme")).json()["response"] == []
    assert_envelope_error(org.admin.delete(job_path("acme", job_id)), 404)


def test_deactivate_and_activate_with_patch(org: Org) -> None:
    job_id = create(org.admin, "acme")["response"]["job_id"]

    response = org.admin.patch(job_path("acme", job_id), {"active": False})

    assert response.status_code == 200, response.content
    assert response.json()["response"]["active"] is False
    assert response.json()["response"]["next_execution"] is None
    job = MaintenanceJob.objects.select_related("periodic_task").get(pk=job_id)
    assert job.active is False and job.periodic_task is not None and job.periodic_task.enabled is False

    assert org.admin.patch(job_path("acme", job_id), {"active": True}).json()["response"]["active"] is True
    assert PeriodicTask.objects.get(pk=job.periodic_task.pk).enabled is True
    assert_envelope_error(org.admin.patch(job_path("acme", job_id), {"active": "sometimes"}), 400)
    assert_envelope_error(org.admin.patch(job_path("acme", job_id), {}), 400)


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", str(uuid.uuid4())])
def test_unknown_or_malformed_job_is_404(org: Org, job_id: str) -> None:
    deleted = assert_envelope_error(org.admin.delete(job_path("acme", job_id)), 404)
    patched = assert_envelope_error(org.admin.patch(job_path("acme", job_id), {"active": False}), 404)
    assert deleted["error_code"] == patched["error_code"] == "not_found_job"


# --- orgs, roles, tokens --------------------------------------------------------------------------


def test_an_unknown_org_is_404_for_every_method(org: Org) -> None:
    job_id = create(org.admin, "acme")["response"]["job_id"]

    assert (
        assert_envelope_error(org.admin.get(jobs_path("nope")), 404)["error_code"] == "not_found_organization"
    )
    assert_envelope_error(
        org.admin.post(
            jobs_path("nope"), {"time_expression": "0 0 0 ? * MON", "scheduler_type": "time-based"}
        ),
        404,
    )
    assert_envelope_error(org.admin.delete(job_path("nope", job_id)), 404)
    assert MaintenanceJob.objects.filter(pk=job_id).exists()


def test_another_tenants_org_and_jobs_are_404_like_nonexistent_ones(org: Org, other_org: Org) -> None:
    job_id = create(org.admin, "acme")["response"]["job_id"]
    create(other_org.admin, "globex", "0 0 5 ? * *")

    stranger = other_org.admin
    mine = stranger.get(jobs_path("acme"))
    unknown = stranger.get(jobs_path("does-not-exist"))
    assert_envelope_error(mine, 404)
    assert_envelope_error(unknown, 404)
    assert mine.json()["errors"] == unknown.json()["errors"] == {}
    assert mine.json()["error_code"] == unknown.json()["error_code"]
    assert_envelope_error(
        stranger.post(
            jobs_path("acme"), {"time_expression": "0 0 0 ? * MON", "scheduler_type": "time-based"}
        ),
        404,
    )
    assert_envelope_error(stranger.delete(job_path("acme", job_id)), 404)
    # Asking through its own org does not reach the other tenant's job either.
    assert_envelope_error(stranger.delete(job_path("globex", job_id)), 404)
    assert_envelope_error(stranger.patch(job_path("globex", job_id), {"active": False}), 404)
    assert MaintenanceJob.objects.get(pk=job_id).active is True
    listed = stranger.get(jobs_path("globex")).json()["response"]
    assert [item["organization_Id"] for item in listed] == ["globex"]
    assert job_id not in {item["job_id"] for item in listed}


def test_a_viewer_reads_but_cannot_write(org: Org) -> None:
    job_id = create(org.admin, "acme")["response"]["job_id"]

    assert org.viewer.get(jobs_path("acme")).status_code == 200
    assert_envelope_error(
        org.viewer.post(
            jobs_path("acme"), {"time_expression": "0 0 0 ? * MON", "scheduler_type": "time-based"}
        ),
        403,
    )
    assert_envelope_error(org.viewer.delete(job_path("acme", job_id)), 403)
    assert_envelope_error(org.viewer.patch(job_path("acme", job_id), {"active": False}), 403)
    assert MaintenanceJob.objects.filter(pk=job_id, active=True).count() == 1


def test_no_or_bad_token_is_401(org: Org, anonymous: Api) -> None:
    job_id = create(org.admin, "acme")["response"]["job_id"]

    assert_envelope_error(anonymous.get(jobs_path("acme")), 401)
    assert_envelope_error(Api("dok_0123456789abcdef_wrongwrongwrong").get(jobs_path("acme")), 401)
    assert_envelope_error(anonymous.delete(job_path("acme", job_id)), 401)


def test_a_device_token_is_403(org: Org) -> None:
    actor = add_device(org.tenant, "dev-m1")

    assert_envelope_error(actor.api.get(jobs_path("acme")), 403)


def test_the_schema_documents_both_paths(org: Org) -> None:
    response = org.admin.client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    text = response.content.decode()
    assert "/aggregates/maintenance/scheduler/jobs/orgId/{org_id}" in text
    assert "/api/1.0/aggregates/maintenance-schedule/jobs/orgId/{org_id}/jobId/{job_id}" in text
