"""Seed 004's shapes: the job list item, the create request and answer, the activate request."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config import timestamps
from config.api.fields import ChoiceField
from config.errors import DomainError
from maintenance import services
from maintenance.models import MaintenanceJob

PATH = "time-based"
SCHEDULER_TYPE = "time-based"
CREATED_SCHEDULER_TYPE = "time-based/maintenance"


class LatestExecutionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    jobId = serializers.UUIDField()
    executedAt = serializers.CharField()


class MaintenanceJobSerializer(serializers.ModelSerializer):
    """A list item: seed 004's fields, plus ``active`` and ``next_execution``.

    Expects the queryset of ``MaintenanceJobsView`` (``latest_execution_*`` annotations and
    the tenant's slug).
    """

    job_id = serializers.UUIDField(source="id", read_only=True)
    organization_Id = serializers.CharField(source="tenant.slug", read_only=True)
    created_at = serializers.SerializerMethodField()
    latest_execution = serializers.SerializerMethodField()
    path = serializers.SerializerMethodField()
    next_execution = serializers.SerializerMethodField()

    class Meta:
        model = MaintenanceJob
        fields = [
            "job_id",
            "organization_Id",
            "full_build",
            "time_expression",
            "created_by_user",
            "created_at",
            "latest_execution",
            "path",
            "active",
            "next_execution",
        ]

    def get_created_at(self, job: MaintenanceJob) -> str | None:
        return timestamps.format(job.created_at)

    def get_latest_execution(self, job: MaintenanceJob) -> dict[str, Any] | None:
        execution_id = getattr(job, "latest_execution_id", None)
        if execution_id is None:
            return None
        return {
            "id": str(execution_id),
            "jobId": str(job.pk),
            "executedAt": timestamps.format(job.latest_execution_at),  # type: ignore[attr-defined]
        }

    def get_path(self, job: MaintenanceJob) -> str:
        return PATH

    def get_next_execution(self, job: MaintenanceJob) -> str | None:
        return timestamps.format(services.next_fire(job))


class MaintenanceJobCreateSerializer(serializers.Serializer):
    """POST parameters, from the query string or the JSON body (query string first)."""

    time_expression = serializers.CharField(max_length=200, trim_whitespace=True)
    scheduler_type = ChoiceField(choices=[SCHEDULER_TYPE])
    full_build = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Recount every operation, not only those changed since the last run; at most "
        "once every MAINTENANCE_FULL_BUILD_MIN_MINUTES (60) minutes (else 400 full_build_too_frequent).",
    )

    def validate_time_expression(self, value: str) -> str:
        try:
            services.parse_expression(value)
        except DomainError as err:
            raise serializers.ValidationError(err.errors["time_expression"]) from None
        return value


class MaintenanceJobCreatedSerializer(serializers.ModelSerializer):
    """The POST answer: seed 004's fields, plus the job's other settings."""

    job_id = serializers.UUIDField(source="id", read_only=True)
    scheduler_type = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    next_execution = serializers.SerializerMethodField()

    class Meta:
        model = MaintenanceJob
        fields = [
            "job_id",
            "time_expression",
            "scheduler_type",
            "created_at",
            "created_by_user",
            "full_build",
            "active",
            "next_execution",
        ]

    def get_scheduler_type(self, job: MaintenanceJob) -> str:
        return CREATED_SCHEDULER_TYPE

    def get_created_at(self, job: MaintenanceJob) -> str | None:
        return timestamps.format(job.created_at)

    def get_next_execution(self, job: MaintenanceJob) -> str | None:
        return timestamps.format(services.next_fire(job))


class MaintenanceJobActiveSerializer(serializers.Serializer):
    """PATCH body (or query string): activate or deactivate a job."""

    active = serializers.BooleanField()
