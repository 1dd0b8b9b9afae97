"""The console screens for tenants, API keys, devices and groups."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.api.authentication import forget_token
from inventory import services, tokens
from inventory.models import ApiKey, Device, Group, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """A key is made here like anywhere else (the service); its plain value is shown once."""

    list_display = [
        "name",
        "tenant",
        "role",
        "key_prefix",
        "is_active",
        "created_at",
        "last_used_at",
        "expires_at",
    ]
    list_filter = ["role", "tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="key")
    def key_prefix(self, key: ApiKey) -> str:
        return f"{tokens.API_KEY_KIND}_{key.prefix}_…"

    @admin.display(boolean=True)
    def is_active(self, key: ApiKey) -> bool:
        return key.is_active

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is None:
            return ["tenant", "name", "role", "expires_at"]
        return ["tenant", "name", "role", "expires_at", "prefix", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = tokens.issue(tokens.API_KEY_KIND)
        obj.prefix, obj.key_hash = issued.prefix, issued.hashed
        super().save_model(request, obj, form, change)
        messages.warning(request, f"New API key (copy it now, it is not shown again): {issued.plain}")

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            services.revoke_api_key(key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["name"]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["device_id", "name", "tenant", "os", "model", "state", "timezone", "last_seen"]
    list_filter = ["state", "os", "tenant", "token_revoked"]
    search_fields = ["device_id", "name", "serial"]
    readonly_fields = ["token_prefix", "last_seen", "created_at", "updated_at"]
    exclude = ["token_hash"]
    filter_horizontal = ["groups"]
    actions = ["rotate_token", "revoke_token"]
    show_full_result_count = False  # an exact COUNT(*) of millions of devices on every page is too slow

    def save_model(self, request: HttpRequest, obj: Device, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = tokens.issue(tokens.DEVICE_TOKEN_KIND)
        obj.token_prefix, obj.token_hash = issued.prefix, issued.hashed
        super().save_model(request, obj, form, change)
        messages.warning(request, f"Device token for {obj.device_id} (shown once): {issued.plain}")

    def delete_model(self, request: HttpRequest, obj: Device) -> None:
        services.delete_device(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        prefixes = list(queryset.values_list("token_prefix", flat=True))
        super().delete_queryset(request, queryset)
        for prefix in prefixes:
            forget_token(prefix)

    @admin.action(description="Rotate the device token (shows the new one once)")
    def rotate_token(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset[:50]:
            token = services.rotate_device_token(device)
            messages.warning(request, f"New token for {device.device_id}: {token}")

    @admin.action(description="Revoke the device token")
    def revoke_token(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            services.revoke_device_token(device)
        messages.success(request, f"Revoked {queryset.count()} device token(s).")


from inventory import admin_headless  # noqa: E402,F401
