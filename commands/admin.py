"""The console for command statuses: searchable by device, operation and state, with history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from commands.models import CommandHistory, CommandStatus
from inventory.admin import device_link, device_panels
from inventory.models import Device
from inventory.scoping import TenantScopedAdmin

#: Commands listed on a device's page, newest first.
DEVICE_COMMANDS_SHOWN = 20


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
    list_display = [
        "id",
        "command",
        "device_column",
        "operation",
        "state",
        "is_internal",
        "priority",
        "updated_on",
    ]
    list_filter = ["state", "is_internal", "priority", "tenant"]
    search_fields = ["=device__device_id", "=operation__id", "=request_ref", "command"]
    list_select_related = ["device__tenant"]
    raw_id_fields = ["operation"]
    exclude = ["device"]  # shown as a link by the device's id (device_column), not its integer key
    inlines = [HistoryInline]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is too slow
    readonly_fields = [
        "tenant",
        "operation",
        "request_ref",
        "device_column",
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

    @admin.display(description="device", ordering="device__device_id")
    def device_column(self, command: CommandStatus) -> str:
        return device_link(command.device)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # states move only through the service, which keeps the counters exact


def latest_commands(device: Device) -> str:
    """The device's newest commands, each linking to its status and history."""
    commands = (CommandStatus.objects.filter(device=device).select_related("operation").order_by("-id"))[
        :DEVICE_COMMANDS_SHOWN
    ]
    rows = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        (
            (
                reverse("admin:commands_commandstatus_change", args=[c.pk]),
                c.command,
                c.get_state_display(),
                c.request or "-",
                c.reason or "",
                c.updated_on.strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
            for c in commands
        ),
    )
    if not rows:
        return "no commands yet"
    listing = reverse("admin:commands_commandstatus_changelist")
    return format_html(
        '<table class="device-commands"><thead><tr><th>command</th><th>state</th><th>request</th>'
        "<th>reason</th><th>updated</th></tr></thead><tbody>{}</tbody></table>"
        '<p><a href="{}?q={}">all commands of this device</a></p>',
        rows,
        listing,
        device.device_id,
    )


if latest_commands not in device_panels:
    device_panels.append(latest_commands)
