"""The task every maintenance job's ``PeriodicTask`` sends: thin, the work is in services."""

from __future__ import annotations

from celery import shared_task

from maintenance import retention, services


@shared_task(name=services.TASK_NAME, ignore_result=True)
def run_maintenance_job(job_id: str) -> str | None:
    """Guard, claim and run the fire this wake-up stands for; see ``services.run_scheduled``."""
    execution = services.run_scheduled(job_id)
    return str(execution.pk) if execution is not None else None


@shared_task(ignore_result=True)
def purge_expired() -> dict[str, int]:
    """Retention (beat ``purge-expired``, every ``RETENTION_INTERVAL_SECONDS``)."""
    return retention.purge_expired()
