"""The operators' console for operations: create (with a live preview and a rollout), state,
progress that updates by itself (a rollout's waves, abort rules and rate included),
activity, pause, resume, cancel and retry of the failed devices.

Everything goes through ``operations.services`` and the API's serializer, as ``/v0/operations/``.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from commands.admin import console_time
from config.console.errors import REFUSALS, refusal_messages
from config.console.filters import ChoicesDropdownFilter
from config.errors import DomainError
from config.quartz import describe
from inventory.models import Tenant
from inventory.models.devices import available_timezones
from inventory.scoping import TenantScopedAdmin, scope_of, scope_queryset
from operations import admin_confirm, approvals, continuous, recurring, services
from operations.admin_approvals import ApprovalsQueueMixin, console_requester
from operations.admin_confirm import Confirmation
from operations.admin_failing import FailingNowMixin
from operations.admin_forms import OperationForm, device_query, initial_from
from operations.admin_live import (
    ROLLOUT_TEMPLATE,
    activity_counts,
    command_page,
    failing_panel,
    live_data,
    schedule_summary,
)
from operations.api.templates import OperationTemplateSerializer
from operations.choices import TERMINAL_STATES, OperationState, OperationType, ScheduleType, TimeType
from operations.device_query import DeviceQuery
from operations.events import approval_data
from operations.models import Operation, OperationActivity, OperationTemplate
from operations.services import cancel_operation

#: Runs a series' page lists (the newest).
RUNS_SHOWN = 20
#: The confirmation page's question, by the state a stop moves to.
STOP_TITLES = {OperationState.CANCELLED: "Cancel", OperationState.TIMEOUT: "Time out"}
#: Devices a delete's confirmation names by id (the rest as a number).
DELETE_NAMED = 10


def unfinished_refusal(unfinished: list[Operation]) -> str:
    named = ", ".join(f"{operation.pk} ({operation.state_name})" for operation in unfinished)
    return (
        f"Not deleted: only a finished operation can be deleted, and {named} "
        f"{'is' if len(unfinished) == 1 else 'are'} not finished. Cancel it first."
    )


class OperationGroupFilter(admin.SimpleListFilter):
    """The operator's four lists of operations (the sidebar links to each): what runs now,
    what waits for a second admin, what is planned (a window or a recurring series), what
    has finished."""

    title = "status"
    parameter_name = "status"
    # One drop-down (config.console.filters): the filter column fits a 768 px high screen.
    template = "admin/console/select_filter.html"
    GROUPS: dict[str, tuple[str, frozenset[OperationState]]] = {
        "active": (
            "active",
            frozenset(OperationState)
            - TERMINAL_STATES
            - {OperationState.WAITING_FOR_APPROVAL, OperationState.SCHEDULED},
        ),
        "approval": ("waiting for approval", frozenset({OperationState.WAITING_FOR_APPROVAL})),
        "scheduled": ("scheduled and recurring", frozenset({OperationState.SCHEDULED})),
        "finished": ("finished", TERMINAL_STATES),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.GROUPS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        group = self.GROUPS.get(self.value() or "")
        if group is None:
            return queryset
        if self.value() == "scheduled":  # a recurring series is SCHEDULED between its runs, or PAUSED
            return queryset.filter(
                Q(state=OperationState.SCHEDULED) | Q(schedule_type=ScheduleType.RECURRING)
            ).exclude(state__in=TERMINAL_STATES)
        return queryset.filter(state__in=sorted(group[1]))


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _fire_in_words(series: recurring.Series, fire: dt.datetime | None) -> str:
    """A firing as the page writes times: a console one in UTC, a device-time one as the wall
    clock it is (no instant: each device opens at its own)."""
    if fire is None:
        return "-"
    if series.device_time:
        return f"{fire:%Y-%m-%d %H:%M %a} in each device's own time"
    return (
        f"{console_time(fire)} ({fire.astimezone(zoneinfo.ZoneInfo(series.console_zone)):%a %H:%M} "
        f"{series.console_zone})"
    )


def series_runs_in_words(series: recurring.Series, now: dt.datetime, count: int) -> list[str]:
    return [_fire_in_words(series, fire) for fire in series.firings_after(now, count)]


#: How many runs of a series the form shows.
SERIES_RUNS_SHOWN = 5


def series_preview(data: Any, *, series_only: bool = True) -> dict[str, Any]:
    """A RECURRING form's expression in words and its next runs, as the maintenance page shows
    a schedule's (``config.quartz.describe``), checked by the API's parser; ``{}`` when the
    form is no series or has no expression yet. The form's script asks for it as the
    expression is typed; the page draws it too when the form comes back refused."""
    if series_only and data.get("schedule_type") != ScheduleType.RECURRING:
        return {}
    args: dict[str, Any] = {
        "time_expression": (data.get("time_expression") or "").strip(),
        "time_type": data.get("time_type") or TimeType.CONSOLE,
        "timezone": (data.get("timezone") or "UTC").strip(),
    }
    if not args["time_expression"] and series_only:
        return {}
    try:
        recurring.parse_expression(args["time_expression"])
        if args["timezone"] not in available_timezones():
            raise DomainError({"timezone": ["is not an IANA time zone name"]})
        upcoming = series_runs_in_words(recurring.Series.from_args(args), timezone.now(), SERIES_RUNS_SHOWN)
    except REFUSALS as error:
        return {"errors": refusal_messages(error)}
    return {"description": describe(args["time_expression"]), "runs": upcoming}


def approval_note(tenant_id: int, operation_type: str, query: dict[str, Any]) -> str:
    """What the form says when the tenant's policy (contract section 13) will hold the
    operation for a second admin's approval; "" when it will not (or cannot tell yet)."""
    if operation_type not in OperationType.values:
        return ""
    label = OperationType(operation_type).label
    policy = approvals.policy_of(tenant_id)
    if operation_type in policy.operation_types:
        return f"{label} operations of this tenant wait for a second admin's approval before they start."
    if policy.min_devices is None or set(query) <= {"device_type"}:
        return ""
    try:
        held = approvals.holds(tenant_id, operation_type, DeviceQuery.parse(query))
    except REFUSALS:
        return ""
    if held is None:
        return ""
    return (
        f"It will wait for a second admin's approval: it targets at least {policy.min_devices} devices "
        "(the tenant's approval policy)."
    )


class ActivityInline(admin.TabularInline):
    model = OperationActivity
    extra = 0
    can_delete = False
    readonly_fields = ["at", "operation_state", "reason", "actor", "counted"]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="at")
    def at(self, activity: OperationActivity) -> str:
        return console_time(activity.created_at)

    @admin.display(description="counts")
    def counted(self, activity: OperationActivity) -> str:
        return activity_counts(activity.counts)


def progress_bar(operation: Operation) -> str:
    """Succeeded, failed and pending out of resolved, as one stacked bar."""
    total = operation.resolved_count or 1
    parts = [
        ("#2e7d32", operation.success_count, "succeeded"),
        ("#c62828", operation.failed_count + operation.dispatch_failed_count, "failed"),
        ("#9e9e9e", operation.cancelled_count, "cancelled"),
    ]
    segments = format_html_join(
        "",
        '<span title="{} {}" style="display:inline-block;height:10px;width:{}%;background:{}"></span>',
        ((count, label, round(100 * count / total, 2), colour) for colour, count, label in parts if count),
    )
    # A rollout's wave, from the row alone (no query per line of a list).
    planned = len((operation.rollout or {}).get("waves") or ())
    return format_html(
        '<span class="op-progress" style="display:inline-block;width:160px;background:#e0e0e0">{}</span> '
        "{} ok / {} failed / {} pending of {}{}",
        segments,
        operation.success_count,
        operation.failed_count + operation.dispatch_failed_count,
        operation.pending_count,
        operation.resolved_count,
        f", wave {operation.current_wave} of {planned}" if planned else "",
    )


#: States whose reason the list shows under the badge: a pause waits for an operator, and a
#: stop says who or what stopped it (an automatic abort is not a manual cancel).
REASONED_STATES = frozenset(
    {
        OperationState.PAUSED,
        OperationState.CANCELLED,
        OperationState.TIMEOUT,
        OperationState.FAILURE,
        OperationState.APPROVAL_DENIED,
    }
)


def state_badge(operation: Operation) -> str:
    """The state as a coloured badge; a PAUSED or stopped one says why under it (a wave below
    its threshold waits for an operator, an abort rule's cancel is not an operator's)."""
    name = operation.state_name
    badge = format_html('<span class="op-badge op-badge-{}">{}</span>', name.lower(), name)
    if operation.state in REASONED_STATES:
        return format_html(
            '{}<span class="op-paused-reason op-state-reason">{}</span>',
            badge,
            operation.reason or name.lower(),
        )
    return badge


@admin.register(Operation)
class OperationAdmin(FailingNowMixin, ApprovalsQueueMixin, TenantScopedAdmin):
    list_display = [
        "short_id",
        "operation_type",
        "tenant",
        "state_badge",
        "progress",
        "created_by",
        "created_at",
    ]
    list_filter = [
        OperationGroupFilter,
        "state",
        ("operation_type", ChoicesDropdownFilter),
        "schedule_type",
        "tenant",
    ]
    search_fields = ["id", "created_by", "reason"]
    date_hierarchy = "created_at"
    inlines = [ActivityInline]
    actions = ["pause", "resume", "cancel", "retry_failed"]
    # The state, reason, counts and progress are not among the fields: the live view above
    # them shows them, from the same data as its polls (operations.admin_live).
    readonly_fields = [
        "id",
        "tenant",
        "operation_type",
        "schedule_type",
        "schedule",
        "device_query",
        "arguments",
        "created_by",
        "updated_by",
        "created",
    ]
    fields = tuple(readonly_fields)
    #: A RECURRING series' page adds its expression in words, its next runs and its runs.
    series_fields = ("series", "runs")

    change_form_template = "admin/operations/operation/change_form.html"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.schedule_type == ScheduleType.RECURRING:
            return (*self.fields, *self.series_fields)
        if obj is not None and obj.parent_id is not None:
            return (*self.fields, "series_of")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description="series")
    def series(self, operation: Operation) -> str:
        """The expression in words and the next five runs, as the maintenance page shows a
        schedule's; nothing upcoming once the series is paused, stopped or past its end."""
        args = operation.schedule_args or {}
        words = describe(str(args.get("time_expression", "")))
        clock = (
            "each device's own time"
            if args.get("time_type") == TimeType.DEVICE
            else args.get("timezone", "UTC")
        )
        head = format_html(
            "<div><b>{}</b> ({}), each run open {} min; {} run(s) made{}</div>",
            words,
            clock,
            args.get("duration_minutes", recurring.DEFAULT_DURATION_MINUTES),
            operation.runs_count,
            f", at most {args['max_runs']}" if args.get("max_runs") else "",
        )
        if operation.state != OperationState.SCHEDULED or operation.next_run_at is None:
            return format_html("{}<div>no run to come ({})</div>", head, operation.state_name)
        parsed = recurring.Series.from_args(args)
        later = parsed.firings_after(operation.next_run_at, 4, operation.runs_count + 1)
        upcoming = [_fire_in_words(parsed, fire) for fire in [operation.next_run_at, *later]]
        return format_html(
            '{}<div>next five runs:</div><ul class="series-upcoming">{}</ul>',
            head,
            format_html_join("", "<li>{}</li>", ((line,) for line in upcoming)),
        )

    @admin.display(description="runs")
    def runs(self, operation: Operation) -> str:
        """The series' runs, newest first, each with its outcome and counts."""
        runs = list(operation.runs.order_by("-scheduled_for")[:RUNS_SHOWN])
        if not runs:
            return "no run yet"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:operations_operation_change", args=[run.pk]),
                    _fire_in_words(recurring.Series.from_args(operation.schedule_args), run.scheduled_for),
                    state_badge(run),
                    progress_bar(run),
                )
                for run in runs
                if run.scheduled_for is not None
            ),
        )
        shown = (
            f"the newest {len(runs)} of {operation.runs_count}" if operation.runs_count > len(runs) else ""
        )
        return format_html(
            '<table class="series-runs"><thead><tr><th>run of</th><th>outcome</th><th>devices</th></tr>'
            "</thead><tbody>{}</tbody></table>{}",
            rows,
            shown,
        )

    @admin.display(description="run of the series")
    def series_of(self, operation: Operation) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:operations_operation_change", args=[operation.parent_id]),
            operation.parent_id,
        )

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("preview/", wrap(require_POST(self.preview_view)), name="operations_operation_preview"),
            path(
                "series-preview/",
                wrap(require_POST(self.series_preview_view)),
                name="operations_operation_series_preview",
            ),
            path(
                "<path:object_id>/progress/", wrap(self.progress_view), name="operations_operation_progress"
            ),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="operations_operation_cancel"),
            path("<path:object_id>/timeout/", wrap(self.timeout_view), name="operations_operation_timeout"),
            path(
                "<path:object_id>/pause/",
                wrap(require_POST(self.pause_view)),
                name="operations_operation_pause",
            ),
            path(
                "<path:object_id>/resume/",
                wrap(require_POST(self.resume_view)),
                name="operations_operation_resume",
            ),
            path(
                "<path:object_id>/close/",
                wrap(require_POST(self.close_view)),
                name="operations_operation_close",
            ),
            path(
                "<path:object_id>/retry-failed/",
                wrap(require_POST(self.retry_view)),
                name="operations_operation_retry_failed",
            ),
            *self.approval_urls(),
            *self.failing_urls(),
            *super().get_urls(),
        ]

    def _tenants(self, request: HttpRequest) -> QuerySet[Tenant]:
        return scope_queryset(Tenant.objects.order_by("slug"), scope_of(request), "pk")

    def _actor(self, request: HttpRequest) -> str:
        return f"admin:{request.user.get_username()}"

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """The form: validated by the API's serializer, created by the API's service; every
        refusal at its field, all in one submit (``OperationForm.check_with_api``). "Save as
        template" keeps the form as a template instead (``OperationTemplateSerializer``)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        tenants = self._tenants(request)
        picked = None
        if request.method != "POST" and request.GET.get("template"):
            picked = OperationTemplate.objects.filter(
                tenant__in=tenants, pk=_uuid_or_none(request.GET["template"])
            ).first()
        initial = initial_from(picked) if picked is not None else None
        form = OperationForm(request.POST or None, tenants=tenants, initial=initial)
        if request.method == "POST":
            form.is_valid()
            tenant = form.cleaned_data.get("tenant")
            if tenant is not None and "_save_template" in request.POST:
                saved = self._save_template(request, form, tenant.pk)
                if saved is not None:
                    messages.success(request, f"Saved the form as template {saved.name!r}.")
                    add = reverse("admin:operations_operation_add")
                    return HttpResponseRedirect(f"{add}?template={saved.pk}")
            elif tenant is not None:
                created = self._create(request, form, tenant.pk)
                if created is not None:
                    return HttpResponseRedirect(
                        reverse("admin:operations_operation_change", args=[created.pk])
                    )
        context = {
            **self.admin_site.each_context(request),
            "title": "New operation",
            "opts": self.model._meta,
            "form": form,
            "preview_url": reverse("admin:operations_operation_preview"),
            "series_preview_url": reverse("admin:operations_operation_series_preview"),
            "series": series_preview(form.data) if form.is_bound else None,
            "group_add_url": reverse("admin:inventory_group_add"),
            "saving_template": "_save_template" in request.POST,
        }
        return TemplateResponse(request, "admin/operations/operation/create.html", context)

    def _create(self, request: HttpRequest, form: OperationForm, tenant_id: int) -> Operation | None:
        """The operation, or None with every refusal on the form."""
        validated = form.check_with_api(tenant_id)
        if validated is None:
            return None
        try:
            operation = services.create_operation(
                tenant_id,
                validated,
                self._actor(request),
                console_requester(request),
                template=form.from_template,
                template_parameters=form.template_values,
            )
        except REFUSALS as error:
            form.add_refusals(error)
            return None
        waits = operation.state == OperationState.WAITING_FOR_APPROVAL
        held = " It waits for another admin's approval (Approvals)." if waits else ""
        messages.success(
            request, f"Created {operation.get_operation_type_display()} operation {operation.pk}.{held}"
        )
        return operation

    def _save_template(
        self, request: HttpRequest, form: OperationForm, tenant_id: int
    ) -> OperationTemplate | None:
        """The form kept as a template, as ``POST /v0/operation-templates/`` would keep it."""
        if not form.cleaned_data.get("new_template_name"):
            form.add_error("new_template_name", "give the template a name to save the form as one")
        if form.errors:
            return None
        serializer = OperationTemplateSerializer(data=form.template_data(), context={"tenant_id": tenant_id})
        if not serializer.is_valid():
            form.add_refusals(ValidationError(serializer.errors))
            return None
        actor = self._actor(request)
        template: OperationTemplate = serializer.save(tenant_id=tenant_id, created_by=actor, updated_by=actor)
        return template

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        operation = self.get_object(request, unquote(object_id))
        # Every field is read-only: the state moves only by the buttons (the services).
        context = dict(
            extra_context or {},
            terminal_states=sorted(TERMINAL_STATES),
            show_save=False,
            show_save_and_continue=False,
            show_save_and_add_another=False,
        )
        if operation is not None:
            context["title"] = f"{operation.get_operation_type_display()} operation"
            context["live"] = live_data(operation)
            context["approval"] = approval_data(operation)
            if operation.approval_expires_at:
                context["approval_expires"] = console_time(operation.approval_expires_at)
            context["command_page"] = command_page(operation, request.GET)
            context["failing"] = failing_panel(operation, request.GET)
        return super().change_view(request, object_id, form_url, context)

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The live count of the form: the same service as ``POST /v0/operations/preview/``,
        and whether the tenant's policy will hold the operation for a second admin. Before a
        tenant or any condition on the devices is chosen it answers a hint, not an error."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        chosen = request.POST.get("tenant", "")
        tenant = self._tenants(request).filter(pk=chosen).first() if chosen.isdigit() else None
        if tenant is None:
            return JsonResponse({"hint": "Pick a tenant to count its devices."})
        query = device_query(request.POST)
        approval = approval_note(tenant.pk, request.POST.get("operation_type", ""), query)
        if set(query) <= {"device_type"}:
            return JsonResponse(
                {"hint": "Pick groups, tags, an OS, device ids or the whole fleet.", "approval": approval}
            )
        try:
            count, sample = services.preview(tenant.pk, query)
        except REFUSALS as error:
            return JsonResponse({"errors": refusal_messages(error), "approval": approval}, status=400)
        return JsonResponse(
            {"device_count": count, "devices": [device.device_id for device in sample], "approval": approval}
        )

    def series_preview_view(self, request: HttpRequest) -> JsonResponse:
        """The form's RECURRING expression in words and its next five runs (:func:`series_preview`)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        answer = series_preview(request.POST, series_only=False)
        return JsonResponse(answer, status=400 if "errors" in answer else 200)

    def _operation(self, request: HttpRequest, object_id: str) -> Operation:
        operation = self.get_object(request, unquote(object_id))
        if operation is None:
            raise Http404
        return operation

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The live view's data (:func:`live_data`), which the page's script polls; the rollout
        panel comes drawn by the page's own template, so the two cannot differ."""
        operation = self._operation(request, object_id)
        data = live_data(operation)
        if data["rollout"] is not None:
            data["rollout_html"] = render_to_string(ROLLOUT_TEMPLATE, {"rollout": data["rollout"]}, request)
        return JsonResponse(data)

    def _stop_view(
        self,
        request: HttpRequest,
        object_id: str,
        target: OperationState,
        verb: str,
        command_state: str,
        button: str,
    ) -> HttpResponse:
        """Cancel or time out, after a confirmation that says how many devices it touches
        (:mod:`operations.admin_confirm`); the page then follows the stop until it is done."""
        operation = self._operation(request, object_id)
        if not self.has_change_permission(request, operation):
            raise PermissionDenied
        back = reverse("admin:operations_operation_change", args=[operation.pk])
        if operation.state in TERMINAL_STATES:
            messages.error(
                request, f"Operation {operation.pk} is already {operation.state_name}: nothing to stop."
            )
            return HttpResponseRedirect(back)
        if not admin_confirm.confirmed(request):
            kind = operation.get_operation_type_display()
            confirmation = Confirmation(
                title=f"{STOP_TITLES[target]} {kind} operation {operation.pk}",
                lines=admin_confirm.stop_lines(operation, verb, command_state),
                button=button,
                action_url=request.path,
                back_url=back,
            )
            return admin_confirm.render(request, self.admin_site.each_context(request), confirmation)
        try:
            services.request_state(operation, target, f"{verb} from the console", self._actor(request))
            messages.success(
                request,
                f"{verb.capitalize()} operation {operation.pk}: nothing more of it is handed out; "
                f"a worker is moving its {operation.pending_count:,} unfinished commands to {command_state}.",
            )
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
        return HttpResponseRedirect(back)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stop_view(
            request, object_id, OperationState.CANCELLED, "cancelled", "Command Cancelled", "Yes, cancel it"
        )

    def timeout_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._stop_view(
            request, object_id, OperationState.TIMEOUT, "timed out", "Command TimeOut", "Yes, time it out"
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """No Delete link on an unfinished operation's page (``delete_view`` says why)."""
        if obj is not None and obj.state not in TERMINAL_STATES:
            return False
        return super().has_delete_permission(request, obj)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        """Only a finished operation is deleted: an unfinished one still has devices working
        on it (cancel it first). Refused with the reason, not Django's bare 403."""
        operation = self.get_object(request, unquote(object_id))
        if operation is not None and operation.state not in TERMINAL_STATES:
            messages.error(request, unfinished_refusal([operation]))
            return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[operation.pk]))
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """What a delete removes, in numbers and device ids: Django's own page listed every
        command status by its device's integer key, a line per device (a million lines for
        a million devices)."""
        operations = list(objs)
        deleted: list[Any] = []
        for operation in operations:
            sample = list(
                operation.commands.select_related("device")
                .order_by("device_id")
                .values_list("device__device_id", flat=True)[:DELETE_NAMED]
            )
            more = operation.resolved_count - len(sample)
            named = ", ".join(sample) + (f" and {more:,} more" if more > 0 else "")
            deleted.append(f"{operation.operation_type} operation {operation.pk} ({operation.state_name})")
            deleted.append(
                [f"{operation.resolved_count:,} command statuses, one per device: {named or 'none'}"]
            )
        counts = {"operations": len(operations)}
        perms_needed: set[str] = set()
        if not self.has_delete_permission(request):
            perms_needed.add("operation")
        return deleted, counts, perms_needed, []

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        # Reached only through delete_selected, which checks first (delete_selected below).
        super().delete_queryset(request, queryset.filter(state__in=TERMINAL_STATES))

    def get_actions(self, request: HttpRequest) -> Any:
        actions: dict[str, Any] = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions["delete_selected"] = (OperationAdmin.delete_finished, name, description)
        return actions

    def delete_finished(self, request: HttpRequest, queryset: QuerySet[Operation]) -> Any:
        """Django's bulk delete, refused whole when one selected operation is unfinished."""
        unfinished = list(queryset.exclude(state__in=TERMINAL_STATES)[:10])
        if unfinished:
            messages.error(request, unfinished_refusal(unfinished))
            return None
        return delete_selected(self, request, queryset)

    def close_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Close a continuous operation, as ``PUT /v0/operations/{id}/`` with ``state: COMPLETED``."""
        operation = self._operation(request, object_id)
        if not self.has_change_permission(request, operation):
            raise PermissionDenied
        try:
            continuous.close(operation, "closed from the console", self._actor(request))
            messages.success(
                request,
                f"Closed operation {operation.pk}: no device joins from now on; "
                "it finishes when its commands do.",
            )
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
        return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[operation.pk]))

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """PAUSED, as ``PUT /v0/operations/{id}/`` with ``state: PAUSED``: nothing more is handed out."""
        operation = self._operation(request, object_id)
        if not self.has_change_permission(request, operation):
            raise PermissionDenied
        try:
            services.request_state(
                operation, OperationState.PAUSED, "paused from the console", self._actor(request)
            )
            messages.success(request, f"Paused operation {operation.pk}: nothing more of it is handed out.")
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
        return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[operation.pk]))

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """RESUMED: back to the state the pause left; after a wave below its threshold, the
        next wave opens (the operator has decided to go on)."""
        operation = self._operation(request, object_id)
        if not self.has_change_permission(request, operation):
            raise PermissionDenied
        try:
            services.resume(operation, "resumed from the console", self._actor(request))
            messages.success(request, f"Resumed operation {operation.pk}.")
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
        return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[operation.pk]))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        operation = self._operation(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        try:
            retry = services.rerun(operation, self._actor(request), console_requester(request))
        except REFUSALS as error:
            messages.error(request, "; ".join(refusal_messages(error)))
            return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[operation.pk]))
        messages.success(request, f"Re-running the failed devices of {operation.pk} as operation {retry.pk}.")
        return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[retry.pk]))

    @admin.display(description="id", ordering="id")
    def short_id(self, operation: Operation) -> str:
        """The id's first 8 characters, the whole in the tooltip (and the search box finds it):
        a whole UUID wrapped onto six lines in the list's narrow first column."""
        return format_html(
            '<span class="op-id" title="{}">{}&hellip;</span>', operation.pk, str(operation.pk)[:8]
        )

    @admin.display(description="state", ordering="state")
    def state_badge(self, operation: Operation) -> str:
        return state_badge(operation)

    @admin.display(description="progress")
    def progress(self, operation: Operation) -> str:
        return progress_bar(operation)

    @admin.display(description="created")
    def created(self, operation: Operation) -> str:
        return console_time(operation.created_at)

    @admin.display(description="window")
    def schedule(self, operation: Operation) -> str:
        return schedule_summary(operation)

    @admin.action(description="Pause the selected operations", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        done = 0
        for operation in queryset.exclude(state__in=[*TERMINAL_STATES, OperationState.PAUSED]):
            try:
                services.request_state(
                    operation, OperationState.PAUSED, "paused from the console", self._actor(request)
                )
                done += 1
            except REFUSALS as error:
                messages.error(request, f"{operation.pk}: " + "; ".join(refusal_messages(error)))
        messages.success(request, f"Paused {done} operation(s).")

    @admin.action(description="Resume the selected paused operations", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        done = 0
        for operation in queryset.filter(state=OperationState.PAUSED):
            try:
                services.resume(operation, "resumed from the console", self._actor(request))
                done += 1
            except REFUSALS as error:
                messages.error(request, f"{operation.pk}: " + "; ".join(refusal_messages(error)))
        messages.success(request, f"Resumed {done} operation(s).")

    @admin.action(description="Cancel the selected operations", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Operation]) -> HttpResponse | None:
        unfinished = list(queryset.exclude(state__in=TERMINAL_STATES).order_by("-created_at"))
        if not unfinished:
            messages.warning(request, "None of the selected operations is unfinished: nothing to cancel.")
            return None
        if not admin_confirm.confirmed(request):
            confirmation = Confirmation(
                title="Cancel the selected operations",
                lines=admin_confirm.bulk_stop_lines(unfinished, "Command Cancelled"),
                button=f"Yes, cancel {len(unfinished)} operation(s)",
                action_url=request.get_full_path(),
                back_url=request.get_full_path(),
                hidden=[("action", "cancel")]
                + [
                    (admin.helpers.ACTION_CHECKBOX_NAME, str(pk))
                    for pk in queryset.values_list("pk", flat=True)
                ],
            )
            return admin_confirm.render(request, self.admin_site.each_context(request), confirmation)
        done = 0
        for operation in unfinished:
            try:
                cancel_operation(operation, "cancelled from the console", self._actor(request))
                done += 1
            except REFUSALS as error:
                messages.error(request, f"{operation.pk}: " + "; ".join(refusal_messages(error)))
        messages.success(request, f"Cancelled {done} operation(s).")
        return None

    @admin.action(
        description="Re-run the failed devices (a new operation for each selected)", permissions=["add"]
    )
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        for operation in queryset[:20]:
            try:
                retry = services.rerun(operation, self._actor(request), console_requester(request))
                messages.success(request, f"{operation.pk}: re-running as {retry.pk}.")
            except REFUSALS as error:
                messages.error(request, f"{operation.pk}: " + "; ".join(refusal_messages(error)))


from operations import admin_headless, admin_templates  # noqa: E402,F401  (registers their screens)
