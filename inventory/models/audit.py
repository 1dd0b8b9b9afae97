"""Who wrote what, when, from where: one row per write by an API key or a console user."""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """Written once per unsafe request (``inventory.audit``), never changed afterwards.

    Device status reports are not recorded here: they are the hot path, and each state change
    already leaves a ``commands.CommandHistory`` row naming the device.
    """

    class ActorKind(models.TextChoices):
        KEY = "key", "API key"
        CONSOLE = "console", "Console user"
        #: The system itself: an approval that expired undecided (``operations.approvals``).
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    tenant = models.ForeignKey(
        "inventory.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor = models.CharField(max_length=200, help_text="The key's name or prefix, or the user name.")
    key_id = models.UUIDField(null=True, blank=True)
    user_id = models.IntegerField(null=True, blank=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=200, blank=True)
    status_code = models.PositiveSmallIntegerField()
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.actor} {self.method} {self.path} → {self.status_code}"
