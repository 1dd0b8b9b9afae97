"""Device and group representations for ``/v0/devices/`` and ``/v0/groups/``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.fields import ChoiceField
from config.api.limits import max_text_length
from inventory.device_rows import DEVICE_ID_PATTERN, clean_device_row
from inventory.models import Device, DeviceState, Group
from inventory.models.devices import available_timezones


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 128, "pattern": DEVICE_ID_PATTERN})
class DeviceIdField(serializers.CharField):
    """A device's ``id``, described with the pattern :func:`clean_device_row` holds it to, so
    the schema does not promise ids the server refuses."""


#: The request schemas' enum of zones, one component however many fields use it.
TIMEZONE_COMPONENT = "TimezoneEnum"
TIMEZONE_HELP = (
    "An IANA time zone name, e.g. Europe/Berlin: one of the server's zone database "
    "(zoneinfo.available_timezones()), less tzdata's pseudo-zones Factory, localtime and "
    "posixrules and the posix/ and right/ copies."
)


class TimezoneField(serializers.CharField):
    """A device's ``timezone``. The schema of a request lists the zones :func:`clean_device_row`
    takes (``TimezoneEnum``, about 600 names: 15 kB, once, of a 240 kB document), so the
    document and the server agree on what is a zone: a pattern would promise names such as
    ``Mars/Olympus`` that are refused. An answer's schema stays a string: a stored zone that a
    later tzdata dropped must not make an answer break its own schema."""


class TimezoneFieldSchema(OpenApiSerializerFieldExtension):
    target_class = TimezoneField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        if direction != "request":
            return {"type": "string", "maxLength": 64, "description": TIMEZONE_HELP}
        component = ResolvedComponent(
            name=TIMEZONE_COMPONENT,
            type=ResolvedComponent.SCHEMA,
            object=TIMEZONE_COMPONENT,
            schema={"type": "string", "enum": sorted(available_timezones()), "description": TIMEZONE_HELP},
        )
        auto_schema.registry.register_on_missing(component)
        return dict(component.ref)


class DeviceSerializer(serializers.ModelSerializer):
    """Input goes through :func:`clean_device_row`, the one validator of device fields."""

    id = DeviceIdField(source="device_id", required=False, max_length=128)
    state = ChoiceField(choices=DeviceState.choices, required=False)
    timezone = TimezoneField(required=False, max_length=64)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    groups = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = [
            "id",
            "name",
            "serial",
            "model",
            "os",
            "os_version",
            "state",
            "timezone",
            "tags",
            "groups",
            "last_seen",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_seen", "created_at", "updated_at"]

    def get_groups(self, device: Device) -> list[str]:
        return [str(group.pk) for group in device.groups.all()]

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        clean, errors = clean_device_row(data, partial=self.partial)
        if errors:
            raise serializers.ValidationError(errors)
        return clean


class DeviceWithTokenSerializer(DeviceSerializer):
    """The answer to a create: the only time the device token is shown."""

    token = serializers.SerializerMethodField()

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "token"]

    def get_token(self, device: Device) -> str:
        return str(self.context["token"])


class BulkDevicesResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    skipped = serializers.ListField(child=serializers.CharField())
    devices = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class GroupSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, validators=[max_text_length()])
    device_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Group
        fields = ["id", "name", "description", "device_count", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    # A name another group has is a 409 of inventory.services.save_group, not a 400 here.
