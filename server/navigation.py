"""The console's sections, by the operator's tasks (``CONSOLE_NAVIGATION``): the work first
(operations, devices, templates, maintenance, webhooks), then the settings; the libraries'
and Django's own tables last, under "Advanced" (``config.console.navigation.arrange``)."""

from __future__ import annotations

from config.console.navigation import Link, Section

OPERATION = "operations.Operation"

SECTIONS = (
    Section(
        "Operations",
        (
            Link("Active", OPERATION, query="status=active", add=True),
            Link("Failing now", OPERATION, url="admin:operations_operation_failing"),
            Link("Waiting for approval", OPERATION, url="admin:operations_operation_approvals"),
            Link("Scheduled and recurring", OPERATION, query="status=scheduled"),
            Link("Finished", OPERATION, query="status=finished"),
            Link("All operations", OPERATION),
            Link("Headless operations", "operations.HeadlessOperation", add=True),
            Link("Upcoming headless runs", "operations.UpcomingHeadlessRun"),
        ),
    ),
    Section(
        "Devices",
        (
            Link("Devices", "inventory.Device", add=True),
            Link("Device groups", "inventory.Group", add=True),
            Link("Command statuses", "commands.CommandStatus"),
        ),
    ),
    Section("Templates", (Link("Operation templates", "operations.OperationTemplate", add=True),)),
    Section("Maintenance", (Link("Maintenance jobs", "maintenance.MaintenanceJob", add=True),)),
    Section("Webhooks", (Link("Webhook endpoints", "inventory.WebhookEndpoint", add=True),)),
    Section(
        "Settings",
        (
            Link("API keys", "inventory.ApiKey", add=True),
            Link("Approval policies", "operations.ApprovalPolicy", add=True),
            Link("Tenants", "inventory.Tenant", add=True),
            Link("Console users", "inventory.ConsoleUser", add=True),
            Link("Users", "auth.User", add=True),
            Link("User groups", "auth.Group", add=True),
            Link("Audit log", "inventory.AuditEntry"),
        ),
    ),
)
