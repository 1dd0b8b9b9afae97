"""``/api/v1/inventory_device_headless_operation/`` (seed 001): bare objects, paged lists."""

from __future__ import annotations

import builtins
import datetime as dt
from typing import Any

from django.http import QueryDict
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.envelopes import BareEnvelope
from config.api.fields import ChoiceField
from config.api.filters import StrictChoiceFilter
from config.api.limits import JSON_FIELD_HELP, max_json_size, max_text_length
from config.api.parsers import FormParser, JSONParser, JSONRefused, MultiPartParser, loads
from config.api.validators import storable_json
from config.api.views import TenantScopedViewSet
from config.env import parse_bool
from config.timestamps import TimestampError, parse_aware
from inventory.models import Device
from operations import headless
from operations.models import HeadlessOperation, HeadlessStatus
from operations.models.headless import OPERATION_TYPE_PATTERN, PRIORITY_BY_NAME


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field):
    """ISO 8601 with an offset (contract section 1), read by the project's one parser
    (``config.timestamps``), answered in UTC."""

    def to_internal_value(self, data: Any) -> dt.datetime:
        try:
            return parse_aware(data).astimezone(dt.UTC)
        except TimestampError as error:
            raise serializers.ValidationError(str(error)) from None

    def to_representation(self, value: dt.datetime) -> str:
        return serializers.DateTimeField().to_representation(value)


class HeadlessOperationSerializer(serializers.ModelSerializer):
    """What every answer shows: the seed's fields, plus ``reason`` and ``command_id`` (the
    internal command in ``/commands/v0/status/``, null until the operation runs)."""

    device_id = serializers.CharField(source="device.device_id")
    status = ChoiceField(choices=HeadlessStatus.choices)
    priority = ChoiceField(choices=list(PRIORITY_BY_NAME), source="priority_name")
    parameters = serializers.JSONField()
    command_id = serializers.CharField(allow_null=True)

    class Meta:
        model = HeadlessOperation
        fields = [
            "id",
            "device_id",
            "operation_type",
            "status",
            "scheduled_at",
            "created_at",
            "updated_at",
            "parameters",
            "priority",
            "reason",
            "command_id",
        ]
        read_only_fields = fields


class HeadlessOperationCreateSerializer(serializers.Serializer):
    """The body of a POST, once unwrapped from ``{"data": "<JSON string>"}`` if so sent."""

    device_id = serializers.CharField(max_length=128)
    operation_type = serializers.RegexField(
        OPERATION_TYPE_PATTERN,
        max_length=64,
        error_messages={
            "invalid": "must be 1 to 64 letters, digits, '_', '-' or '.', e.g. 'firmware_update'"
        },
    )
    scheduled_at = AwareDateTimeField(
        required=False, help_text="ISO 8601 with an offset; in the past (or left out) means now."
    )
    parameters = serializers.DictField(
        required=False, default=dict, validators=[storable_json, max_json_size()], help_text=JSON_FIELD_HELP
    )
    priority = ChoiceField(
        choices=list(PRIORITY_BY_NAME),
        default="normal",
        error_messages={"invalid_choice": "'{input}' is not one of low, normal, high, critical"},
    )


class CancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, validators=[max_text_length()])


class HeadlessOperationFilterSet(filters.FilterSet):
    id = filters.CharFilter(field_name="id", help_text="The operation's id, e.g. op_12345.")
    device_id = filters.CharFilter(field_name="device__device_id")
    status = StrictChoiceFilter(choices=HeadlessStatus.choices)
    operation_type = filters.CharFilter()

    class Meta:
        model = HeadlessOperation
        fields: list[str] = []


def unwrap_body(body: Any) -> dict[str, Any]:
    """The operation from either body form; malformed JSON in ``data`` is a 400 naming it.

    A body with ``data`` and no ``device_id`` is the wrapped form; otherwise ``data`` is an
    unknown field of the object form and ignored.
    """
    if not isinstance(body, dict):
        raise ValidationError({"body": ['must be a JSON object, or {"data": "<JSON object as a string>"}']})
    if "data" not in body or "device_id" in body:
        return body
    raw = body["data"]
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise ValidationError({"data": ["must be a string holding a JSON object"]})
    try:
        parsed = loads(raw)  # the body parser's limits: nesting, non-finite numbers, surrogates
    except JSONRefused as refused:
        if refused.where is None:
            raise ValidationError({"data": [f"is not valid JSON: {refused.reason}"]}) from None
        raise ValidationError({refused.field("data"): [refused.reason]}) from None
    if not isinstance(parsed, dict):
        raise ValidationError({"data": ["must hold a JSON object"]})
    return parsed


def parse_update_status(request: Request) -> bool:
    raw = request.query_params.get("update_status")
    if raw is None:
        return False
    parsed = parse_bool(raw)
    if parsed is None:
        raise ValidationError({"update_status": [f"must be true or false, got {raw[:40]!r}"]})
    return parsed


#: A form body (urlencoded or multipart), as seed 001 documents it: one field, ``data``.
FORM_BODY = inline_serializer(
    "HeadlessOperationForm",
    {"data": serializers.CharField(help_text="The operation as a JSON object, written as a string.")},
)

UPDATE_STATUS = OpenApiParameter(
    "update_status",
    OpenApiTypes.BOOL,
    description="Run the configured status helpers (HEADLESS_STATUS_HELPERS) over the returned "
    "operations before answering.",
)


@extend_schema_view(
    list=extend_schema(parameters=[UPDATE_STATUS]),
    retrieve=extend_schema(parameters=[UPDATE_STATUS]),
)
class HeadlessOperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Schedule and follow headless operations of the tenant's devices."""

    queryset = HeadlessOperation.objects.select_related("device").order_by("-created_at", "id")
    serializer_class = HeadlessOperationSerializer
    filterset_class = HeadlessOperationFilterSet
    envelope = BareEnvelope()
    lookup_value_regex = "[^/]+"
    # Seed 001's POST takes a form whose ``data`` field holds the JSON (contract section 6).
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        update = parse_update_status(request)
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        assert page is not None, "the API always pages"
        if update:
            page = self._refreshed(list(page))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        update = parse_update_status(request)
        operation = self.get_object()
        if update:
            operation = self._refreshed([operation])[0]
        return Response(self.get_serializer(operation).data)

    def _refreshed(self, operations: builtins.list[HeadlessOperation]) -> builtins.list[HeadlessOperation]:
        """Run the status helpers over exactly these operations, then read them again."""
        if not operations:
            return operations
        pks = [operation.pk for operation in operations]
        headless.run_status_helpers(HeadlessOperation.objects.filter(tenant_id=self.tenant_id, pk__in=pks))
        fresh = self.get_queryset().in_bulk(pks)
        return [fresh[pk] for pk in pks if pk in fresh]

    @extend_schema(
        request={
            "application/json": HeadlessOperationCreateSerializer,
            "application/x-www-form-urlencoded": FORM_BODY,
            "multipart/form-data": FORM_BODY,
        },
        responses={
            201: HeadlessOperationSerializer,
            400: OpenApiResponse(description="Invalid parameters or malformed JSON (in the body or `data`)."),
            404: OpenApiResponse(description="The device does not exist in the tenant."),
        },
        description="Schedule a headless operation. The body is the operation as a JSON object, "
        'or `{"data": "<the same object as a JSON string>"}`, or a form (urlencoded or multipart) '
        "whose field `data` holds that JSON string.",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = request.data
        if isinstance(body, QueryDict):  # a form: one value per field, the last if repeated
            body = body.dict()
        serializer = HeadlessOperationCreateSerializer(data=unwrap_body(body))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        device = Device.objects.filter(tenant_id=self.tenant_id, device_id=data["device_id"]).first()
        if device is None:
            raise NotFound(
                f"device_id: no device {data['device_id'][:128]!r} in this tenant.", code="not_found_device"
            )
        operation = headless.create_operation(
            self.tenant_id,
            device,
            operation_type=data["operation_type"],
            scheduled_at=data.get("scheduled_at") or dt.datetime.now(dt.UTC),
            parameters=data["parameters"],
            priority=PRIORITY_BY_NAME[data["priority"]],
            actor=self.principal.label,
        )
        return Response(self.get_serializer(operation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=CancelSerializer,
        responses={
            200: HeadlessOperationSerializer,
            400: OpenApiResponse(description="The operation has finished (completed, failed or cancelled)."),
            404: OpenApiResponse(description="No such operation in the tenant."),
        },
        description="Cancel an operation. A scheduled one never runs; a pending or running one is "
        "cancelled with its device command (`Command Cancelled`). A finished one answers 400.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        operation = self.get_object()
        body = CancelSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        headless.cancel(operation, body.validated_data.get("reason", ""), actor=self.principal.label)
        return Response(self.get_serializer(self.get_queryset().get(pk=operation.pk)).data)
