"""``/v0/operations/`` (seeds 000 and 003)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.permissions import RolePermission
from config.api.views import TenantAPIView, TenantScopedViewSet
from inventory.api.serializers import DeviceSerializer
from inventory.api.webhooks import AdminOnly
from operations import approvals, continuous, services, templates
from operations.api.serializers import (
    ROLLOUT_EXAMPLE,
    ApprovalPolicySerializer,
    DecisionSerializer,
    DenySerializer,
    OperationCreateSerializer,
    OperationSerializer,
    OperationStateSerializer,
    RerunSerializer,
)
from operations.choices import RESUMED, OperationState
from operations.filtersets import OperationFilterSet
from operations.models import Operation


class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Operation.objects.select_related("template").prefetch_related("activity", "waves")
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
                "REBOOT every night at 02:00 in each device's own time, for an hour, 30 times",
                request_only=True,
                value={
                    "operation_type": "REBOOT",
                    "schedule_type": "RECURRING",
                    "schedule_args": {
                        "time_expression": "0 0 2 * * ?",
                        "duration_minutes": 60,
                        "time_type": "device",
                        "max_runs": 30,
                    },
                    "operation_device_query": {"groups": ["kiosks"]},
                },
            ),
            OpenApiExample(
                "A RECURRING series as created: SCHEDULED, with its next runs",
                response_only=True,
                status_codes=["201"],
                value={
                    "code": 0,
                    "message": "success",
                    "content": {
                        "id": "0b7c3a52-6a53-4c1e-9f55-52b2f0a8f1d3",
                        "operation": "REBOOT",
                        "operation_type": "REBOOT",
                        "state": "SCHEDULED",
                        "state_code": 100,
                        "schedule_type": "RECURRING",
                        "schedule_args": {
                            "time_type": "device",
                            "time_expression": "0 0 2 * * ?",
                            "duration_minutes": 60,
                            "max_runs": 30,
                        },
                        "operation_device_query": {"groups": ["kiosks"], "device_type": "active"},
                        "arguments": {},
                        "reason": "",
                        "created_at": "2027-01-04T17:30:00.100000Z",
                        "created_by": "key:ops",
                        "updated_at": "2027-01-04T17:30:00.100000Z",
                        "updated_by": "key:ops",
                        "operation_activity": [],
                        "operation_stats": {"device_operation_statuses_count": {"resolved_device_count": 0}},
                        "commands_stop": None,
                        "rollout": None,
                        "rollout_status": None,
                        "parent": None,
                        "scheduled_for": None,
                        "next_run_at": "2027-01-05T02:00:00Z",
                        "runs_count": 0,
                        "last_run": None,
                        "upcoming_runs": [
                            "2027-01-05T02:00:00Z",
                            "2027-01-06T02:00:00Z",
                            "2027-01-07T02:00:00Z",
                        ],
                        "template": None,
                        "template_parameters": None,
                    },
                },
            ),
            OpenApiExample(
                "From a template, with a parameter and an override",
                request_only=True,
                value={
                    "template": "install-pos-app",
                    "template_parameters": {"version": "4.2.0"},
                    "operation_device_query": {"devices": ["dev_67890"]},
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
        data: Any = request.data
        template, values = None, None
        if isinstance(data, dict) and data.get("template") is not None:
            data, template, values = templates.expand(self.tenant_id, data)
        serializer = OperationCreateSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        operation = services.create_operation(
            self.tenant_id,
            serializer.validated_data,
            self.principal.label,
            self.principal.identity,
            template=template,
            template_parameters=values,
        )
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

    def _decider(self) -> approvals.Decider:
        principal = self.principal
        return approvals.Decider(principal.identity, principal.label, principal.is_admin)

    @extend_schema(
        request=DecisionSerializer,
        responses={200: OperationSerializer},
        examples=[OpenApiExample("Approve", request_only=True, value={"remark": "checked the device list"})],
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve an operation waiting for approval: it goes on as if just created. Only an
        admin other than the one that created it may (403 saying why); one decided, expired
        or cancelled meanwhile answers 409."""
        operation = self.get_object()
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        approvals.approve(operation, self._decider(), serializer.validated_data["remark"])
        return Response(OperationSerializer(self.get_queryset().get(pk=operation.pk)).data)

    @extend_schema(
        request=DenySerializer,
        responses={200: OperationSerializer},
        examples=[OpenApiExample("Deny", request_only=True, value={"remark": "wrong store: 12, not 21"})],
    )
    @action(detail=True, methods=["post"])
    def deny(self, request: Request, pk: str) -> Response:
        """Deny an operation waiting for approval (``remark`` required): APPROVAL_DENIED, final.
        The same rules as ``approve``."""
        operation = self.get_object()
        serializer = DenySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        approvals.deny(operation, self._decider(), serializer.validated_data["remark"])
        return Response(OperationSerializer(self.get_queryset().get(pk=operation.pk)).data)

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
        operation = services.rerun(
            source, self.principal.label, self.principal.identity, only=serializer.validated_data["only"]
        )
        operation = self.get_queryset().get(pk=operation.pk)
        return Response(OperationSerializer(operation).data, status=status.HTTP_201_CREATED)


class ApprovalPolicyView(TenantAPIView):
    """``/v0/approval-policy/`` (contract section 13): admin keys read and replace the tenant's
    policy; every PUT is in the audit log (as every write by a key)."""

    permission_classes = [RolePermission, AdminOnly]

    @extend_schema(responses={200: ApprovalPolicySerializer})
    def get(self, request: Request) -> Response:
        """The tenant's approval policy (the default until an admin sets one)."""
        return Response(approvals.policy_of(self.tenant_id).as_json())

    @extend_schema(
        request=ApprovalPolicySerializer,
        responses={200: ApprovalPolicySerializer},
        examples=[
            OpenApiExample(
                "Destructive types, and anything reaching 500 devices",
                request_only=True,
                value={
                    "operation_types": ["WIPE", "REMOVE_DEVICE"],
                    "min_devices": 500,
                    "expires_after_hours": 24,
                },
            ),
            OpenApiExample(
                "No approvals", request_only=True, value={"operation_types": [], "min_devices": None}
            ),
        ],
    )
    def put(self, request: Request) -> Response:
        """Replace the policy; it decides for operations created from now on."""
        serializer = ApprovalPolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        policy = approvals.set_policy(
            self.tenant_id,
            list(data["operation_types"]),
            data["min_devices"],
            data["expires_after_hours"],
            self.principal.label,
        )
        return Response(policy.as_json())
