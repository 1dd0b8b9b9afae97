"""The console for command statuses: searchable by device, operation and state, with history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from commands.models import CommandHistory, CommandStatus
from inventory.scoping import TenantScopedAdmin


class HistoryInline(admin.TabularInline):
    model = CommandHistory
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "from_state", "to_state", "reason", "actor"]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CommandStatus)
class CommandStatusAdmin(TenantScopedAdmin):
    list_display = ["id", "command", "device", "operation", "state", "is_internal", "priority", "updated_on"]
    list_filter = ["state", "is_internal", "priority", "tenant"]
    search_fields = ["=device__device_id", "=operation__id", "=request_ref", "command"]
    list_select_related = ["device"]
    raw_id_fields = ["device", "operation"]
    inlines = [HistoryInline]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is too slow
    readonly_fields = [
        "tenant",
        "operation",
        "request_ref",
        "device",
        "command",
        "arguments",
        "state",
        "reason",
        "details",
        "is_internal",
        "priority",
        "not_before",
        "window_closes_at",
        "deadline",
        "dispatched_at",
        "delivered_at",
        "delivery_count",
        "version",
        "created_on",
        "updated_on",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # states move only through the service, which keeps the counters exact
