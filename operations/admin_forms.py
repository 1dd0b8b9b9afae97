"""The console's form for a new operation.

It only turns what the operator picked into the API's request body: the body is then
validated by the API's ``OperationCreateSerializer`` and created by
``operations.services.create_operation``, so the console accepts and refuses exactly what
``POST /v0/operations/`` does, with the same messages.

Laid out in the order of the decision (issue 26): what (type, arguments), which devices (groups,
tags, OS, ids, with a live count), when (now, a window, a series; continuous), how (a rollout).
Every refusal goes to the field it names, all of them in one submit: the form's own checks,
then the API's serializer, the device query and the service on whatever the form could read
(:meth:`OperationForm.check_with_api`), each refusal once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from typing import Any

from django import forms
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

from config.api.parsers import JSONRefused, loads
from config.console.errors import REFUSALS, refusal_items
from config.errors import DomainError
from inventory.models import Group, Tenant
from inventory.models.devices import available_timezones
from operations import recurring, rollouts, templates
from operations.api.serializers import OperationCreateSerializer
from operations.choices import OperationType, ScheduleType, TargetSelection, TimeType
from operations.device_query import DEVICE_TYPES, DeviceQuery
from operations.models import OperationTemplate
from operations.windows import DAYS

_SEPARATORS = re.compile(r"[\s,;]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?")

#: Rows of abort rules and of retry rules the form offers: one per failure type is enough
#: (the API takes more, but two rules of one type only make the stricter one count).
RULE_ROWS = len(rollouts.FAILURE_TYPES)
FAILURE_TYPE_CHOICES = [
    ("", "---"),
    ("FAILED", "FAILED (Command Failure)"),
    ("TIMED_OUT", "TIMED_OUT (timed out after the device got it)"),
    ("ALL", "ALL (any failure)"),
]
#: The rollout's single-valued keys, each a form field of the same name.
ROLLOUT_FIELDS = ("waves", "wave_success_percent", "max_per_minute", "in_progress_timeout_minutes")
ABORT_FIELDS = ("failure_type", "threshold_percent", "min_executed")
RETRY_FIELDS = ("failure_type", "max_attempts")
_RULE_KEY = re.compile(r"rollout\.(abort|retries)\[([0-9]+)\](?:\.(\w+))?")
_PLAIN_KEY = re.compile(r"rollout\.(\w+)(?:\[[0-9]+\])?")


def split_list(text: str) -> list[str]:
    return [item for item in _SEPARATORS.split(text or "") if item]


def number(text: str) -> Any:
    """What a JSON body would carry for the text: an int for digits, a float for a decimal.

    Anything else goes on as the text itself, so that ``rollouts.parse`` refuses it with the
    API's own words ("must be a number") instead of the form's. The fields are short
    (``max_length``), so ``int`` never meets its 4,300-digit limit.
    """
    text = text.strip().removesuffix("%").strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def tag_list(values: Any) -> list[str]:
    """The tags the picker sent: the checked ones and those typed, comma-separated, in order,
    each once (a single string is read as typed)."""
    if isinstance(values, str):
        values = [values]
    found = [tag.strip() for value in values for tag in str(value).split(",")]
    return list(dict.fromkeys(tag for tag in found if tag))


#: Devices the tag picker reads its tags from (the newest): the picker offers the tags in use
#: without scanning a million-device fleet on every form; a tag only older devices carry can
#: still be typed.
TAG_SCAN_DEVICES = 20_000
#: Most tags the picker offers (the rest are typed).
TAGS_OFFERED = 60


def known_tags(tenants: QuerySet[Tenant]) -> list[str]:
    """The tags the tenants' newest devices carry (:data:`TAG_SCAN_DEVICES`), sorted."""
    from inventory.models import Device

    newest = Device.objects.filter(tenant__in=tenants).order_by("-pk").values_list("tags", flat=True)
    seen: set[str] = set()
    for tags in newest[:TAG_SCAN_DEVICES].iterator(chunk_size=5_000):
        seen.update(str(tag) for tag in tags or () if isinstance(tag, str))
    return sorted(seen, key=str.casefold)[:TAGS_OFFERED]


class TagsField(forms.MultipleChoiceField):
    """The tag picker: check boxes of the tags in use (:func:`known_tags`) and a text box of the
    same name for others, comma-separated. Any tag is taken: a tag no device carries yet is a
    fair condition (a continuous operation waits for it), and the live count shows 0."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value: Any) -> list[str]:
        return tag_list(value or [])

    def valid_value(self, value: Any) -> bool:
        return True


def device_query(data: Any) -> dict[str, Any]:
    """The ``operation_device_query`` the fields describe (raw form data: the live preview
    calls it while the rest of the form is still being filled in)."""
    query: dict[str, Any] = {"device_type": data.get("device_type") or "active"}
    devices = split_list(data.get("devices", ""))
    if devices:
        query["devices"] = devices
    groups = data.getlist("groups") if hasattr(data, "getlist") else data.get("groups") or []
    if groups:
        query["groups"] = list(groups)
    filters: dict[str, Any] = {}
    systems = data.getlist("os") if hasattr(data, "getlist") else data.get("os") or []
    if systems:
        filters["os__in"] = list(systems)
    tags = tag_list(data.getlist("tags") if hasattr(data, "getlist") else data.get("tags") or [])
    if tags:
        filters["tags__contains"] = tags
    if filters:
        query["filters"] = filters
    if data.get("all_devices") in ("on", "true", "1", True):
        query["all"] = True
    return query


class OperationForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none())
    operation_type = forms.ChoiceField(choices=OperationType.choices, initial=OperationType.REBOOT)
    groups = forms.MultipleChoiceField(
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="devices in any of these (Ctrl or Cmd to pick several)",
    )
    os = forms.MultipleChoiceField(
        required=False, label="OS", widget=forms.SelectMultiple(attrs={"size": 6}), help_text="any of these"
    )
    tags = TagsField(required=False, help_text="devices carrying all of these tags")
    devices = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="explicit device ids, separated by commas, spaces or new lines",
    )
    device_type = forms.ChoiceField(choices=[(t, t) for t in DEVICE_TYPES], initial="active")
    all_devices = forms.BooleanField(
        required=False, label="Whole fleet", help_text="every device of the tenant"
    )
    schedule_type = forms.ChoiceField(
        choices=ScheduleType.choices, initial=ScheduleType.IMMEDIATE, widget=forms.RadioSelect
    )
    target_selection = forms.ChoiceField(
        required=False,
        label="Devices",
        choices=[
            (TargetSelection.SNAPSHOT, "snapshot: the devices that match when it starts"),
            (TargetSelection.CONTINUOUS, "continuous: also every device that comes to match later"),
        ],
        initial=TargetSelection.SNAPSHOT,
        widget=forms.RadioSelect,
        help_text="continuous: it stays open until its end below or until you close it (no waves)",
    )
    continuous_end = forms.DateTimeField(
        required=False,
        label="Continuous until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="continuous: no device joins after this (in the zone below); empty: until closed",
    )
    start = forms.DateTimeField(
        required=False, label="Window start", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        required=False, label="Window end", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    days = forms.MultipleChoiceField(
        required=False,
        choices=[(day, day) for day in DAYS],
        widget=forms.CheckboxSelectMultiple,
        help_text="none: every day",
    )
    time_type = forms.ChoiceField(
        choices=[
            (TimeType.CONSOLE, "console time (the zone below)"),
            (TimeType.DEVICE, "each device's own time"),
        ],
        initial=TimeType.CONSOLE,
        widget=forms.RadioSelect,
    )
    timezone = forms.CharField(initial="UTC", help_text="IANA zone of the window in console time")
    # RECURRING (contract section 12): the series' expression, each run's window, its end.
    time_expression = forms.CharField(
        required=False,
        max_length=200,
        label="Repeat (Quartz)",
        help_text="sec min hour day-of-month month day-of-week [year]; "
        "e.g. 0 0 2 * * ? is every day at 02:00",
    )
    duration_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=recurring.MAX_DURATION_MINUTES,
        initial=recurring.DEFAULT_DURATION_MINUTES,
        label="Each run's window (min)",
    )
    max_runs = forms.IntegerField(
        required=False, min_value=1, label="At most this many runs", help_text="empty: no limit"
    )
    # A template (contract section 12): picking one fills the form (``initial_from``); its
    # parameters' values are a JSON object, as the API's ``template_parameters``.
    template = forms.ChoiceField(required=False, label="From a template")
    template_parameters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        label="Template parameters",
        help_text='JSON object of the template\'s parameters, e.g. {"version": "4.2.0"}',
    )
    # Saving the form as a template (contract section 12) instead of creating the operation.
    new_template_name = forms.CharField(
        required=False,
        max_length=200,
        label="Template name",
        help_text="a name of this tenant's templates; the form's type, arguments, devices, "
        "schedule and rollout are saved",
    )
    arguments = forms.CharField(
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="JSON object",
    )
    # The rollout (contract section 9): every field empty, no rollout. Text fields, read by
    # ``number``: what is not a number reaches ``rollouts.parse``, which says so as the API does.
    waves = forms.CharField(
        required=False,
        max_length=400,
        help_text="cumulative percents of the devices, comma-separated, the last 100: 1, 10, 50, 100",
    )
    wave_success_percent = forms.CharField(
        required=False,
        max_length=24,
        label="Wave success %",
        widget=forms.TextInput(attrs={"size": 6}),
        help_text=f"the next wave opens if this share of a wave succeeded, else the operation pauses "
        f"(default {rollouts.DEFAULT_WAVE_SUCCESS_PERCENT:g})",
    )
    max_per_minute = forms.CharField(
        required=False,
        max_length=24,
        label="Max per minute",
        widget=forms.TextInput(attrs={"size": 8}),
        help_text=f"commands handed out in any 60 s, 1 to {rollouts.MAX_PER_MINUTE:,}",
    )
    in_progress_timeout_minutes = forms.CharField(
        required=False,
        max_length=24,
        label="In-progress timeout (min)",
        widget=forms.TextInput(attrs={"size": 6}),
        help_text="a command acknowledged or in progress longer than this becomes Command TimeOut",
    )

    def __init__(self, *args: Any, tenants: QuerySet[Tenant], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = tenants  # type: ignore[attr-defined]
        if len(tenants) == 1:
            self.fields["tenant"].initial = tenants[0]
        many = len(tenants) > 1
        groups = Group.objects.filter(tenant__in=tenants).select_related("tenant").order_by("tenant", "name")
        self.fields["groups"].choices = [  # type: ignore[attr-defined]
            (str(g.pk), f"{g.tenant.slug}: {g.name}" if many else g.name) for g in groups
        ]
        from inventory.models import Device

        systems = (
            Device.objects.filter(tenant__in=tenants)
            .exclude(os="")
            .order_by("os")  # not Device's default ordering by id, which would defeat DISTINCT
            .values_list("os", flat=True)
            .distinct()
        )
        self.fields["os"].choices = [(os, os) for os in sorted(systems)]  # type: ignore[attr-defined]
        self.fields["tags"].choices = [(tag, tag) for tag in known_tags(tenants)]  # type: ignore[attr-defined]
        offered = len(self.fields["groups"].choices)  # type: ignore[attr-defined]
        self.fields["groups"].widget.attrs["size"] = min(max(offered, 2), 8)
        #: Refusals about the device query as a whole ("selects no devices"), shown in its section.
        self.query_errors: list[str] = []
        kept = OperationTemplate.objects.filter(tenant__in=tenants).select_related("tenant").order_by("name")
        self.fields["template"].choices = [  # type: ignore[attr-defined]
            ("", "---"),
            *((str(t.pk), f"{t.tenant.slug}: {t.name}" if many else t.name) for t in kept),
        ]

        for row in range(1, RULE_ROWS + 1):
            # In a table, under its column's header: each says which rule it is to a screen reader.
            self.fields[f"abort_{row}_failure_type"] = _failure_type_field(f"abort rule {row}")
            self.fields[f"abort_{row}_threshold_percent"] = _short_field("threshold %", f"abort rule {row}")
            self.fields[f"abort_{row}_min_executed"] = _short_field("min executed", f"abort rule {row}")
            self.fields[f"retry_{row}_failure_type"] = _failure_type_field(f"retry rule {row}")
            self.fields[f"retry_{row}_max_attempts"] = _short_field("max attempts", f"retry rule {row}")
        #: The validated rollout's body (None: no rollout), set by ``clean``.
        self.rollout: dict[str, Any] | None = None
        #: Which form row each rollout rule sent came from (``clean``), to place its refusals.
        self._rule_rows: dict[str, list[int]] = {"abort": [], "retries": []}
        #: The template and its values ``check_with_api`` expanded (None: no template).
        self.from_template: OperationTemplate | None = None
        self.template_values: dict[str, Any] | None = None

    def typed_tags(self) -> str:
        """The tags to show in the picker's text box: those sent (or of the template) that
        are not among its check boxes."""
        offered = {value for value, _ in self.fields["tags"].choices}  # type: ignore[attr-defined]
        given = tag_list(self["tags"].value() or [])
        return ", ".join(tag for tag in given if tag not in offered)

    def abort_rows(self) -> list[list[forms.BoundField]]:
        """The abort rules' fields, a row per rule (the template draws them as a table)."""
        return [[self[f"abort_{row}_{name}"] for name in ABORT_FIELDS] for row in range(1, RULE_ROWS + 1)]

    def retry_rows(self) -> list[list[forms.BoundField]]:
        return [[self[f"retry_{row}_{name}"] for name in RETRY_FIELDS] for row in range(1, RULE_ROWS + 1)]

    def clean_arguments(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("arguments") or "").strip() or "{}"
        try:
            value = loads(text)  # the API's limits: nesting, non-finite numbers, surrogates
        except JSONRefused as refused:
            if refused.where is None:
                raise forms.ValidationError(f"not valid JSON: {refused.reason}") from None
            raise forms.ValidationError(f"{refused.field('arguments')}: {refused.reason}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def clean_template_parameters(self) -> dict[str, Any]:
        text = (self.cleaned_data.get("template_parameters") or "").strip() or "{}"
        try:
            value = loads(text)
        except JSONRefused as refused:
            raise forms.ValidationError(f"not valid JSON: {refused.reason}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def clean_timezone(self) -> str:
        zone = (self.cleaned_data.get("timezone") or "UTC").strip()
        if zone not in available_timezones():
            raise forms.ValidationError("is not an IANA time zone name (for example 'Europe/Berlin')")
        return zone

    def clean(self) -> dict[str, Any] | None:
        """Build ``rollout`` from its fields and validate it with the API's own
        ``rollouts.parse``, putting each refusal, in the API's words, on the field it names."""
        cleaned = super().clean()
        names = [*ROLLOUT_FIELDS, *(f"abort_{r}_{n}" for r in range(1, RULE_ROWS + 1) for n in ABORT_FIELDS)]
        names += [f"retry_{r}_{n}" for r in range(1, RULE_ROWS + 1) for n in RETRY_FIELDS]
        if any(name in self.errors for name in names):
            return cleaned  # a field too long: already said; the rest could only mislead
        body, rows = self._rollout_body()
        self._rule_rows = rows
        if body is None:
            return cleaned
        try:
            rollouts.parse(body)
        except DomainError as refused:
            for key, reasons in refused.errors.items():
                for reason in reasons:
                    self.add_error(_form_field(key, rows), f"{key}: {reason}")
            return cleaned
        self.rollout = body
        return cleaned

    def _rollout_body(self) -> tuple[dict[str, Any] | None, dict[str, list[int]]]:
        """The rollout the fields describe, as a JSON body would give it (None: every field
        empty, no rollout), and which form row each abort and retry rule came from."""
        text = {
            name: (value or "").strip() for name, value in self.cleaned_data.items() if isinstance(value, str)
        }
        body: dict[str, Any] = {}
        if text.get("waves"):
            body["waves"] = [number(item) for item in split_list(text["waves"])]
        for name in ROLLOUT_FIELDS[1:]:
            if text.get(name):
                body[name] = number(text[name])
        rows: dict[str, list[int]] = {"abort": [], "retries": []}
        for key, prefix, fields in (("abort", "abort", ABORT_FIELDS), ("retries", "retry", RETRY_FIELDS)):
            rules = []
            for row in range(1, RULE_ROWS + 1):
                given = {name: text.get(f"{prefix}_{row}_{name}", "") for name in fields}
                if not any(given.values()):
                    continue
                rules.append(
                    {
                        name: value if name == "failure_type" else number(value)
                        for name, value in given.items()
                        if value
                    }
                )
                rows[key].append(row)
            if rules:
                body[key] = rules
        return (body or None), rows

    def error_lines(self) -> list[str]:
        """The form's refusals for the note above it: ``field: reason``, the API's as the API
        words them (``rollout.waves: ...``, they name their field already)."""
        lines = []
        for field, errors in self.errors.items():
            for error in errors:
                text = str(error)
                named = field == "__all__" or text.startswith(f"{field}:") or _API_WORDS.match(text)
                lines.append(text if named else f"{field}: {text}")
        return [*lines, *self.query_errors]

    def add_refusal(self, key: str, reason: str) -> None:
        """One refusal of the API (its field's API name, its reason) at the form's field it
        names, worded as the API words it; once, and not on a field already refused by the
        form's own check (the API would only repeat it in other words)."""
        text = f"{key}: {reason}" if key not in ("detail", "non_field_errors") else reason
        field = api_field(key, self.data, self._rule_rows)
        if field == QUERY:
            if text not in self.query_errors:
                self.query_errors.append(text)
            return
        if field is not None and field in self.errors:
            if text not in [str(error) for error in self.errors[field]] and key.startswith("rollout"):
                self.add_error(field, text)
            return
        if field is None and text in [str(error) for error in self.non_field_errors()]:
            return
        self.add_error(field, text)

    def add_refusals(self, error: DomainError | ValidationError) -> None:
        for key, reason in refusal_items(error):
            self.add_refusal(key, reason)

    def check_with_api(self, tenant_id: int) -> dict[str, Any] | None:
        """Run the API's checks on what the form could read, each refusal at its field (so one
        submit shows them all), and return the body to create (None: something was refused).

        The template is expanded first (its fields under the form's); then the serializer,
        and the device query against the tenant's devices and groups, both always (a refused
        schedule does not hide an unknown device id)."""
        body: dict[str, Any] | None = self.api_data()
        template = values = None
        if body and body.get("template"):
            try:
                body, template, values = templates.expand(tenant_id, body)
            except REFUSALS as refused:
                self.add_refusals(refused)
                body = None
        if body is not None:
            serializer = OperationCreateSerializer(data=body)
            try:  # its schedule's checks may raise the services' DomainError
                if not serializer.is_valid():
                    self.add_refusals(ValidationError(serializer.errors))
            except REFUSALS as refused:
                self.add_refusals(refused)
            try:
                DeviceQuery.parse(body.get("operation_device_query")).check_references(tenant_id)
            except REFUSALS as refused:
                self.add_refusals(refused)
        if self.errors or self.query_errors or body is None:
            return None
        self.from_template, self.template_values = template, values
        return dict(serializer.validated_data)

    def api_data(self) -> dict[str, Any]:
        """The body ``POST /v0/operations/`` would get (call after ``is_valid``)."""
        # Also on a form some of whose fields were refused (``check_with_api``): those are
        # left out or take their defaults, so that the API judges the rest.
        data = {
            **_FALLBACKS,
            **{name: value for name, value in self.cleaned_data.items() if value is not None},
        }
        body: dict[str, Any] = {
            "operation_type": data.get("operation_type") or self.data.get("operation_type") or "",
            "schedule_type": data["schedule_type"],
            "target_selection": data.get("target_selection") or TargetSelection.SNAPSHOT,
            "operation_device_query": device_query(self.data),
            "arguments": data["arguments"],
        }
        if data["schedule_type"] == ScheduleType.WINDOW:
            args: dict[str, Any] = {"time_type": data["time_type"]}
            zone = zoneinfo.ZoneInfo(data["timezone"]) if data["time_type"] == TimeType.CONSOLE else dt.UTC
            if data["time_type"] == TimeType.CONSOLE:
                args["timezone"] = data["timezone"]
            for name, field in (("start_datetime", "start"), ("end_datetime", "end")):
                if data.get(field):
                    # The browser sends a wall-clock time; in device time only the wall clock counts.
                    args[name] = data[field].replace(tzinfo=None).replace(tzinfo=zone).isoformat()
            if data.get("days"):
                args["days"] = data["days"]
            body["schedule_args"] = args
        if data["schedule_type"] == ScheduleType.RECURRING:
            body["schedule_args"] = self._recurring_args(data)
        elif (
            data.get("target_selection") == TargetSelection.CONTINUOUS
            and data.get("continuous_end")
            and data["schedule_type"] != ScheduleType.WINDOW  # a window's end is its own
        ):
            zone = zoneinfo.ZoneInfo(data["timezone"])
            end = data["continuous_end"].replace(tzinfo=None).replace(tzinfo=zone)
            body["schedule_args"] = {"end_datetime": end.isoformat()}
        if self.rollout is not None:
            body["rollout"] = self.rollout
        if data.get("template"):
            body["template"] = data["template"]
            body["template_parameters"] = data["template_parameters"]
        return body

    def template_data(self) -> dict[str, Any]:
        """The body ``POST /v0/operation-templates/`` would get to save the form as a template
        (its parameters those of the template it was filled from, so placeholders stay valid)."""
        body = self.api_data()
        data: dict[str, Any] = {
            "name": self.cleaned_data.get("new_template_name") or "",
            "operation_type": body["operation_type"],
            "arguments": body["arguments"],
            "operation_device_query": body["operation_device_query"],
            "schedule_type": body["schedule_type"],
            "schedule_args": body.get("schedule_args") or {},
            "rollout": body.get("rollout"),
        }
        picked = self.cleaned_data.get("template")
        source = OperationTemplate.objects.filter(pk=_uuid(picked)).first() if picked else None
        if source is not None:
            data["parameters"] = source.parameters
        return data

    def _recurring_args(self, data: dict[str, Any]) -> dict[str, Any]:
        """A series' ``schedule_args``: the window fields' start and end bound the series."""
        args: dict[str, Any] = {"time_type": data["time_type"], "time_expression": data["time_expression"]}
        zone = zoneinfo.ZoneInfo(data["timezone"]) if data["time_type"] == TimeType.CONSOLE else dt.UTC
        if data["time_type"] == TimeType.CONSOLE:
            args["timezone"] = data["timezone"]
        for name, field in (("start_datetime", "start"), ("end_datetime", "end")):
            if data.get(field):
                args[name] = data[field].replace(tzinfo=None).replace(tzinfo=zone).isoformat()
        for name in ("duration_minutes", "max_runs"):
            if data.get(name):
                args[name] = data[name]
        return args


def initial_from(template: OperationTemplate) -> dict[str, Any]:
    """The form's fields as a template fills them: what it says, the rest left as they are.
    ``arguments`` keep their ``{{name}}`` placeholders, which the parameters fill on submit."""
    initial: dict[str, Any] = {
        "template": str(template.pk),
        "tenant": template.tenant_id,
        "operation_type": template.operation_type,
        "arguments": json.dumps(template.arguments, indent=1),
        "template_parameters": json.dumps(
            {name: spec.get("default") for name, spec in (template.parameters or {}).items()}
        ),
    }
    query = template.device_query or {}
    if query.get("devices"):
        initial["devices"] = ", ".join(query["devices"])
    if query.get("groups"):
        initial["groups"] = [str(group) for group in query["groups"]]
    if query.get("device_type"):
        initial["device_type"] = query["device_type"]
    filters = query.get("filters") or {}
    if filters.get("os__in"):
        initial["os"] = list(filters["os__in"])
    if filters.get("tags__contains"):
        initial["tags"] = list(filters["tags__contains"])
    initial["all_devices"] = bool(query.get("all"))
    if template.schedule_type:
        initial["schedule_type"] = template.schedule_type
    args = template.schedule_args or {}
    for name in ("time_type", "timezone", "time_expression", "duration_minutes", "max_runs", "days"):
        if args.get(name):
            initial[name] = args[name]
    rollout = template.rollout or {}
    if rollout.get("waves"):
        initial["waves"] = ", ".join(str(wave) for wave in rollout["waves"])
    for name in ROLLOUT_FIELDS[1:]:
        if rollout.get(name) is not None:
            initial[name] = str(rollout[name])
    return initial


def _failure_type_field(rule: str) -> forms.CharField:
    """A drop-down, but a text field underneath: a value the choices lack reaches
    ``rollouts.parse``, which refuses it as the API does ("must be one of FAILED, ...")."""
    return forms.CharField(
        required=False,
        max_length=16,
        label="failure type",
        widget=forms.Select(choices=FAILURE_TYPE_CHOICES, attrs={"aria-label": f"{rule}: failure type"}),
    )


def _short_field(label: str, rule: str) -> forms.CharField:
    """A number as text (``number`` reads it), so the API's messages refuse what is wrong."""
    return forms.CharField(
        required=False,
        max_length=24,
        label=label,
        widget=forms.TextInput(attrs={"size": 6, "aria-label": f"{rule}: {label}"}),
    )


def _form_field(key: str, rows: dict[str, list[int]]) -> str | None:
    """The form field a refusal of ``rollouts.parse`` names (None: the form as a whole):
    ``rollout.waves[2]`` → ``waves``, ``rollout.abort[1].min_executed`` → the field of the
    second abort rule the operator filled in (empty rows are not sent)."""
    found = _RULE_KEY.fullmatch(key)
    if found:
        kind, index, name = found.group(1), int(found.group(2)), found.group(3)
        fields, prefix = (ABORT_FIELDS, "abort") if kind == "abort" else (RETRY_FIELDS, "retry")
        if index >= len(rows[kind]):
            return None
        return f"{prefix}_{rows[kind][index]}_{name if name in fields else 'failure_type'}"
    found = _PLAIN_KEY.fullmatch(key)
    if found and found.group(1) in ROLLOUT_FIELDS:
        return found.group(1)
    return None


#: Where a refusal about the device query as a whole goes (its section, by the live count).
QUERY = "__query__"
#: A refusal already worded with the API's name of its field (``rollout.waves: ...``).
_API_WORDS = re.compile(r"^(?:rollout|schedule_args|operation_device_query|arguments|template)[\w.\[\]]*: ")
#: The cleaned values a refused field leaves out, so the API can judge the rest.
_FALLBACKS: dict[str, Any] = {
    "schedule_type": ScheduleType.IMMEDIATE,
    "time_type": TimeType.CONSOLE,
    "timezone": "UTC",
    "arguments": {},
    "template_parameters": {},
}
#: The form's field for each field of the API's body (``schedule_args`` by the schedule's keys).
_API_FIELDS = {
    "operation_type": "operation_type",
    "schedule_type": "schedule_type",
    "target_selection": "target_selection",
    "arguments": "arguments",
    "template": "template",
    "template_parameters": "template_parameters",
    "name": "new_template_name",
    "operation_device_query": QUERY,
    "operation_device_query.devices": "devices",
    "operation_device_query.groups": "groups",
    "operation_device_query.device_type": "device_type",
    "operation_device_query.all": "all_devices",
    "operation_device_query.filters.os__in": "os",
    "operation_device_query.filters.tags__contains": "tags",
    "schedule_args": "schedule_type",
    "schedule_args.start_datetime": "start",
    "schedule_args.days": "days",
    "schedule_args.time_type": "time_type",
    "schedule_args.timezone": "timezone",
    "schedule_args.time_expression": "time_expression",
    "schedule_args.duration_minutes": "duration_minutes",
    "schedule_args.max_runs": "max_runs",
}


def api_field(key: str, data: Any, rows: dict[str, list[int]]) -> str | None:
    """The form field a refusal of the API names (None: the form as a whole; :data:`QUERY`:
    the device query as a whole): ``schedule_args.timezone`` → ``timezone``,
    ``arguments.a`` → ``arguments``, ``rollout.abort[1].min_executed`` → that rule's row."""
    if key.startswith("rollout"):
        return _form_field(key, rows)
    if key == "schedule_args.end_datetime":
        window = data.get("schedule_type") in (ScheduleType.WINDOW, ScheduleType.RECURRING)
        return "end" if window else "continuous_end"
    for name in (key, key.split("[")[0], key.rsplit(".", 1)[0], key.split(".")[0]):
        if name in _API_FIELDS:
            return _API_FIELDS[name]
    if key.startswith("operation_device_query.filters"):
        return QUERY
    return None


def _uuid(text: Any) -> Any:
    import uuid

    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None
