"""Who may use the operators' console for which tenant."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from inventory.models.tenants import Tenant


class ConsoleUser(models.Model):
    """A staff user's tenant: the console shows them that tenant's objects and nothing else.

    Superusers need none (they see every tenant); a staff user without one sees nothing.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="console_users")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]
        verbose_name = "console user"

    def __str__(self) -> str:
        return f"{self.user} ({self.tenant})"
