"""Managed devices and the groups operators sort them into."""

from __future__ import annotations

import uuid
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models

from inventory.models.tenants import Tenant


def validate_timezone(value: str) -> None:
    """Accept only IANA zone names, so window arithmetic never meets an unknown zone."""
    if value not in available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone name (for example 'Europe/Berlin')")


_ZONES: frozenset[str] | None = None
#: Files of the zone database that are no place on Earth: ``Factory`` is tzdata's "zone not
#: set yet" (``-00``), ``localtime`` a link some systems add to whatever the machine's clock
#: is set to (so it differs from server to server), ``posixrules`` the POSIX TZ default rule.
PSEUDO_ZONES = frozenset({"Factory", "localtime", "posixrules"})
#: Copies of the whole database under another name (POSIX-only, and leap-second "right" time).
_PSEUDO_PREFIXES = ("posix/", "right/")


def available_timezones() -> frozenset[str]:
    """The IANA zone names a device, an operation or the console may use, read once."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(
            zone
            for zone in zoneinfo.available_timezones()
            if zone not in PSEUDO_ZONES and not zone.startswith(_PSEUDO_PREFIXES)
        )
    return _ZONES


class DeviceState(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"


class Group(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"], name="%(app_label)s_%(class)s_unique_tenant_name"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Device(models.Model):
    """A managed device. ``device_id`` is the public id (client-chosen or a UUID).

    The integer primary key stays internal: it keeps the per-device command rows and
    their indexes small, which matters with millions of them.
    """

    # No index of its own: the unique (tenant, device_id) index serves every lookup by tenant,
    # and one index less makes a 100,000-device import about 0.6 s faster. No database
    # constraint either: PostgreSQL checks it row by row at COMMIT, 1.4 s of a 100,000-device
    # import (cProfile of bulk_import_devices). Devices are only written with the caller's
    # tenant, and deleting a tenant deletes its devices through Django's collector.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="devices", db_index=False, db_constraint=False
    )
    device_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    serial = models.CharField(max_length=128, blank=True)
    model = models.CharField(max_length=128, blank=True)
    os = models.CharField(max_length=32, blank=True)
    os_version = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=DeviceState.choices, default=DeviceState.ACTIVE)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    tags = models.JSONField(default=list, blank=True)
    groups = models.ManyToManyField(Group, related_name="devices", blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    token_prefix = models.CharField(max_length=32, editable=False)  # unique: see Meta.constraints
    token_hash = models.CharField(max_length=64, editable=False)
    token_revoked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "device_id"], name="%(app_label)s_%(class)s_unique_tenant_device_id"
            ),
            # A constraint rather than unique=True, which would add a second, LIKE-only index
            # on PostgreSQL that no query uses and every insert pays for.
            models.UniqueConstraint(
                fields=["token_prefix"], name="%(app_label)s_%(class)s_unique_token_prefix"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "os"], name="inventory_device_tenant_os"),
            # GET /v0/devices/ pages a tenant's devices by key (offset and cursor): 1.0 s at
            # offset 999,980 walking the primary key and reading every row (issue 17).
            models.Index(fields=["tenant", "id"], name="inventory_device_tenant_id"),
            # The console's device search by id, exact or by its start (``LIKE 's\_4242%'``), and
            # a superuser's lookups by device id across tenants (``device_id IN (...)``): a scan of
            # a million devices, 850 ms, without it (issue 26). The pattern operator class serves
            # LIKE prefixes under any collation, and equality.
            models.Index(
                fields=["device_id"], opclasses=["varchar_pattern_ops"], name="inventory_device_id_prefix"
            ),
        ]

    def __str__(self) -> str:
        return self.device_id


def new_device_id() -> str:
    return str(uuid.uuid4())
