"""A Quartz expression that can never fire (``0 0 0 30 FEB ? *``) is refused with the reason,
through the API, the console and the service (issue 12, item 8 a); the search for its next
fire is bounded by the Quartz year range."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.test import Client

from config.errors import DomainError
from config.quartz import QuartzExpression
from maintenance import services
from maintenance.models import MaintenanceJob
from tests.conftest import Org
from tests.test_maintenance_api import assert_envelope_error, jobs_path

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 0 30 FEB ? *", "never fires: February has no day 30"),
        ("0 0 0 30,31 FEB ?", "never fires: February has no day 30 or 31"),
        ("0 0 0 31 APR,JUN,SEP,NOV ?", "never fires: April, June, September and November have no day 31"),
        ("0 0 0 31 2,4 ?", "never fires: February and April have no day 31"),
        ("0 0 0 31W FEB ?", "never fires: February has no day 31"),
        ("0 0 0 L-29 FEB ?", "never fires: February has no day 29 days before its last"),
        ("0 0 0 1 JAN ? 2020", "never fires again: its last year, 2020, is past"),
        ("0 0 0 1 JAN ? 2000-2025", "never fires again: its last year, 2025, is past"),
    ],
)
def test_the_reason_says_why_it_never_fires(expression: str, reason: str) -> None:
    assert QuartzExpression.parse(expression).never_fires_reason(NOW) == reason


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 0 29 FEB ?",  # leap years
        "0 0 0 ? FEB 6#5",  # a fifth Friday in February: leap years starting on a Friday
        "0 0 0 L * ?",
        "0 0 0 1 JAN ? 2199",
        "0 0 0 ? * MON",
    ],
)
def test_an_expression_that_fires_some_day_has_no_reason(expression: str) -> None:
    assert QuartzExpression.parse(expression).never_fires_reason(NOW) is None


def test_a_fire_only_in_a_past_year_range_inside_an_allowed_year_is_explained() -> None:
    # 30 Feb is impossible whatever the year; the calendar reason wins over the years.
    reason = QuartzExpression.parse("0 0 0 30 FEB ? 2030").never_fires_reason(NOW)

    assert reason == "never fires: February has no day 30"


def test_no_fifth_monday_of_february_in_the_years_given_is_the_generic_reason() -> None:
    # 2027 and 2028: February 2028 has 29 days but starts on a Tuesday.
    reason = QuartzExpression.parse("0 0 0 ? FEB 2#5 2027-2028").never_fires_reason(NOW)

    assert reason == "never fires after 2026-03-01: no fire time up to the end of 2028"


def test_the_search_is_bounded() -> None:
    expression = QuartzExpression.parse("0 0 0 31 FEB,APR,JUN,SEP,NOV ?")

    started = time.perf_counter()
    assert expression.never_fires_reason(NOW) is not None
    assert time.perf_counter() - started < 1.0


def test_the_api_refuses_it_with_the_reason(org: Org) -> None:
    response = org.admin.post(
        jobs_path("acme"), {"time_expression": "0 0 0 30 FEB ? *", "scheduler_type": "time-based"}
    )

    body = assert_envelope_error(response, 400)
    assert body["status"]["message"] == "time_expression: never fires: February has no day 30"
    assert not MaintenanceJob.objects.exists()


def test_the_service_and_the_console_refuse_it(org: Org, console: Client) -> None:
    with pytest.raises(DomainError, match="February has no day 30"):
        services.create_job(org.tenant.pk, "0 0 0 30 FEB ?")
    job = services.create_job(org.tenant.pk, "0 0 0 ? * MON")
    with pytest.raises(DomainError, match="April has no day 31"):
        services.update_job(job, time_expression="0 0 0 31 APR ?")
    services.delete_job(job)

    response = console.post(
        "/admin/maintenance/maintenancejob/add/",
        {"tenant": org.tenant.pk, "time_expression": "0 0 0 30 FEB ?", "active": "on"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert "February has no day 30" in response.content.decode()
    assert not MaintenanceJob.objects.exists()


def test_a_stored_job_whose_last_year_passed_can_still_be_switched_off(org: Org) -> None:
    """Refusing is for new expressions: a job saved when its year was ahead keeps working."""
    job = services.create_job(org.tenant.pk, "0 0 0 1 JAN ? 2199")
    MaintenanceJob.objects.filter(pk=job.pk).update(time_expression="0 0 0 1 JAN ? 2020")
    job.refresh_from_db()

    services.set_active(job, False)

    job.refresh_from_db()
    assert job.active is False
