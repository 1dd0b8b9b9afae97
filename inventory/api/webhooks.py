"""``/v0/webhooks/``: a tenant's webhook endpoints, their deliveries, ping and redeliver
(CONTRACT §10). Admin keys only: an endpoint receives every event of the tenant it takes."""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.fields import ChoiceField
from config.api.limits import max_text_length
from config.api.permissions import RolePermission
from config.api.views import TenantScopedViewSet
from inventory.models import EventType, WebhookDelivery, WebhookEndpoint
from inventory.webhooks import services
from inventory.webhooks.services import MAX_EVENT_NAMES, SUBSCRIBABLE

UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


class AdminOnly(BasePermission):
    message = "Only an admin key manages webhooks."

    def has_permission(self, request: Request, view: Any) -> bool:
        return getattr(request.auth, "role", None) == "admin"


class WebhookUrlField(serializers.CharField):
    """A URL taken exactly as sent: no whitespace trimmed, no NUL refused here, so that every
    character the guard refuses (``inventory.webhooks.guard.unsendable``: whitespace, control
    characters) reaches ``services.clean_url`` and answers its one 400, ``url_refused``,
    instead of being trimmed away unseen or refused with another code."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as every answer shows it: never its secret."""

    url = WebhookUrlField(
        max_length=2000,
        help_text="http or https; must resolve to a public address; no whitespace or control characters.",
    )
    events = serializers.ListField(
        child=ChoiceField(choices=list(SUBSCRIBABLE)),
        min_length=1,
        max_length=MAX_EVENT_NAMES,
        help_text='Event types, or ["*"] for every type but command.state_changed (asked for by name).',
    )
    description = serializers.CharField(
        required=False, allow_blank=True, max_length=500, validators=[max_text_length()]
    )
    active = serializers.BooleanField(required=False)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "active",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "disabled_at", "disabled_reason", "created_at", "updated_at"]


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """The answer to a create or a rotation: the only time the secret is shown."""

    secret = serializers.SerializerMethodField(
        help_text="whsec_ + base64 of the key: give it to a Standard Webhooks library as is. Shown once."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]

    def get_secret(self, endpoint: WebhookEndpoint) -> str:
        return str(self.context["secret"])


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """One attempt to deliver one event."""

    id = serializers.CharField()
    event_id = serializers.SerializerMethodField(help_text="The event's webhook-id header.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "attempt",
            "status_code",
            "error",
            "duration_ms",
            "created_at",
            "next_retry_at",
        ]

    def get_event_id(self, delivery: WebhookDelivery) -> str:
        return f"evt_{delivery.event_id}"


_CREATE_EXAMPLE = OpenApiExample(
    "Operations and devices",
    value={
        "url": "https://hooks.example.com/device-ops",
        "events": ["operation.state_changed", "device.created"],
        "description": "ops team",
        "active": True,
    },
    request_only=True,
)
_CREATED_EXAMPLE = OpenApiExample(
    "Created",
    value={
        "code": 0,
        "message": "success",
        "content": {
            "id": "5c7b2f1e-3f5d-4a51-9a55-0d2a6c1b9e10",
            "url": "https://hooks.example.com/device-ops",
            "events": ["operation.state_changed", "device.created"],
            "description": "ops team",
            "active": True,
            "disabled_at": None,
            "disabled_reason": "",
            "created_at": "2026-12-01T17:30:00Z",
            "updated_at": "2026-12-01T17:30:00Z",
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        },
    },
    response_only=True,
    status_codes=["201"],
)
_ACCEPTED = OpenApiResponse(
    response=inline_serializer("WebhookQueued", {"queued": serializers.CharField()}),
    description="Queued: a worker sends it within seconds; its attempts show under deliveries.",
)


@extend_schema_view(
    list=extend_schema(summary="List the tenant's webhook endpoints"),
    retrieve=extend_schema(summary="One webhook endpoint (never its secret)"),
    destroy=extend_schema(summary="Delete a webhook endpoint and its deliveries"),
)
class WebhookEndpointViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer
    permission_classes = [RolePermission, AdminOnly]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    lookup_value_regex = UUID_PATTERN

    @extend_schema(
        summary="Add a webhook endpoint",
        request=WebhookEndpointSerializer,
        responses={201: WebhookEndpointWithSecretSerializer},
        examples=[_CREATE_EXAMPLE, _CREATED_EXAMPLE],
    )
    def create(self, request: Request) -> Response:
        """The answer carries the signing secret, shown this once."""
        serializer = WebhookEndpointSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        endpoint, secret = services.create_endpoint(
            self.tenant_id, data["url"], data["events"], data.get("description", ""), data.get("active", True)
        )
        body = WebhookEndpointWithSecretSerializer(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change a webhook endpoint",
        request=WebhookEndpointSerializer(partial=True),
        responses={200: WebhookEndpointSerializer},
        examples=[OpenApiExample("Turn it back on", value={"active": True}, request_only=True)],
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        serializer = WebhookEndpointSerializer(endpoint, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.update_endpoint(endpoint, serializer.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        services.delete_endpoint(instance)

    @extend_schema(
        summary="Give the endpoint a new secret",
        request=None,
        responses={200: WebhookEndpointWithSecretSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        """The new secret is shown once; events are signed with it from now on."""
        endpoint = self.get_object()
        secret = services.rotate_secret(endpoint)
        return Response(WebhookEndpointWithSecretSerializer(endpoint, context={"secret": secret}).data)

    @extend_schema(summary="Send a webhook.ping event", request=None, responses={202: _ACCEPTED})
    @action(detail=True, methods=["post"])
    def ping(self, request: Request, pk: str) -> Response:
        """A signed ``webhook.ping`` event to this endpoint alone; see its deliveries for the answer."""
        endpoint = self.get_object()
        services.ping(endpoint)
        return Response({"queued": EventType.WEBHOOK_PING.value}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="The endpoint's delivery attempts, newest first",
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()
        page = self.paginate_queryset(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-id"))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(summary="Send a delivery's event again", request=None, responses={202: _ACCEPTED})
    @action(
        detail=True,
        methods=["post"],
        url_path=r"deliveries/(?P<delivery_id>[0-9]{1,18})/redeliver",
    )
    def redeliver(self, request: Request, pk: str, delivery_id: str) -> Response:
        """The event is sent again now, with the same ``webhook-id``, as the next attempt."""
        endpoint = self.get_object()
        delivery = WebhookDelivery.objects.filter(endpoint=endpoint, pk=int(delivery_id)).first()
        if delivery is None:
            raise NotFound("Not found.")
        services.redeliver(endpoint, delivery)
        return Response({"queued": f"evt_{delivery.event_id}"}, status=status.HTTP_202_ACCEPTED)
