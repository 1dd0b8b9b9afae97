"""``GET /v2/mqtt-credentials/?device_id=X``: a device's login on the MQTT broker (contract
section 14, docs/mqtt.md).

A device asks with its own token and gets the broker's address, its username, client id and
password, and the topics it may use. Its first call makes the login on the broker
(``inventory.broker_logins.issue``): devices that never ask have none. The password is
derived from the device's token, so asking again gives the same one until the token is
rotated. Not a hot path (a device asks once, then after a rotation or a refused login), so a
DRF view like the others, with the API's envelope and error handler.
"""

from __future__ import annotations

import logging

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from config.api.exceptions import RETRY_AFTER_SECONDS
from config.api.views import TenantAPIView
from config.errors import DomainError
from inventory import broker_logins
from inventory.device_rows import DEVICE_ID_PATTERN, DEVICE_ID_RE
from inventory.device_topics import allowed, prefix
from inventory.dynsec import Endpoint
from inventory.models import Device, DeviceState

logger = logging.getLogger(__name__)

PUSH_NOT_ENABLED = "push_not_enabled"


class BrokerDown(APIException):
    status_code = 503
    default_detail = "The MQTT broker is unavailable; retry shortly, and poll the HTTP inbox meanwhile."
    default_code = "broker_unavailable"


CREDENTIALS = inline_serializer(
    "MqttCredentials",
    {
        "url": serializers.CharField(help_text="The broker as devices reach it: mqtt://host:port, mqtts://."),
        "client_id": serializers.CharField(help_text="The MQTT client id to connect with."),
        "username": serializers.CharField(help_text="`{tenant}/{device}`."),
        "password": serializers.CharField(
            help_text="Derived from the device's token: the same on every call until the token is rotated."
        ),
        "topics": inline_serializer(
            "MqttTopics",
            {
                "prefix": serializers.CharField(help_text="dos/v1/{tenant}/{device}"),
                "subscribe": serializers.ListField(
                    child=serializers.CharField(), help_text="The filters the device may subscribe to."
                ),
                "publish": serializers.ListField(
                    child=serializers.CharField(), help_text="The topics (filters) the device may publish to."
                ),
            },
        ),
    },
)


class MqttCredentialsView(TenantAPIView):
    allow_device_tokens = True
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="v2_mqtt_credentials",
        summary="Get the device's login on the MQTT broker",
        description=(
            "With the device's own token. Makes the device's broker login on its first call; the "
            "password is derived from the device's token, so it is the same on every call until "
            "the token is rotated (then the old one stops working within seconds). Deleting or "
            "deactivating the device ends the login. 404 `push_not_enabled` when the server has "
            "no MQTT channel: the device polls `/v2/command-inbox/` instead."
        ),
        tags=["devices"],
        parameters=[
            OpenApiParameter(
                "device_id",
                {"type": "string", "minLength": 1, "maxLength": 128, "pattern": DEVICE_ID_PATTERN},
                required=True,
                description="The calling device's id.",
            )
        ],
        responses={
            200: CREDENTIALS,
            400: OpenApiResponse(description="device_id missing, malformed, or not the token's device."),
            403: OpenApiResponse(description="Not a device token, or the device is inactive."),
            404: OpenApiResponse(description="`push_not_enabled`: no MQTT channel (MQTT_URL is unset)."),
            503: OpenApiResponse(description="`broker_unavailable`: the broker cannot be reached, retry."),
        },
    )
    def get(self, request: Request) -> Response:
        principal = self.principal
        if not principal.is_device:
            raise PermissionDenied("Only a device's own token gets its broker login.")
        if not broker_logins.enabled():
            raise NotFound(
                "Push is not enabled on this server (no MQTT broker, MQTT_URL is unset): poll "
                "/v2/command-inbox/ over HTTP.",
                code=PUSH_NOT_ENABLED,
            )
        device_id = request.query_params.get("device_id", "")
        if not device_id:
            raise ValidationError({"device_id": ["This query parameter is required."]})
        if not DEVICE_ID_RE.match(device_id):
            raise ValidationError({"device_id": ["is not a valid device id."]})
        not_visible = DomainError(
            {"device_id": [f"no device {device_id[:128]!r} visible to this token."]}, code="not_found_device"
        )
        if device_id != principal.device_id:
            raise not_visible
        device = (
            Device.objects.filter(pk=principal.device_pk or 0, tenant_id=principal.tenant_id)
            .select_related("tenant")
            .first()
        )
        if device is None:
            raise not_visible
        if device.state != DeviceState.ACTIVE:
            raise PermissionDenied("The device is inactive: it has no broker login.", code="device_inactive")
        try:
            login = broker_logins.known(device, device.tenant.slug) or broker_logins.issue(
                device, device.tenant.slug
            )
        except broker_logins.BrokerUnavailable as error:
            logger.warning("broker login of %s not made: %s", device.device_id, error)
            down = BrokerDown()
            down.wait = RETRY_AFTER_SECONDS  # type: ignore[attr-defined]  # the handler's Retry-After
            raise down from None
        except Device.DoesNotExist:
            raise not_visible from None
        url = Endpoint.parse(settings.MQTT_DEVICE_URL or str(settings.MQTT_URL)).public_url  # no login in it
        topics = allowed(login.tenant_slug, login.device_id)
        return Response(
            {
                "url": url,
                "client_id": login.username,
                "username": login.username,
                "password": login.password,
                "topics": {
                    "prefix": prefix(login.tenant_slug, login.device_id),
                    "subscribe": list(topics.subscribe),
                    "publish": list(topics.publish),
                },
            }
        )
