"""The console screens for headless operations: list, upcoming runs, detail and a cancel action.

Operations are scheduled through the API; here operators follow and cancel them, through
the same service as ``POST .../{id}/cancel/``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.console.filters import ValuesDropdownFilter
from inventory.admin import device_link
from inventory.scoping import TenantScopedAdmin
from operations import headless
from operations.models import HeadlessOperation, HeadlessStatus, UpcomingHeadlessRun


@admin.register(HeadlessOperation)
class HeadlessOperationAdmin(TenantScopedAdmin):
    list_display = [
        "id",
        "device_column",
        "tenant",
        "operation_type",
        "status",
        "priority",
        "scheduled_at",
        "updated_at",
    ]
    list_filter = ["status", "priority", ("device__tenant", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "device__device_id"]
    list_select_related = ["device__tenant", "tenant"]
    date_hierarchy = "scheduled_at"
    ordering = ["-created_at"]
    actions = ["cancel"]
    readonly_fields = [
        "id",
        "tenant",
        "device_column",
        "operation_type",
        "scheduled_at",
        "parameters",
        "priority",
        "status",
        "command",
        "reason",
        "attempts",
        "claimed_at",
        "created_at",
        "updated_at",
        "created_by",
    ]

    exclude = ["device"]  # shown as a link by the device's id (device_column), not its integer key

    @admin.display(description="device", ordering="device__device_id")
    def device_column(self, operation: HeadlessOperation) -> str:
        return device_link(operation.device)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The detail page is read-only; status moves only through the services.
        return False

    @admin.action(description="Cancel the selected operations (and their device commands)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[HeadlessOperation]) -> None:
        actor = f"admin:{getattr(request.user, 'username', '')}"
        counts = headless.cancel_many(queryset.order_by("pk"), reason="cancelled by an operator", actor=actor)
        messages.success(request, f"Cancelled {counts['cancelled']} operation(s).")
        if counts["refused"]:
            messages.warning(request, f"{counts['refused']} had finished already and were left as they were.")


@admin.register(UpcomingHeadlessRun)
class UpcomingHeadlessRunAdmin(HeadlessOperationAdmin):
    """Scheduled runs only, the soonest first: what the sweep will hand to devices next."""

    list_display = [
        "id",
        "device_column",
        "tenant",
        "operation_type",
        "scheduled_at",
        "priority",
        "created_by",
    ]
    list_filter = [
        "priority",
        ("operation_type", ValuesDropdownFilter),
        ("device__tenant", admin.RelatedOnlyFieldListFilter),
    ]
    ordering = ["scheduled_at", "id"]
    date_hierarchy = None  # type: ignore[assignment]

    def get_queryset(self, request: HttpRequest) -> QuerySet[HeadlessOperation]:
        # Served by the partial index headless_due (status = 'scheduled', by scheduled_at).
        return super().get_queryset(request).filter(status=HeadlessStatus.SCHEDULED)
