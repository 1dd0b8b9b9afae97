"""Who is calling: an API key of a tenant, or one device with its own token."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, set as both ``request.user`` and ``request.auth``.

    Views read the tenant from here and nowhere else, so tenant scoping has one source.
    """

    tenant_id: int
    kind: str  # "key" or "device"
    role: str  # admin, operator, viewer, or "device"
    label: str  # what ``created_by`` records
    key_id: str | None = None
    device_pk: int | None = None
    device_id: str | None = None

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    @property
    def identity(self) -> str:
        """Who this is, as one principal among others (``key:<id>``, ``device:<id>``): what
        the four-eyes rule compares, and whose idempotency keys a request may use (a kept
        answer may hold a secret shown once: CONTRACT §11). The label is a key's name, which
        two keys may share."""
        return f"key:{self.key_id}" if self.kind == "key" else f"device:{self.device_id}"

    @property
    def is_admin(self) -> bool:
        return self.kind == "key" and self.role == "admin"

    @property
    def is_device(self) -> bool:
        return self.kind == "device"

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "operator", "device")
