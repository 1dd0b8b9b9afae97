"""The console screens for maintenance schedules and their run history."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.views.decorators.http import require_POST

from config.errors import DomainError
from config.quartz import QuartzError, QuartzExpression, describe
from inventory.scoping import TenantScopedAdmin
from maintenance import services
from maintenance.models import MaintenanceExecution, MaintenanceJob, Outcome


class MaintenanceJobForm(forms.ModelForm):
    class Meta:
        model = MaintenanceJob
        fields = ["tenant", "time_expression", "full_build", "active"]

    def clean_time_expression(self) -> str:
        value = str(self.cleaned_data["time_expression"]).strip()
        try:
            services.parse_expression(value)
        except DomainError as err:
            raise ValidationError(err.errors["time_expression"]) from None
        return value

    def clean(self) -> dict[str, Any]:
        """The API's limits: a full build's floor and the tenant's number of jobs.

        Checked when the expression or ``full_build`` changes (and the number on an add), as
        ``services.update_job`` does, so an older job can still be switched on or off. The
        admin saves in a transaction, which :func:`services.check_room`'s row lock needs.
        """
        cleaned: dict[str, Any] = super().clean() or {}
        adding = self.instance._state.adding
        try:
            text = cleaned.get("time_expression")
            if text and (adding or {"time_expression", "full_build"} & set(self.changed_data)):
                services.check_frequency(QuartzExpression.parse(text), bool(cleaned.get("full_build")))
            tenant = cleaned.get("tenant")
            if adding and tenant is not None:
                services.check_room(tenant.pk)
        except DomainError as err:
            for field, reasons in err.errors.items():
                self.add_error(_FORM_FIELDS.get(field, field), list(reasons))
        return cleaned


#: The API's names of the fields a refusal names, as this form calls them.
_FORM_FIELDS = {"orgId": "tenant"}


class MaintenanceExecutionInline(admin.TabularInline):
    """Run history, newest first; written only by runs."""

    model = MaintenanceExecution
    extra = 0
    can_delete = False
    ordering = ["-started_at"]
    fields = (
        "scheduled_for",
        "manual",
        "started_at",
        "finished_at",
        "outcome",
        "full_build",
        "changed_since",
        "operations_checked",
        "counts_fixed",
        "commands_timed_out",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MaintenanceJob)
class MaintenanceJobAdmin(TenantScopedAdmin):
    """Every change goes through ``maintenance.services`` so beat's entry stays in step."""

    form = MaintenanceJobForm
    list_display = [
        "id",
        "tenant",
        "time_expression",
        "description",
        "active",
        "full_build",
        "next_fire",
        "latest_run",
        "created_by_user",
        "created_at",
    ]
    list_filter = ["active", "full_build", "tenant"]
    search_fields = ["id", "time_expression", "created_by_user"]
    readonly_fields = [
        "description",
        "next_fire_times",
        "created_by_user",
        "created_at",
        "last_fire",
        "periodic_task",
    ]
    inlines = [MaintenanceExecutionInline]
    actions = ["activate", "deactivate", "run_now"]
    change_form_template = "admin/maintenance/maintenancejob/change_form.html"

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/run-now/",
                wrap(require_POST(self.run_now_view)),
                name="maintenance_job_run_now",
            ),
            *super().get_urls(),
        ]

    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        self.run_now(request, MaintenanceJob.objects.filter(pk=job.pk))
        return HttpResponseRedirect(reverse("admin:maintenance_maintenancejob_change", args=[job.pk]))

    @admin.display(description="latest run")
    def latest_run(self, job: MaintenanceJob) -> str:
        execution = job.executions.order_by("-started_at").first()
        if execution is None:
            return "-"
        return f"{execution.outcome} at {execution.started_at:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="meaning")
    def description(self, job: MaintenanceJob) -> str:
        return describe(job.time_expression) if job.time_expression else "-"

    @admin.display(description="next fire (UTC)")
    def next_fire(self, job: MaintenanceJob) -> Any:
        return services.next_fire(job) or "-"

    @admin.display(description="next five fires (UTC)")
    def next_fire_times(self, job: MaintenanceJob) -> str:
        if not job.time_expression:
            return "-"
        try:
            fires = QuartzExpression.parse(job.time_expression).next_fire_times(timezone.now(), count=5)
        except QuartzError as err:
            return str(err)
        suffix = "" if job.active else " (inactive: these will not run)"
        return format_html_join(
            "", "<div>{}{}</div>", ((fire.strftime("%Y-%m-%d %H:%M:%S %Z %a"), suffix) for fire in fires)
        )

    def save_model(self, request: HttpRequest, obj: MaintenanceJob, form: Any, change: bool) -> None:
        if not change:
            obj.created_by_user = getattr(request.user, "username", "") or "admin"
        super().save_model(request, obj, form, change)
        services.sync_periodic_task(obj)

    def delete_model(self, request: HttpRequest, obj: MaintenanceJob) -> None:
        services.delete_job(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MaintenanceJob]) -> None:
        for job in queryset:
            services.delete_job(job)

    @admin.action(description="Activate the selected schedules")
    def activate(self, request: HttpRequest, queryset: QuerySet[MaintenanceJob]) -> None:
        for job in queryset:
            services.set_active(job, True)
        messages.success(request, f"Activated {len(queryset)} schedule(s).")

    @admin.action(description="Deactivate the selected schedules")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[MaintenanceJob]) -> None:
        for job in queryset:
            services.set_active(job, False)
        messages.success(request, f"Deactivated {len(queryset)} schedule(s).")

    @admin.action(description="Run now (in this request; a full build of a big fleet takes a while)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[MaintenanceJob]) -> None:
        for job in queryset[:10]:
            execution = services.run_now(job)
            level = messages.SUCCESS if execution.outcome == Outcome.SUCCESS else messages.ERROR
            messages.add_message(
                request,
                level,
                f"{job.pk}: {execution.outcome}; {execution.operations_checked} operation(s) checked, "
                f"{execution.counts_fixed} counter(s) fixed, {execution.commands_timed_out} command(s) "
                f"timed out{'; ' + execution.error if execution.error else ''}",
            )
