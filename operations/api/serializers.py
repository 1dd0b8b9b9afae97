"""Operations as seeds 000 and 003 show them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.limits import JSON_FIELD_HELP, max_json_size, max_text_length
from config.api.validators import storable_json
from config.timestamps import TimestampError, parse_aware
from inventory.models.devices import available_timezones
from operations import rollouts, waves
from operations.choices import (
    DEFAULT_RERUN_OUTCOMES,
    REQUESTABLE_STATES,
    RERUN_OUTCOMES,
    RESUMED,
    OperationType,
    ScheduleType,
    TargetSelection,
    TimeType,
)
from operations.models import Operation, OperationActivity
from operations.windows import DAYS, Window


def _aware(value: Any, field: str) -> dt.datetime:
    try:
        return parse_aware(value)
    except TimestampError as error:
        raise serializers.ValidationError({field: [str(error)]}) from None


class ScheduleArgsSerializer(serializers.Serializer):
    """``schedule_args``. ``window_start_time`` and ``window_end_time`` are filled in by the
    server from the datetimes and never taken from the request."""

    start_datetime = serializers.CharField(required=False)
    end_datetime = serializers.CharField(required=False)
    time_type = serializers.CharField(required=False, default=TimeType.CONSOLE)
    days = serializers.ListField(child=serializers.CharField(), required=False, max_length=7)
    timezone = serializers.CharField(required=False, help_text="The console's zone (time_type console).")
    window_start_time = serializers.CharField(read_only=True)
    window_end_time = serializers.CharField(read_only=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        schedule_type = self.context.get("schedule_type", ScheduleType.IMMEDIATE)
        time_type = str(attrs.get("time_type") or TimeType.CONSOLE).lower()
        if time_type not in TimeType.values:
            raise serializers.ValidationError({"schedule_args.time_type": ["must be 'console' or 'device'"]})
        clean: dict[str, Any] = {"time_type": time_type}
        if "timezone" in attrs:
            if attrs["timezone"] not in available_timezones():
                raise serializers.ValidationError(
                    {"schedule_args.timezone": ["is not an IANA time zone name"]}
                )
            clean["timezone"] = attrs["timezone"]
        if "days" in attrs:
            names = {day.lower(): day for day in DAYS}
            unknown = [d for d in attrs["days"] if d.lower() not in names]
            if unknown:
                raise serializers.ValidationError(
                    {"schedule_args.days": [f"unknown day(s) {', '.join(unknown)}; use Monday ... Sunday"]}
                )
            clean["days"] = sorted({names[d.lower()] for d in attrs["days"]}, key=DAYS.index)
        if schedule_type != ScheduleType.WINDOW:
            if self.context.get("target_selection") == TargetSelection.CONTINUOUS and attrs.get(
                "end_datetime"
            ):
                # A continuous operation's end: no device joins after it (contract section 12).
                end = _aware(attrs["end_datetime"], "schedule_args.end_datetime")
                if end <= dt.datetime.now(dt.UTC):
                    raise serializers.ValidationError({"schedule_args.end_datetime": ["is in the past"]})
                clean["end_datetime"] = end.isoformat()
            return clean
        for name in ("start_datetime", "end_datetime"):
            if not attrs.get(name):
                raise serializers.ValidationError(
                    {f"schedule_args.{name}": ["is required for a WINDOW operation"]}
                )
        start = _aware(attrs["start_datetime"], "schedule_args.start_datetime")
        end = _aware(attrs["end_datetime"], "schedule_args.end_datetime")
        if end <= start:
            raise serializers.ValidationError(
                {"schedule_args.end_datetime": ["must be after start_datetime"]}
            )
        if end <= dt.datetime.now(dt.UTC) and time_type == TimeType.CONSOLE:
            raise serializers.ValidationError({"schedule_args.end_datetime": ["is in the past"]})
        clean["start_datetime"] = start.isoformat()
        clean["end_datetime"] = end.isoformat()
        window = Window.from_args(clean)
        opens, closes = window.daily_times(zoneinfo.ZoneInfo(clean.get("timezone", "UTC")))
        clean["window_start_time"] = opens.isoformat(timespec="seconds")
        clean["window_end_time"] = closes.isoformat(timespec="seconds")
        return clean


# --- rollout: its schema, taken from ``operations.rollouts`` ----------------------------------
#
# These serializers validate nothing: ``rollout`` is read by ``operations.rollouts.parse`` (the
# one definition of a valid rollout, also the console's) and each refusal names its field
# (``rollout.abort[0].threshold_percent``). They publish its shape, every range and key taken
# from the parser's constants; tests/test_rollouts.py feeds the same edge values to both.


class _AboveLowField(serializers.FloatField):
    """A number greater than ``above`` (a percent greater than 0), which DRF's inclusive
    ``min_value`` cannot say (the schema generator would drop an ``exclusiveMinimum`` next to its
    validator): ``_AboveLowSchema`` writes ``minimum`` and ``exclusiveMinimum`` instead."""

    def __init__(self, *, above: float, **kwargs: Any) -> None:
        self.above = above
        super().__init__(**kwargs)


class _AboveLowSchema(OpenApiSerializerFieldExtension):
    target_class = _AboveLowField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> Any:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "minimum": self.target.above, "exclusiveMinimum": True}


def _bounded(bounds: rollouts.Bounds, **kwargs: Any) -> serializers.Field:
    """The field of a rollout's number, with the range the parser holds it to."""
    if bounds.integer:
        return serializers.IntegerField(min_value=int(bounds.low), max_value=int(bounds.high), **kwargs)
    if bounds.low_exclusive:
        return _AboveLowField(above=bounds.low, max_value=bounds.high, **kwargs)
    return serializers.FloatField(min_value=bounds.low, max_value=bounds.high, **kwargs)


class _ClosedSerializer(serializers.Serializer):
    """An object the parser refuses any other key in: its schema says
    ``additionalProperties: false`` (``_ClosedSchema``)."""


class _ClosedSchema(OpenApiSerializerExtension):
    target_class = _ClosedSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class AbortRuleSerializer(_ClosedSerializer):
    """Abort the operation once ``min_executed`` commands are finished and those that failed this
    way reach ``threshold_percent`` of them."""

    failure_type = serializers.ChoiceField(choices=rollouts.FAILURE_TYPES)
    threshold_percent = _bounded(rollouts.THRESHOLD_PERCENT, help_text="0 < p <= 100")
    min_executed = _bounded(rollouts.MIN_EXECUTED, required=False, default=1)


class RetryRuleSerializer(_ClosedSerializer):
    """Deliver a command that failed this way again, up to ``max_attempts`` deliveries in all."""

    failure_type = serializers.ChoiceField(choices=rollouts.FAILURE_TYPES)
    max_attempts = _bounded(rollouts.ATTEMPTS)


class RolloutSerializer(_ClosedSerializer):
    """The shape of ``rollout`` (contract section 9), for the schema. ``operations.rollouts.parse``
    validates it and names the field it refuses (``rollout.abort[0].threshold_percent``)."""

    waves = serializers.ListField(
        child=_bounded(rollouts.WAVE_PERCENT),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=rollouts.MAX_WAVES,
        help_text="Strictly increasing cumulative percentages of the devices, the last one 100.",
    )
    wave_success_percent = _bounded(
        rollouts.WAVE_SUCCESS_PERCENT,
        required=False,
        allow_null=True,
        default=rollouts.DEFAULT_WAVE_SUCCESS_PERCENT,
        help_text="The next wave opens when at least this percent of the closed wave succeeded; "
        "otherwise the operation is PAUSED.",
    )
    max_per_minute = _bounded(
        rollouts.PER_MINUTE,
        required=False,
        allow_null=True,
        help_text="At most this many commands handed out in any 60 s, across every server.",
    )
    abort = serializers.ListField(
        child=AbortRuleSerializer(), required=False, allow_null=True, max_length=rollouts.MAX_RULES
    )
    retries = serializers.ListField(
        child=RetryRuleSerializer(), required=False, allow_null=True, max_length=rollouts.MAX_RULES
    )
    in_progress_timeout_minutes = _bounded(
        rollouts.TIMEOUT_MINUTES,
        required=False,
        allow_null=True,
        help_text="A command Acknowledged or In Progress for longer becomes Command TimeOut.",
    )


class WaveStatusSerializer(serializers.Serializer):
    wave = serializers.IntegerField()
    percent = serializers.FloatField()
    devices = serializers.IntegerField()
    success = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    pending = serializers.IntegerField()
    state = serializers.ChoiceField(choices=["DONE", "OPEN", "WAITING"])


class RolloutStatusSerializer(serializers.Serializer):
    current_wave = serializers.IntegerField()
    waves = WaveStatusSerializer(many=True)
    handed_out_last_minute = serializers.IntegerField(
        allow_null=True, help_text="Commands handed out in the last 60 s; null without max_per_minute."
    )


ROLLOUT_EXAMPLE = {
    "waves": [1, 10, 50, 100],
    "wave_success_percent": 90,
    "max_per_minute": 500,
    "abort": [{"failure_type": "FAILED", "threshold_percent": 10, "min_executed": 50}],
    "retries": [{"failure_type": "TIMED_OUT", "max_attempts": 3}],
    "in_progress_timeout_minutes": 30,
}


@extend_schema_field(RolloutSerializer(allow_null=True))
class RolloutField(serializers.JSONField):
    """``rollout``: any JSON here; ``operations.rollouts.parse`` validates it in the service,
    so the API and the console refuse the same rollouts with the same messages."""


class OperationCreateSerializer(serializers.Serializer):
    operation_type = serializers.ChoiceField(choices=OperationType.choices)
    schedule_type = serializers.ChoiceField(choices=ScheduleType.choices, default=ScheduleType.IMMEDIATE)
    schedule_args = serializers.DictField(
        required=False,
        default=dict,
        validators=[storable_json],
        help_text=(
            "WINDOW: start_datetime, end_datetime, days, time_type, timezone. CONTINUOUS: an optional "
            "end_datetime after which no device joins."
        ),
    )
    target_selection = serializers.ChoiceField(
        choices=TargetSelection.choices,
        default=TargetSelection.SNAPSHOT,
        help_text=(
            "SNAPSHOT: the devices that match when the fan-out runs. CONTINUOUS: also every device that "
            "comes to match later, until end_datetime or a PUT state COMPLETED closes it (no waves)."
        ),
    )
    operation_device_query = serializers.DictField(
        help_text="devices, groups, device_type, filters and all; ANDed. See the README.",
        validators=[storable_json],
    )
    arguments = serializers.DictField(
        required=False, default=dict, validators=[storable_json, max_json_size()], help_text=JSON_FIELD_HELP
    )
    rollout = RolloutField(
        required=False,
        allow_null=True,
        default=None,
        validators=[storable_json],
        help_text="Optional: waves, rate, abort rules, retries, in-progress timeout (docs/rollouts.md).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        args = ScheduleArgsSerializer(
            data=attrs.get("schedule_args") or {},
            context={"schedule_type": attrs["schedule_type"], "target_selection": attrs["target_selection"]},
        )
        args.is_valid(raise_exception=True)
        attrs["schedule_args"] = args.validated_data
        return attrs


class OperationStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=sorted({"FAILED", "CANCELLED", "TIMEOUT", "SCHEDULED", "PAUSED", RESUMED, "COMPLETED"}),
        help_text=(
            "PAUSED holds everything not yet handed out; RESUMED goes back to the state it left; COMPLETED "
            "closes a CONTINUOUS operation (no device joins from then on; it finishes when its commands do)."
        ),
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", validators=[max_text_length()]
    )

    def validate_state(self, value: str) -> Any:
        return RESUMED if value == RESUMED else REQUESTABLE_STATES[value]


class ActivitySerializer(serializers.ModelSerializer):
    state_code = serializers.IntegerField(source="state")

    class Meta:
        model = OperationActivity
        fields = ["operation_state", "state_code", "reason", "counts", "actor", "created_at"]


class OperationSerializer(serializers.ModelSerializer):
    operation = serializers.CharField(source="operation_type")
    state = serializers.CharField(source="state_name")
    state_code = serializers.IntegerField(source="state")
    operation_device_query = serializers.JSONField(source="device_query")
    operation_activity = serializers.SerializerMethodField()
    operation_stats = serializers.SerializerMethodField()
    commands_stop = serializers.ChoiceField(
        choices=["in_progress", "done"],
        read_only=True,
        allow_null=True,
        help_text=(
            "After a stop (CANCELLED, TIMEOUT, FAILED by PUT): in_progress while a worker still moves "
            "the unfinished commands (none of them is handed out meanwhile), done once it has; "
            "null for an operation never stopped."
        ),
    )
    rollout = RolloutField(read_only=True)
    rollout_status = serializers.SerializerMethodField()
    continuous_closed_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="CONTINUOUS: when it was closed (PUT COMPLETED or end_datetime); null while devices join.",
    )
    rerun_of: serializers.PrimaryKeyRelatedField[Operation] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The operation this one re-runs (POST .../rerun/)."
    )

    class Meta:
        model = Operation
        fields = [
            "id",
            "operation",
            "operation_type",
            "state",
            "state_code",
            "schedule_type",
            "schedule_args",
            "operation_device_query",
            "arguments",
            "reason",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
            "operation_activity",
            "operation_stats",
            "commands_stop",
            "rollout",
            "rollout_status",
            "target_selection",
            "continuous_closed_at",
            "rerun_of",
        ]

    @extend_schema_field(ActivitySerializer(many=True))
    def get_operation_activity(self, operation: Operation) -> list[dict[str, Any]]:
        if not self.context.get("with_activity", True):
            return []
        return list(ActivitySerializer(operation.activity.all(), many=True).data)

    @extend_schema_field(
        {
            "type": "object",
            "properties": {
                "device_operation_statuses_count": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                }
            },
        }
    )
    def get_operation_stats(self, operation: Operation) -> dict[str, Any]:
        return {"device_operation_statuses_count": operation.counts()}

    @extend_schema_field(RolloutStatusSerializer(allow_null=True))
    def get_rollout_status(self, operation: Operation) -> dict[str, Any] | None:
        return waves.status(operation)


class RerunSerializer(serializers.Serializer):
    """``POST /v0/operations/{id}/rerun/``: which outcomes to re-run."""

    only = serializers.ListField(
        child=serializers.ChoiceField(choices=list(RERUN_OUTCOMES)),
        required=False,
        allow_empty=False,
        max_length=len(RERUN_OUTCOMES),
        default=list(DEFAULT_RERUN_OUTCOMES),
        help_text="The devices whose commands ended so (default FAILED and TIMED_OUT).",
    )
