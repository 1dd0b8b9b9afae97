"""The console for command statuses: searchable by device, operation and state, with history."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from commands.choices import CommandState
from commands.models import CommandHistory, CommandStatus
from config.console.paging import EstimatedCountPaginator
from inventory.admin import device_link, device_panels
from inventory.models import Device
from inventory.scoping import TenantScopedAdmin

#: How the console writes a time: one format, the zone shown (the console runs in UTC).
CONSOLE_TIME = "%Y-%m-%d %H:%M:%S UTC"


def console_time(value: dt.datetime | None) -> str:
    """``value`` in UTC as :data:`CONSOLE_TIME`; empty for no time."""
    return value.astimezone(dt.UTC).strftime(CONSOLE_TIME) if value is not None else ""


#: Commands listed on a device's page, newest first.
DEVICE_COMMANDS_SHOWN = 20


def _utc(name: str, label: str) -> Any:
    """A read-only display of the datetime field ``name`` as :data:`CONSOLE_TIME` (Django's
    own format would be "Dec. 1, 2026, 4:25 p.m.", without the zone)."""

    @admin.display(description=label, ordering=name)
    def show(self: Any, row: Any) -> str:
        return console_time(getattr(row, name)) or "-"

    return show


class HistoryInline(admin.TabularInline):
    model = CommandHistory
    extra = 0
    can_delete = False
    readonly_fields = ["at", "from_state", "to_state", "reason", "actor"]
    fields = tuple(readonly_fields)
    at = _utc("created_at", "at")

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
    list_select_related = ["device__tenant", "operation"]  # each row shows its operation: no query per row
    raw_id_fields = ["operation"]
    exclude = ["device"]  # shown as a link by the device's id (device_column), not its integer key
    inlines = [HistoryInline]
    show_full_result_count = False  # a COUNT(*) over millions of rows on every page is too slow
    paginator = EstimatedCountPaginator  # the filtered count too, beyond COUNT_ESTIMATE_THRESHOLD
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
        "scheduled_for",
        "not_before_utc",
        "window_closes_utc",
        "deadline_utc",
        "dispatched_utc",
        "delivered_utc",
        "delivery_count",
        "version",
        "created_utc",
        "updated_utc",
    ]
    # Only these: view-only, the admin would add every model field again in its own format.
    fields = tuple(readonly_fields)
    not_before_utc = _utc("not_before", "not before")
    window_closes_utc = _utc("window_closes_at", "window closes at")
    deadline_utc = _utc("deadline", "deadline")
    dispatched_utc = _utc("dispatched_at", "dispatched at")
    delivered_utc = _utc("delivered_at", "delivered at")
    created_utc = _utc("created_on", "created on")
    updated_utc = _utc("updated_on", "updated on")

    @admin.display(description="device", ordering="device__device_id")
    def device_column(self, command: CommandStatus) -> str:
        return device_link(command.device)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="window opens")
    def scheduled_for(self, command: CommandStatus) -> str:
        """What the API's ``scheduled_for`` says: when a Scheduled command will be handed out."""
        return scheduled_for(command) or "-"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # states move only through the service, which keeps the counters exact


def scheduled_for(command: CommandStatus) -> str:
    """When a Scheduled command's window opens, as the console writes times; empty otherwise."""
    if command.state != CommandState.SCHEDULED or command.not_before is None:
        return ""
    return console_time(command.not_before)


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
                console_time(c.updated_on),
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
