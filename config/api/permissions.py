"""Role checks shared by every API view."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from config.api.principal import Principal


class RolePermission(BasePermission):
    """Viewers read, operators and admins write, device tokens reach only device endpoints.

    A view opts in to device tokens with ``allow_device_tokens = True``; it then scopes
    its own objects to the device (see ``ApiViewMixin.scope_to_device``).
    """

    message = "Your key's role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            return False
        if principal.is_device:
            if not getattr(view, "allow_device_tokens", False):
                self.message = "A device token can only reach the device's inbox and its command statuses."
                return False
            return request.method in SAFE_METHODS or request.method in getattr(
                view, "device_write_methods", ("PUT", "PATCH")
            )
        if request.method in SAFE_METHODS or getattr(view, "action", None) in getattr(
            view, "read_only_actions", ()
        ):
            return True
        self.message = f"The '{principal.role}' role is read-only."
        return principal.can_write
