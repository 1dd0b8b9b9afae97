"""``/commands/v0/status/`` (seed 002). The inbox is in ``commands.inbox``."""

from __future__ import annotations

from typing import Any

from django.db.models import F, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response

from commands import services
from commands.api.serializers import CommandStatusSerializer, CommandStatusUpdateSerializer
from commands.filtersets import CommandStatusFilterSet
from commands.models import CommandStatus
from config.api.principal import Principal
from config.api.views import TenantScopedViewSet
from inventory.models import Device


class CommandStatusViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    # No join to the device table here: the count and the page of a million-row list would
    # join every row (issue 17); a list reads its page's device ids in one query (list()).
    queryset = CommandStatus.objects.order_by("id")
    serializer_class = CommandStatusSerializer
    filterset_class = CommandStatusFilterSet
    allow_device_tokens = True
    http_method_names = ["get", "put", "head", "options"]
    lookup_value_regex = "[0-9]+"

    def scope_to_device(self, queryset: QuerySet[Any], principal: Principal) -> QuerySet[Any]:
        return queryset.filter(device_id=principal.device_pk)

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        if self.action != "list":
            queryset = queryset.annotate(device_ref=F("device__device_id"))
        return queryset

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        rows = list(page or [])
        refs = dict(
            Device.objects.filter(pk__in={row.device_id for row in rows}).values_list("pk", "device_id")
        )
        for row in rows:
            row.device_ref = refs.get(row.device_id, "")
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)

    @extend_schema(
        request=CommandStatusUpdateSerializer,
        responses={
            200: CommandStatusSerializer,
            409: OpenApiResponse(description="expected_version is not the command's version."),
        },
    )
    def update(self, request: Request, pk: str) -> Response:
        """Report a command's new state. Repeating the current state is a no-op (200)."""
        serializer = CommandStatusUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            command, _ = services.report(
                int(pk),
                **serializer.report_arguments(),
                actor=self.principal.label,
                # The scope of get_queryset(): the caller's tenant and, for a device token, its device.
                tenant_id=self.tenant_id,
                device_pk=self.principal.device_pk if self.principal.is_device else None,
            )
        except CommandStatus.DoesNotExist:
            raise Http404 from None
        return Response(CommandStatusSerializer(command).data)
