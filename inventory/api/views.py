"""``/v0/devices/`` and ``/v0/groups/``."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.views import TenantScopedViewSet
from inventory import services
from inventory.api.serializers import (
    BulkDevicesResultSerializer,
    DeviceSerializer,
    DeviceWithTokenSerializer,
    GroupSerializer,
)
from inventory.device_rows import DEVICE_ID_RE
from inventory.filtersets import DeviceFilterSet, GroupFilterSet
from inventory.models import Device, Group

MAX_BULK_DEVICES = 100_000
#: A create or rename to an id another device of the tenant has: a clash with what exists,
#: not a malformed body.
ID_TAKEN = OpenApiResponse(description="Another device of the tenant has that id.")
#: The same for a group's name (``group_exists``).
NAME_TAKEN = OpenApiResponse(description="Another group of the tenant has that name.")


class DeviceViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    queryset = Device.objects.prefetch_related("groups")
    serializer_class = DeviceSerializer
    filterset_class = DeviceFilterSet
    lookup_field = "device_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[^/]+"

    def get_object(self) -> Device:
        # An id no device can have (a NUL byte, a space) cannot exist: 404 without asking the
        # database, which would refuse a NUL byte with an error.
        if not DEVICE_ID_RE.match(self.kwargs[self.lookup_url_kwarg]):
            raise NotFound("Not found.")
        return super().get_object()

    @extend_schema(responses={201: DeviceWithTokenSerializer, 409: ID_TAKEN})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = DeviceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device, token = services.create_device(self.tenant_id, serializer.validated_data)
        body = DeviceWithTokenSerializer(device, context={"token": token}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: DeviceSerializer, 409: ID_TAKEN})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Replace a device's fields; an ``id`` other than its own renames it."""
        partial = kwargs.pop("partial", False)
        device = self.get_object()
        serializer = DeviceSerializer(device, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        services.update_device(device, serializer.validated_data)
        # Read again by primary key: after a rename the path's id is no longer the device's.
        return Response(DeviceSerializer(self.get_queryset().get(pk=device.pk)).data)

    @extend_schema(responses={200: DeviceSerializer, 409: ID_TAKEN})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def perform_destroy(self, instance: Device) -> None:
        services.delete_device(instance)

    @extend_schema(
        request=DeviceSerializer(many=True),
        responses={201: BulkDevicesResultSerializer},
        parameters=[
            OpenApiParameter(
                "on_conflict",
                str,
                enum=["error", "skip"],
                description="What to do with ids that exist already: refuse the import, or skip them.",
            )
        ],
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        """Create up to 100,000 devices in one call, all or nothing; answers each new token once."""
        rows = request.data
        if not isinstance(rows, list):
            raise ValidationError({"non_field_errors": ["the body must be a JSON list of devices"]})
        if not rows:
            raise ValidationError({"non_field_errors": ["the list of devices is empty"]})
        if len(rows) > MAX_BULK_DEVICES:
            raise ValidationError({"non_field_errors": [f"at most {MAX_BULK_DEVICES} devices per call"]})
        on_conflict = request.query_params.get("on_conflict", "error")
        if on_conflict not in ("error", "skip"):
            raise ValidationError({"on_conflict": ["must be 'error' or 'skip'"]})
        cleaned, errors = services.validate_device_rows(rows)
        if errors:
            raise ValidationError(errors)
        result = services.bulk_import_devices(self.tenant_id, cleaned, on_conflict=on_conflict)
        body = {
            "created": len(result.created),
            "skipped": result.skipped,
            "devices": [{"id": device_id, "token": token} for device_id, token in result.created],
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: DeviceWithTokenSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request: Request, id: str) -> Response:
        """Issue a new device token (shown once); the old one stops working at once."""
        device = self.get_object()
        token = services.rotate_device_token(device)
        return Response(DeviceWithTokenSerializer(device, context={"token": token}).data)

    @extend_schema(request=None, responses={200: DeviceSerializer})
    @action(detail=True, methods=["post"], url_path="revoke-token")
    def revoke_token(self, request: Request, id: str) -> Response:
        device = self.get_object()
        services.revoke_device_token(device)
        return Response(DeviceSerializer(device).data)


class GroupViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    queryset = Group.objects.all()
    serializer_class = GroupSerializer
    filterset_class = GroupFilterSet

    def get_queryset(self) -> QuerySet[Group]:
        return super().get_queryset().annotate(device_count=Count("devices"))

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = services.save_group(self.tenant_id, serializer.validated_data)

    def perform_update(self, serializer: Any) -> None:
        services.save_group(self.tenant_id, serializer.validated_data, group=serializer.instance)

    @extend_schema(responses={201: GroupSerializer, 409: NAME_TAKEN})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().create(request, *args, **kwargs)
        response.data = GroupSerializer(self.get_queryset().get(pk=response.data["id"])).data
        return response

    @extend_schema(responses={200: GroupSerializer, 409: NAME_TAKEN})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().update(request, *args, **kwargs)

    @extend_schema(responses={200: GroupSerializer, 409: NAME_TAKEN})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().partial_update(request, *args, **kwargs)
