"""Command statuses as seed 002 shows them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from commands.choices import BY_LABEL, REQUESTABLE_STATES, CommandState
from commands.models import CommandStatus
from commands.payload import FIELDS, payload_of
from config.api.fields import ChoiceField
from config.api.limits import JSON_FIELD_HELP, max_json_size, max_text_length
from config.api.validators import storable_json


class CommandStatusSerializer(serializers.ModelSerializer):
    """Output only; the shape comes from :func:`command_payload`, shared with the inbox."""

    id = serializers.CharField()
    request = serializers.CharField()
    device = serializers.CharField()
    state = ChoiceField(choices=[s.label for s in CommandState])
    priority = serializers.CharField()
    arguments = serializers.JSONField()
    details = serializers.JSONField(allow_null=True)
    scheduled_for = serializers.DateTimeField(
        allow_null=True,
        read_only=True,
        help_text="When the window of a Command Scheduled command opens; null in every other state.",
    )
    wave = serializers.IntegerField(
        read_only=True, help_text="The rollout wave that holds this command (1-based; 1 without waves)."
    )
    attempt = serializers.IntegerField(
        read_only=True,
        help_text="Which delivery this is (1-based); a rollout's retries queue a failed command again.",
    )

    class Meta:
        model = CommandStatus
        fields = [field.key for field in FIELDS]

    def to_representation(self, instance: CommandStatus) -> dict[str, Any]:
        return payload_of(instance)


class CommandStatusUpdateSerializer(serializers.Serializer):
    state = ChoiceField(choices=sorted(s.label for s in REQUESTABLE_STATES))
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", validators=[max_text_length()]
    )
    details = serializers.JSONField(
        required=False, validators=[storable_json, max_json_size()], help_text=JSON_FIELD_HELP
    )
    expected_version = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)
    attempt = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=32767,
        help_text=(
            "The attempt this report belongs to (the command's `attempt` when it was handed out). "
            "A report of an earlier attempt changes nothing (200, the command as it is): a late or "
            "repeated failure can never use up a retry the device has not run."
        ),
    )

    def report_arguments(self) -> dict[str, Any]:
        """The validated body as ``commands.services.report`` takes it, for both views of the PUT."""
        valid = self.validated_data
        return {
            "target": valid["state"],
            "reason": valid["reason"],
            "details": valid.get("details"),
            "expected_version": valid.get("expected_version"),
            "attempt": valid.get("attempt"),
        }

    def validate_state(self, value: str) -> CommandState:
        return BY_LABEL[value]
