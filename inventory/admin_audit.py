"""The audit log in the console: superusers read it; nobody adds, changes or deletes a row."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from inventory.models import AuditEntry
from inventory.scoping import SuperuserOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(SuperuserOnlyAdmin):
    list_display = ["created_at", "actor_kind", "actor", "method", "path", "status_code", "tenant", "ip"]
    list_filter = ["actor_kind", "method", "status_code", "tenant"]
    search_fields = ["actor", "path", "object_id", "ip"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [field.name for field in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
