"""Seed 004: ``/aggregates/maintenance/scheduler/jobs/orgId/{orgId}`` and its DELETE twin.

``orgId`` must be the slug of the caller's own tenant; any other value, whether another
tenant's or one that does not exist, answers the same 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.envelopes import MaintenanceEnvelope
from config.api.views import TenantAPIView
from inventory.models import Tenant
from maintenance import services
from maintenance.api.serializers import (
    MaintenanceJobActiveSerializer,
    MaintenanceJobCreatedSerializer,
    MaintenanceJobCreateSerializer,
    MaintenanceJobSerializer,
)
from maintenance.models import EXECUTED_OUTCOMES, MaintenanceExecution, MaintenanceJob

CREATED_MESSAGE = "Time-based schedule successfully created."
ENVELOPE = MaintenanceEnvelope()
_BOOLEANS = {"true": True, "false": False}
CREATE_PARAMETERS = ("time_expression", "scheduler_type", "full_build")


def _body(request: Request) -> dict[str, Any]:
    """The JSON object of the body; an empty body (parameters in the query string) is ``{}``
    whatever its content type says."""
    if not request.stream or not int(request.META.get("CONTENT_LENGTH") or 0):
        return {}
    body = request.data
    if not isinstance(body, dict):
        raise ValidationError({"body": ["expected a JSON object"]})
    return body


class MaintenanceView(TenantAPIView):
    envelope = ENVELOPE

    def check_org(self, org_id: str) -> Tenant:
        """The caller's tenant if ``org_id`` names it; 404 otherwise, whatever else it names."""
        tenant = Tenant.objects.filter(pk=self.tenant_id).first()
        if tenant is None or tenant.slug != org_id:
            raise NotFound(f"Organization '{org_id}' not found.", code="not_found_organization")
        return tenant

    def jobs(self) -> QuerySet[MaintenanceJob]:
        latest = MaintenanceExecution.objects.filter(
            job=OuterRef("pk"), outcome__in=EXECUTED_OUTCOMES
        ).order_by("-started_at")
        return self.scope(MaintenanceJob.objects.select_related("tenant")).annotate(
            latest_execution_id=Subquery(latest.values("id")[:1]),
            latest_execution_at=Subquery(latest.values("started_at")[:1]),
        )


class MaintenanceJobsView(MaintenanceView):
    @extend_schema(
        operation_id="maintenance_jobs_list",
        parameters=[
            OpenApiParameter(
                "active",
                OpenApiTypes.BOOL,
                description="true: only active jobs; false: only deactivated jobs; absent: all.",
            )
        ],
        responses={200: MaintenanceJobSerializer(many=True)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        """Every maintenance schedule of the organization, newest first."""
        self.check_org(org_id)
        jobs = self.jobs()
        raw = request.query_params.get("active")
        if raw is not None:
            if raw.lower() not in _BOOLEANS:
                raise ValidationError({"active": [f"must be true or false, got {raw[:40]!r}"]})
            jobs = jobs.filter(active=_BOOLEANS[raw.lower()])
        return Response(MaintenanceJobSerializer(jobs, many=True).data)

    @extend_schema(
        operation_id="maintenance_jobs_create",
        parameters=[
            OpenApiParameter(
                "time_expression", OpenApiTypes.STR, description="Quartz cron, e.g. 0 0 0 ? * MON"
            ),
            OpenApiParameter("scheduler_type", OpenApiTypes.STR, enum=["time-based"]),
            OpenApiParameter(
                "full_build",
                OpenApiTypes.BOOL,
                description="Recount every operation, not only those changed since the last run. "
                "A full build may fire at most once every MAINTENANCE_FULL_BUILD_MIN_MINUTES (60) "
                "minutes; a closer one is 400 full_build_too_frequent.",
            ),
        ],
        request=MaintenanceJobCreateSerializer,
        responses={
            200: MaintenanceJobCreatedSerializer,
            409: OpenApiResponse(
                description="The organization has MAINTENANCE_JOBS_PER_TENANT (10) jobs already, "
                "active or not: too_many_jobs."
            ),
        },
    )
    def post(self, request: Request, org_id: str) -> Response:
        """Create a time-based schedule; parameters come from the query string or the JSON body."""
        tenant = self.check_org(org_id)
        params: dict[str, Any] = dict(_body(request).items())
        params.update(
            {name: value for name, value in request.query_params.items() if name in CREATE_PARAMETERS}
        )
        serializer = MaintenanceJobCreateSerializer(data=params)
        serializer.is_valid(raise_exception=True)
        job = services.create_job(
            tenant.pk,
            serializer.validated_data["time_expression"],
            full_build=serializer.validated_data["full_build"],
            created_by=self.principal.label,
        )
        response = Response(MaintenanceJobCreatedSerializer(job).data)
        response.envelope_message = CREATED_MESSAGE  # type: ignore[attr-defined]
        return response


class MaintenanceJobView(MaintenanceView):
    def get_job(self, org_id: str, job_id: str) -> MaintenanceJob:
        self.check_org(org_id)
        try:
            pk = uuid.UUID(job_id)
        except ValueError:
            raise NotFound(f"Job '{job_id[:60]}' not found.", code="not_found_job") from None
        job = self.jobs().filter(pk=pk).first()
        if job is None:
            raise NotFound(f"Job '{job_id}' not found.", code="not_found_job")
        return job

    @extend_schema(
        operation_id="maintenance_job_delete",
        responses={200: OpenApiTypes.STR},
    )
    def delete(self, request: Request, org_id: str, job_id: str) -> Response:
        """Delete the schedule and its beat entry; its execution history goes with it."""
        job = self.get_job(org_id, job_id)
        services.delete_job(job)
        return Response(f"successfully deleted job with Id: [{job_id}]")

    @extend_schema(
        operation_id="maintenance_job_set_active",
        request=MaintenanceJobActiveSerializer,
        responses={200: MaintenanceJobSerializer},
    )
    def patch(self, request: Request, org_id: str, job_id: str) -> Response:
        """Activate or deactivate the schedule: ``{"active": false}`` (not in the seed)."""
        job = self.get_job(org_id, job_id)
        params = {**_body(request), **request.query_params.dict()}
        serializer = MaintenanceJobActiveSerializer(data=params)
        serializer.is_valid(raise_exception=True)
        services.set_active(job, serializer.validated_data["active"])
        return Response(MaintenanceJobSerializer(self.get_job(org_id, job_id)).data)
