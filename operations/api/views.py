"""``/v0/operations/`` (seeds 000 and 003)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.views import TenantScopedViewSet
from inventory.api.serializers import DeviceSerializer
from operations import continuous, services
from operations.api.serializers import (
    ROLLOUT_EXAMPLE,
    OperationCreateSerializer,
    OperationSerializer,
    OperationStateSerializer,
    RerunSerializer,
)
from operations.choices import RESUMED, OperationState
from operations.filtersets import OperationFilterSet
from operations.models import Operation


class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Operation.objects.prefetch_related("activity", "waves")
    serializer_class = OperationSerializer
    filterset_class = OperationFilterSet
    http_method_names = ["get", "post", "put", "head", "options"]
    #: POSTs that change nothing, so viewers may call them.
    read_only_actions = ("preview",)

    @extend_schema(
        request=OperationCreateSerializer,
        responses={201: OperationSerializer},
        examples=[
            OpenApiExample(
                "INSTALL_APP in waves, with a rate, an abort rule and retries",
                request_only=True,
                value={
                    "operation_type": "INSTALL_APP",
                    "operation_device_query": {"all": True},
                    "arguments": {"package": "com.example.pos", "version": "4.2.0"},
                    "rollout": ROLLOUT_EXAMPLE,
                },
            ),
            OpenApiExample(
                "CONTINUOUS: every kiosk, also those enrolled later, until the end of the year",
                request_only=True,
                value={
                    "operation_type": "INSTALL_APP",
                    "target_selection": "CONTINUOUS",
                    "operation_device_query": {"filters": {"tags__contains": ["kiosk"]}},
                    "arguments": {"package": "com.example.kiosk", "version": "2.0.1"},
                    "schedule_args": {"end_datetime": "2026-12-31T23:00:00+00:00"},
                    "rollout": {
                        "max_per_minute": 500,
                        "retries": [{"failure_type": "TIMED_OUT", "max_attempts": 3}],
                    },
                },
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        """Create an operation; a worker resolves and dispatches it (answers at once, CREATED)."""
        serializer = OperationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        operation = services.create_operation(self.tenant_id, serializer.validated_data, self.principal.label)
        operation = self.get_queryset().get(pk=operation.pk)
        return Response(OperationSerializer(operation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=OperationStateSerializer,
        examples=[
            OpenApiExample(
                "Pause", request_only=True, value={"state": "PAUSED", "reason": "hold for the night"}
            ),
            OpenApiExample("Resume", request_only=True, value={"state": "RESUMED"}),
            OpenApiExample(
                "Cancel", request_only=True, value={"state": "CANCELLED", "reason": "wrong build"}
            ),
            OpenApiExample(
                "Close a CONTINUOUS operation",
                request_only=True,
                value={"state": "COMPLETED", "reason": "the new kiosks are all enrolled"},
            ),
        ],
        responses={
            200: inline_serializer(
                "OperationStateChanged",
                {
                    "code": serializers.IntegerField(),
                    "message": serializers.CharField(),
                    "operationId": serializers.CharField(),
                    "status": serializers.CharField(),
                    "content": OperationSerializer(),
                },
            )
        },
    )
    def update(self, request: Request, pk: str) -> Response:
        """Cancel, time out, fail or reschedule an operation; unfinished commands follow."""
        operation = self.get_object()
        serializer = OperationStateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        state, reason = serializer.validated_data["state"], serializer.validated_data["reason"]
        if state == RESUMED:
            operation = services.resume(operation, reason, self.principal.label)
        elif state == OperationState.COMPLETED:
            operation = continuous.close(operation, reason, self.principal.label)
        else:
            operation = services.request_state(operation, state, reason, self.principal.label)
        operation = self.get_queryset().get(pk=operation.pk)
        body = {
            "code": 0,
            "message": "success",
            "operationId": str(operation.pk),
            "status": "SUCCEEDED",
            "content": OperationSerializer(operation).data,
        }
        response = Response(body)
        response.enveloped = True  # type: ignore[attr-defined]
        return response

    @extend_schema(
        request=OperationCreateSerializer,
        responses={
            200: inline_serializer(
                "OperationPreview",
                {"device_count": serializers.IntegerField(), "devices": DeviceSerializer(many=True)},
            )
        },
    )
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """Dry run of a device query: how many devices match, and the first few. Creates nothing."""
        raw = request.data.get("operation_device_query") if isinstance(request.data, dict) else None
        count, sample = services.preview(self.tenant_id, raw if raw is not None else request.data)
        body: dict[str, Any] = {"device_count": count, "devices": DeviceSerializer(sample, many=True).data}
        return Response(body)

    @extend_schema(
        request=RerunSerializer,
        responses={201: OperationSerializer},
        examples=[
            OpenApiExample("The failed and timed-out devices (the default)", request_only=True, value={}),
            OpenApiExample(
                "Also the devices it never reached",
                request_only=True,
                value={"only": ["FAILED", "DISPATCH_FAILED"]},
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str) -> Response:
        """A new operation of the same type, arguments and rollout for exactly the devices whose
        commands ended as ``only`` says (default FAILED and TIMED_OUT); it shows ``rerun_of``.
        The source must be finished; no device ended so: 400 ``nothing_to_retry``."""
        source = self.get_object()
        serializer = RerunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        operation = services.rerun(source, self.principal.label, only=serializer.validated_data["only"])
        operation = self.get_queryset().get(pk=operation.pk)
        return Response(OperationSerializer(operation).data, status=status.HTTP_201_CREATED)
