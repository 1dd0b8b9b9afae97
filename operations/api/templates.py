"""``/v0/operation-templates/`` (contract section 12): operators and admins write, viewers read."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers

from config.api.fields import ChoiceField
from config.api.limits import JSON_FIELD_HELP, max_json_size, max_text_length
from config.api.validators import storable_json
from config.api.views import TenantScopedViewSet
from inventory.api.serializers import StrictCharField
from operations import rollouts, templates
from operations.api.serializers import RolloutField
from operations.choices import OperationType, ScheduleType
from operations.device_query import DeviceQuery
from operations.models import OperationTemplate


class ParameterSerializer(serializers.Serializer):
    """One parameter, for the schema; ``operations.templates.parse_parameters`` validates it."""

    type = ChoiceField(choices=templates.TYPES)
    default = serializers.JSONField(required=False, allow_null=True, help_text="Of the parameter's type.")
    required = serializers.BooleanField(required=False, default=False)  # type: ignore[assignment]
    description = serializers.CharField(required=False, allow_blank=True)


@extend_schema_field(serializers.DictField(child=ParameterSerializer()))
class ParametersField(serializers.JSONField):
    """``parameters``: any JSON here; ``operations.templates.parse_parameters`` validates it and
    names the parameter and key at fault (``parameters.version.type``)."""


TEMPLATE_EXAMPLE = {
    "name": "install-pos-app",
    "description": "Install the point-of-sale app at a given version",
    "operation_type": "INSTALL_APP",
    "arguments": {"package": "com.example.pos", "version": "{{version}}", "note": "v{{version}} by ops"},
    "parameters": {
        "version": {"type": "string", "required": True, "description": "The app version"},
        "silent": {"type": "boolean", "default": True},
    },
    "operation_device_query": {"groups": ["stores"]},
    "rollout": {"max_per_minute": 500},
}


class OperationTemplateSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, validators=[max_text_length()])
    operation_type = ChoiceField(choices=OperationType.choices)
    arguments = serializers.DictField(
        required=False, default=dict, validators=[storable_json, max_json_size()], help_text=JSON_FIELD_HELP
    )
    parameters = ParametersField(
        required=False,
        default=dict,
        validators=[storable_json, max_json_size()],
        help_text="Typed parameters, filled into {{name}} placeholders of arguments.",
    )
    rollout = RolloutField(required=False, allow_null=True, default=None, validators=[storable_json])
    schedule_type = ChoiceField(choices=ScheduleType.choices, required=False, allow_null=True)
    schedule_args = serializers.DictField(required=False, allow_null=True, validators=[storable_json])
    operation_device_query = serializers.DictField(
        source="device_query", required=False, allow_null=True, validators=[storable_json]
    )

    class Meta:
        model = OperationTemplate
        fields = [
            "id",
            "name",
            "description",
            "operation_type",
            "arguments",
            "parameters",
            "rollout",
            "schedule_type",
            "schedule_args",
            "operation_device_query",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
        ]
        read_only_fields = ["id", "created_at", "created_by", "updated_at", "updated_by"]

    def validate_name(self, value: str) -> str:
        clash = OperationTemplate.objects.filter(tenant_id=self.context["tenant_id"], name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"a template named {value!r} already exists")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The parameters, the placeholders, the rollout and the query, checked as an operation
        made from the template will check them, so a template that cannot make one is refused."""
        current = self.instance
        parameters = attrs.get("parameters", current.parameters if current else {})
        arguments = attrs.get("arguments", current.arguments if current else {})
        templates.check_template(arguments, templates.parse_parameters(parameters))
        if attrs.get("rollout") is not None:
            attrs["rollout"] = rollouts.parse(attrs["rollout"]).as_json()
        if attrs.get("device_query") is not None:
            query = DeviceQuery.parse(attrs["device_query"])
            query.check_references(self.context["tenant_id"])
            attrs["device_query"] = query.as_json()
        return attrs


@extend_schema_view(
    create=extend_schema(
        examples=[OpenApiExample("A template with a required and a defaulted parameter", TEMPLATE_EXAMPLE)]
    )
)
class OperationTemplateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """Templates of the caller's tenant; an operation made from one copies it (changing the
    template later never changes that operation)."""

    queryset = OperationTemplate.objects.all()
    serializer_class = OperationTemplateSerializer

    def get_queryset(self) -> QuerySet[OperationTemplate]:
        return super().get_queryset().order_by("name")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "tenant_id": self.tenant_id}

    def perform_create(self, serializer: Any) -> None:
        label = self.principal.label
        serializer.save(tenant_id=self.tenant_id, created_by=label, updated_by=label)

    def perform_update(self, serializer: Any) -> None:
        serializer.save(updated_by=self.principal.label)
