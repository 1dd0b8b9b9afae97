"""Operations as seeds 000 and 003 show them."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from config import timestamps
from config.api.fields import ChoiceField
from config.api.limits import JSON_FIELD_HELP, max_json_size, max_text_length
from config.api.validators import storable_json
from config.timestamps import TimestampError, parse_aware
from inventory.models.devices import available_timezones
from operations import recurring, rollouts, waves
from operations.approvals import DEFAULT_EXPIRES_AFTER_HOURS, MAX_EXPIRES_AFTER_HOURS
from operations.choices import (
    DEFAULT_RERUN_OUTCOMES,
    REQUESTABLE_STATES,
    RERUN_OUTCOMES,
    RESUMED,
    ApprovalState,
    OperationState,
    OperationType,
    ScheduleType,
    TargetSelection,
    TimeType,
)
from operations.events import approval_data
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
    time_expression = serializers.CharField(
        required=False,
        max_length=200,
        help_text="RECURRING: a Quartz cron expression (sec min hour day-of-month month day-of-week "
        "[year]), read on the console's clock (timezone) or each device's (time_type device).",
    )
    duration_minutes = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=recurring.MAX_DURATION_MINUTES,
        help_text=f"RECURRING: each run's window, in minutes (default {recurring.DEFAULT_DURATION_MINUTES}).",
    )
    max_runs = serializers.IntegerField(
        required=False, min_value=1, help_text="RECURRING: the series ends after this many runs."
    )

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
        if schedule_type == ScheduleType.RECURRING:
            return _recurring_args(attrs, clean)
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


def _recurring_args(attrs: dict[str, Any], clean: dict[str, Any]) -> dict[str, Any]:
    """A RECURRING series' ``schedule_args``: the expression (checked by the parser of
    maintenance schedules, ``config.quartz``), the run window, optional bounds and ``max_runs``."""
    if not attrs.get("time_expression"):
        raise serializers.ValidationError(
            {"schedule_args.time_expression": ["is required for a RECURRING operation"]}
        )
    expression = str(attrs["time_expression"]).strip()
    recurring.parse_expression(expression)
    clean.pop("days", None)
    clean["time_expression"] = expression
    clean["duration_minutes"] = attrs.get("duration_minutes") or recurring.DEFAULT_DURATION_MINUTES
    if attrs.get("max_runs") is not None:
        clean["max_runs"] = attrs["max_runs"]
    bounds = {}
    for name in ("start_datetime", "end_datetime"):
        if attrs.get(name):
            bounds[name] = _aware(attrs[name], f"schedule_args.{name}")
            clean[name] = bounds[name].isoformat()
    if len(bounds) == 2 and bounds["end_datetime"] <= bounds["start_datetime"]:
        raise serializers.ValidationError({"schedule_args.end_datetime": ["must be after start_datetime"]})
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

    failure_type = ChoiceField(choices=rollouts.FAILURE_TYPES)
    threshold_percent = _bounded(rollouts.THRESHOLD_PERCENT, help_text="0 < p <= 100")
    min_executed = _bounded(rollouts.MIN_EXECUTED, required=False, default=1)


class RetryRuleSerializer(_ClosedSerializer):
    """Deliver a command that failed this way again, up to ``max_attempts`` deliveries in all."""

    failure_type = ChoiceField(choices=rollouts.FAILURE_TYPES)
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
        child=AbortRuleSerializer(),
        required=False,
        allow_null=True,
        max_length=rollouts.MAX_RULES,
        help_text="Each rule aborts on its own: the first in this order that the counters meet "
        "aborts the operation, and its reason names it. Several rules of one type are allowed (a "
        "high rate early, a low one later), and ALL beside FAILED or TIMED_OUT.",
    )
    retries = serializers.ListField(
        child=RetryRuleSerializer(),
        required=False,
        allow_null=True,
        max_length=rollouts.MAX_RETRY_RULES,
        help_text="At most one rule per failure_type (a second one is refused). A FAILED or "
        "TIMED_OUT rule wins over ALL for its failures; ALL covers the type no rule names.",
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
    state = ChoiceField(choices=["DONE", "OPEN", "WAITING"])


class RolloutStatusSerializer(serializers.Serializer):
    current_wave = serializers.IntegerField()
    waves = WaveStatusSerializer(many=True)
    handed_out_last_minute = serializers.IntegerField(
        allow_null=True,
        help_text="Commands handed out in the last 60 s; null without max_per_minute, or while the "
        "cache cannot be read.",
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
    operation_type = ChoiceField(choices=OperationType.choices)
    schedule_type = ChoiceField(choices=ScheduleType.choices, default=ScheduleType.IMMEDIATE)
    schedule_args = serializers.DictField(
        required=False,
        default=dict,
        validators=[storable_json],
        help_text=(
            "WINDOW: start_datetime, end_datetime, days, time_type, timezone. CONTINUOUS: an optional "
            "end_datetime after which no device joins."
        ),
    )
    target_selection = ChoiceField(
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

    template = serializers.CharField(
        required=False,
        help_text="A template's id or name: the operation is made from it, the body's fields override its.",
    )
    template_parameters = serializers.DictField(
        required=False, help_text="Values of the template's parameters (by name), of their types."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        args = ScheduleArgsSerializer(
            data=attrs.get("schedule_args") or {},
            context={"schedule_type": attrs["schedule_type"], "target_selection": attrs["target_selection"]},
        )
        if not args.is_valid():
            # A field's own refusal (a type, a range) named as the rest are: schedule_args.<name>.
            raise serializers.ValidationError(
                {
                    name if name.startswith("schedule_args.") else f"schedule_args.{name}": reasons
                    for name, reasons in args.errors.items()
                }
            )
        attrs["schedule_args"] = args.validated_data
        return attrs


class OperationStateSerializer(serializers.Serializer):
    state = ChoiceField(
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


#: ``approval`` of an operation (contract section 13), for the schema; the data is
#: ``operations.events.approval_data``, which the events carry too. Built by ``inline_serializer``
#: because ``required`` is a name a serializer class cannot declare (every field has one).
APPROVAL_SCHEMA = inline_serializer(
    "Approval",
    {
        "required": serializers.BooleanField(help_text="Whether the tenant's approval policy held it."),
        "state": ChoiceField(
            choices=[*ApprovalState.values, "WITHDRAWN"],
            allow_null=True,
            help_text="WAITING, APPROVED, DENIED, EXPIRED; WITHDRAWN when cancelled while it waited; "
            "null when no approval was required.",
        ),
        "requested_by": serializers.CharField(allow_null=True),
        "decided_by": serializers.CharField(allow_null=True, help_text="Who decided; 'system' on expiry."),
        "decided_at": serializers.DateTimeField(allow_null=True),
        "remark": serializers.CharField(allow_blank=True),
        "expires_at": serializers.DateTimeField(
            allow_null=True, help_text="Undecided by then: APPROVAL_DENIED, 'approval expired'."
        ),
    },
)


class DecisionSerializer(serializers.Serializer):
    """The body of ``approve`` (remark optional) and ``deny`` (remark required)."""

    remark = serializers.CharField(
        required=False, allow_blank=True, default="", validators=[max_text_length()]
    )


class DenySerializer(DecisionSerializer):
    remark = serializers.CharField(validators=[max_text_length()], help_text="Why the operation is denied.")


class ApprovalPolicySerializer(serializers.Serializer):
    """``/v0/approval-policy/``: which new operations wait for a second admin."""

    operation_types = serializers.ListField(
        child=ChoiceField(choices=OperationType.choices),
        max_length=len(OperationType.values),
        help_text="Operations of these types need approval; [] for none.",
    )
    min_devices = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        max_value=2**31 - 1,
        help_text="Also any operation whose query matches at least this many devices when created; "
        "null: no threshold.",
    )
    expires_after_hours = serializers.IntegerField(
        required=False,
        default=DEFAULT_EXPIRES_AFTER_HOURS,
        min_value=1,
        max_value=MAX_EXPIRES_AFTER_HOURS,
        help_text="Undecided for this long, an operation ends in APPROVAL_DENIED with the reason "
        "'approval expired'.",
    )


class ActivitySerializer(serializers.ModelSerializer):
    state_code = serializers.IntegerField(source="state")

    class Meta:
        model = OperationActivity
        fields = ["operation_state", "state_code", "reason", "counts", "actor", "created_at"]


class LastRunSerializer(serializers.Serializer):
    id = serializers.CharField()
    scheduled_for = serializers.DateTimeField()
    state = serializers.CharField()
    state_code = serializers.IntegerField()


class TemplateRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class OperationSerializer(serializers.ModelSerializer):
    # The model's choice fields it makes (operation_type, ...) refuse as every API choice does.
    serializer_choice_field = ChoiceField
    operation = serializers.CharField(source="operation_type")
    state = serializers.CharField(source="state_name")
    state_code = serializers.IntegerField(source="state")
    operation_device_query = serializers.JSONField(source="device_query")
    operation_activity = serializers.SerializerMethodField()
    operation_stats = serializers.SerializerMethodField()
    commands_stop = ChoiceField(
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
    approval = serializers.SerializerMethodField()
    # The metaclass takes declared fields off the class: this ``parent`` is no serializer's parent.
    parent = serializers.CharField(  # type: ignore[assignment]
        source="parent_id", read_only=True, allow_null=True, help_text="A run's RECURRING series; else null."
    )
    scheduled_for = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="A run's firing (for a device-time series, the wall clock written as UTC); else null.",
    )
    next_run_at = serializers.SerializerMethodField()
    runs_count = serializers.IntegerField(read_only=True, help_text="RECURRING: the runs made so far.")
    last_run = serializers.SerializerMethodField()
    upcoming_runs = serializers.SerializerMethodField()
    template = serializers.SerializerMethodField()
    template_parameters = serializers.JSONField(
        read_only=True, allow_null=True, help_text="The template's parameter values used, defaults filled in."
    )
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
            "approval",
            "parent",
            "scheduled_for",
            "next_run_at",
            "runs_count",
            "last_run",
            "upcoming_runs",
            "template",
            "template_parameters",
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

    @extend_schema_field(APPROVAL_SCHEMA)
    def get_approval(self, operation: Operation) -> dict[str, Any]:
        return approval_data(operation)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_run_at(self, operation: Operation) -> str | None:
        """RECURRING: the next firing while the series runs (null when paused or ended)."""
        if operation.state != OperationState.SCHEDULED or operation.next_run_at is None:
            return None
        return timestamps.format(operation.next_run_at)

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_upcoming_runs(self, operation: Operation) -> list[str]:
        """RECURRING: the next three firings while the series runs."""
        if operation.state != OperationState.SCHEDULED or operation.next_run_at is None:
            return []
        series = recurring.Series.from_args(operation.schedule_args)
        later = series.firings_after(operation.next_run_at, recurring.UPCOMING - 1, operation.runs_count + 1)
        return [timestamps.format(fire) for fire in [operation.next_run_at, *later]]

    @extend_schema_field(LastRunSerializer(allow_null=True))
    def get_last_run(self, operation: Operation) -> dict[str, Any] | None:
        """RECURRING: the newest run, its firing and state."""
        if operation.schedule_type != ScheduleType.RECURRING:
            return None
        run = operation.runs.order_by("-scheduled_for").first()
        if run is None:
            return None
        return {
            "id": str(run.pk),
            "scheduled_for": timestamps.format(run.scheduled_for),
            "state": run.state_name,
            "state_code": run.state,
        }

    @extend_schema_field(TemplateRefSerializer(allow_null=True))
    def get_template(self, operation: Operation) -> dict[str, Any] | None:
        """The template the operation was made from, or null."""
        if operation.template_id is None:
            return None
        return {
            "id": str(operation.template_id),
            "name": operation.template.name if operation.template else "",
        }


class RerunSerializer(serializers.Serializer):
    """``POST /v0/operations/{id}/rerun/``: which outcomes to re-run."""

    only = serializers.ListField(
        child=ChoiceField(choices=list(RERUN_OUTCOMES)),
        required=False,
        allow_empty=False,
        max_length=len(RERUN_OUTCOMES),
        default=list(DEFAULT_RERUN_OUTCOMES),
        help_text="The devices whose commands ended so (default FAILED and TIMED_OUT).",
    )
