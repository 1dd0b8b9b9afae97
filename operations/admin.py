"""The operators' console for operations: state, progress, activity, cancel."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from rest_framework.exceptions import ValidationError

from console.scoping import TenantScopedAdmin
from operations.choices import TERMINAL_STATES
from operations.models import Operation, OperationActivity
from operations.services import cancel_operation


class ActivityInline(admin.TabularInline):
    model = OperationActivity
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "operation_state", "reason", "actor", "counts"]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
    return format_html(
        '<span class="op-progress" style="display:inline-block;width:160px;background:#e0e0e0">{}</span> '
        "{} ok / {} failed / {} pending of {}",
        segments,
        operation.success_count,
        operation.failed_count + operation.dispatch_failed_count,
        operation.pending_count,
        operation.resolved_count,
    )


@admin.register(Operation)
class OperationAdmin(TenantScopedAdmin):
    list_display = ["id", "operation_type", "tenant", "state_badge", "progress", "created_by", "created_at"]
    list_filter = ["state", "operation_type", "schedule_type", "tenant"]
    search_fields = ["id", "created_by", "reason"]
    date_hierarchy = "created_at"
    inlines = [ActivityInline]
    actions = ["cancel"]
    readonly_fields = [
        "id",
        "tenant",
        "operation_type",
        "state_badge",
        "progress",
        "schedule_type",
        "schedule_args",
        "device_query",
        "arguments",
        "reason",
        "counts",
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # operations are created through the API (and its service), with their validation

    @admin.display(description="state", ordering="state")
    def state_badge(self, operation: Operation) -> str:
        return operation.state_name

    @admin.display(description="progress")
    def progress(self, operation: Operation) -> str:
        return progress_bar(operation)

    @admin.display(description="counts")
    def counts(self, operation: Operation) -> str:
        return ", ".join(f"{name}: {value}" for name, value in operation.counts().items())

    @admin.action(description="Cancel the selected operations")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Operation]) -> None:
        done = 0
        for operation in queryset.exclude(state__in=TERMINAL_STATES):
            try:
                cancel_operation(operation, "cancelled from the console", request.user.get_username())
                done += 1
            except ValidationError as error:
                messages.error(request, f"{operation.pk}: {error.detail}")
        messages.success(request, f"Cancelled {done} operation(s).")
