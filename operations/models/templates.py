"""Operation templates (contract section 12): an operation kept for re-use, with typed parameters."""

from __future__ import annotations

import uuid

from django.db import models

from operations.choices import OperationType, ScheduleType


class OperationTemplate(models.Model):
    """What an operation needs, stored to make many operations from (``operations.templates``).

    ``arguments`` may hold ``{{name}}`` placeholders of ``parameters``. An operation made from
    it copies every field at that moment, so changing the template never changes it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(
        "inventory.Tenant", on_delete=models.CASCADE, related_name="operation_templates"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    operation_type = models.CharField(max_length=64, choices=OperationType.choices)
    arguments = models.JSONField(default=dict, blank=True)
    #: ``{"<name>": {"type", "default", "required", "description"}}`` (``operations.templates``).
    parameters = models.JSONField(default=dict, blank=True)
    rollout = models.JSONField(null=True, blank=True)
    schedule_type = models.CharField(max_length=16, choices=ScheduleType.choices, null=True, blank=True)
    schedule_args = models.JSONField(null=True, blank=True)
    device_query = models.JSONField(null=True, blank=True)
    created_by = models.CharField(max_length=200, blank=True)
    updated_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="operations_template_unique_name")
        ]

    def __str__(self) -> str:
        return self.name
