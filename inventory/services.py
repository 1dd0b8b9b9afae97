"""What the system does with tenants, keys and devices; called by the API, the admin and
the management commands alike."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from config.errors import Conflict, DomainError
from inventory import broker_logins, changes, events, tokens
from inventory.authentication import forget_token
from inventory.device_rows import clean_device_row
from inventory.models import ApiKey, Device, EventType, Group, Role, Tenant

# Rows per progress report of a bulk import. The rows stream in one COPY, so the size does
# not change the speed.
BULK_BATCH_SIZE = 5_000


# --- tenants and keys ---------------------------------------------------------------------------


def get_or_create_tenant(slug: str, name: str = "") -> tuple[Tenant, bool]:
    return Tenant.objects.get_or_create(slug=slug, defaults={"name": name or slug})


def create_api_key(
    tenant: Tenant, role: str, name: str = "", expires_at: dt.datetime | None = None
) -> tuple[ApiKey, str]:
    """Make a key (optionally one that stops at ``expires_at``); the plain key is returned
    once and never stored."""
    if role not in Role.values:
        raise ValueError(f"role must be one of {', '.join(Role.values)}")
    issued = tokens.issue(tokens.API_KEY_KIND)
    key = ApiKey.objects.create(
        tenant=tenant,
        role=role,
        name=name,
        expires_at=expires_at,
        prefix=issued.prefix,
        key_hash=issued.hashed,
    )
    return key, issued.plain


def revoke_api_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    forget_token(key.prefix)


@transaction.atomic
def rotate_api_key(key: ApiKey, grace_seconds: int = 0) -> tuple[ApiKey, str]:
    """A new key with the same tenant, role, name and expiry; the old one stops at once, or
    expires after ``grace_seconds`` so its clients can move over. The plain key is returned once."""
    if key.revoked_at is not None:
        raise ValueError(f"{key} is revoked; make a new key instead")
    new_key, plain = create_api_key(key.tenant, key.role, key.name, expires_at=key.expires_at)
    if grace_seconds <= 0:
        revoke_api_key(key)
    else:
        until = timezone.now() + dt.timedelta(seconds=grace_seconds)
        if key.expires_at is None or until < key.expires_at:
            ApiKey.objects.filter(pk=key.pk).update(expires_at=until)
        forget_token(key.prefix)  # the cached lookup carries the old expiry
    return new_key, plain


# --- devices ------------------------------------------------------------------------------------


def resolve_groups(tenant_id: int, names_or_ids: Sequence[str]) -> list[Group]:
    """Groups by id or name within the tenant; an unknown one is a 400 naming it."""
    ids = [value for value in names_or_ids if _is_uuid(value)]
    found = list(Group.objects.filter(Q(tenant_id=tenant_id) & (Q(name__in=names_or_ids) | Q(pk__in=ids))))
    known = {g.name for g in found} | {str(g.pk) for g in found}
    missing = [value for value in names_or_ids if value not in known]
    if missing:
        raise DomainError({"groups": [f"unknown group: {', '.join(missing[:20])}"]}, code="not_found_group")
    return found


#: The database's own guard of a group's name (``Group.Meta.constraints``).
GROUP_NAME_CONSTRAINT = "inventory_group_unique_tenant_name"


def _group_exists(name: str) -> Conflict:
    return Conflict({"name": [f"a group named {name!r} already exists"]}, code="group_exists")


def save_group(tenant_id: int, data: dict[str, Any], group: Group | None = None) -> Group:
    """Create a group of the tenant (``group`` None) or change one; a name another group of
    the tenant has is a :class:`Conflict` (409 ``group_exists``, as a device id taken is), not a
    malformed request. The unique constraint decides a race between two saves of one name."""
    name = data.get("name")
    if name is not None:
        clash = Group.objects.filter(tenant_id=tenant_id, name=name)
        if group is not None:
            clash = clash.exclude(pk=group.pk)
        if clash.exists():
            raise _group_exists(name)
    target = group if group is not None else Group(tenant_id=tenant_id)
    for field_name, value in data.items():
        setattr(target, field_name, value)
    try:
        with transaction.atomic():
            target.save()
    except IntegrityError as error:
        if GROUP_NAME_CONSTRAINT in str(error):
            raise _group_exists(str(name)) from None
        raise
    return target


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@transaction.atomic
def create_device(tenant_id: int, data: dict[str, Any]) -> tuple[Device, str]:
    """Create one device from cleaned fields; returns it with its plain token."""
    fields = dict(data)
    groups = fields.pop("groups", None)
    fields.setdefault("device_id", str(uuid.uuid4()))
    fields["name"] = fields.get("name") or fields["device_id"]
    if Device.objects.filter(tenant_id=tenant_id, device_id=fields["device_id"]).exists():
        raise Conflict(
            {"id": [f"a device with id {fields['device_id']!r} already exists"]}, code="device_exists"
        )
    issued = tokens.issue(tokens.DEVICE_TOKEN_KIND)
    device = Device.objects.create(
        tenant_id=tenant_id, token_prefix=issued.prefix, token_hash=issued.hashed, **fields
    )
    if groups:
        device.groups.set(resolve_groups(tenant_id, groups))
    events.emit_devices(tenant_id, EventType.DEVICE_CREATED, pks=[device.pk])
    changes.changed(tenant_id)
    return device, issued.plain


@transaction.atomic
def update_device(device: Device, data: dict[str, Any]) -> Device:
    fields = dict(data)
    groups = fields.pop("groups", None)
    new_id = fields.get("device_id")
    if (
        new_id
        and new_id != device.device_id
        and Device.objects.filter(tenant_id=device.tenant_id, device_id=new_id).exists()
    ):
        raise Conflict({"id": [f"a device with id {new_id!r} already exists"]}, code="device_exists")
    # A rename or a change of state changes the device's broker login (its name, whether it
    # may log in): the old name is read before the save, the new one after.
    login_changes = any(
        name in fields and fields[name] != getattr(device, name) for name in ("device_id", "state")
    )
    if login_changes:
        broker_logins.follow([device.pk])
    for name, value in fields.items():
        setattr(device, name, value)
    device.save()
    if login_changes:
        broker_logins.follow([device.pk])
    if groups is not None:
        device.groups.set(resolve_groups(device.tenant_id, groups))
    changes.changed(device.tenant_id)
    return device


@transaction.atomic
def rotate_device_token(device: Device) -> str:
    """Give the device a new token; the old one stops working at once, and so does the broker
    password derived from it (within seconds, after commit)."""
    issued = tokens.issue(tokens.DEVICE_TOKEN_KIND)
    old_prefix = device.token_prefix
    Device.objects.filter(pk=device.pk).update(
        token_prefix=issued.prefix, token_hash=issued.hashed, token_revoked=False, updated_at=timezone.now()
    )
    broker_logins.follow([device.pk])
    forget_token(old_prefix)
    device.token_prefix, device.token_hash, device.token_revoked = issued.prefix, issued.hashed, False
    return issued.plain


@transaction.atomic
def revoke_device_token(device: Device) -> None:
    Device.objects.filter(pk=device.pk).update(token_revoked=True, updated_at=timezone.now())
    broker_logins.follow([device.pk])  # its broker login is disabled too
    device.token_revoked = True
    forget_token(device.token_prefix)


def delete_device(device: Device) -> None:
    """Delete a device; its token stops working at once, not when its cached lookup expires.
    ``device.deleted`` shows the device as it was, so it is written before the row goes."""
    with transaction.atomic():
        events.emit_devices(device.tenant_id, EventType.DEVICE_DELETED, pks=[device.pk])
        broker_logins.follow([device.pk])  # its broker login is deleted after commit
        device.delete()
    forget_token(device.token_prefix)


def emit_deleted_devices(devices: QuerySet[Device]) -> None:
    """``device.deleted`` for each of ``devices`` (the console's bulk delete), before they go,
    and their broker logins deleted after commit; call in the deleting transaction."""
    broker_logins.follow(devices)
    by_tenant: dict[int, list[int]] = {}
    for pk, tenant_id in devices.values_list("pk", "tenant_id"):
        by_tenant.setdefault(tenant_id, []).append(pk)
    for tenant_id, pks in by_tenant.items():
        events.emit_devices(tenant_id, EventType.DEVICE_DELETED, pks=pks)


@dataclass
class BulkResult:
    created: list[tuple[str, str]] = field(default_factory=list)  # (device id, plain token)
    skipped: list[str] = field(default_factory=list)


def validate_device_rows(
    rows: Iterable[Any], first_index: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Clean every row; errors are keyed by the row's index (``"rows[12]"``)."""
    cleaned: list[dict[str, Any]] = []
    errors: dict[str, Any] = {}
    seen: set[str] = set()
    for index, raw in enumerate(rows, start=first_index):
        clean, row_errors = clean_device_row(raw)
        device_id = clean.get("device_id")
        if device_id is not None:
            if device_id in seen:
                row_errors.setdefault("id", []).append(f"duplicate id {device_id!r} in this import")
            seen.add(device_id)
        if row_errors:
            if len(errors) < 100:
                errors[f"rows[{index}]"] = row_errors
            else:
                errors.setdefault("truncated", ["more rows have errors; only the first 100 are listed"])
        cleaned.append(clean)
    return cleaned, errors


@transaction.atomic
def bulk_import_devices(
    tenant_id: int,
    rows: list[dict[str, Any]],
    on_conflict: str = "error",
    progress: Callable[[int], object] | None = None,
) -> BulkResult:
    """Write already-cleaned devices as a set (COPY on PostgreSQL), all or nothing.

    ``on_conflict``: ``error`` refuses the whole import if an id exists already,
    ``skip`` leaves existing devices untouched and imports the rest.

    Measured with 100,000 devices on 2 CPUs (docs/performance.md): the COPY, with the
    index upkeep it causes, is most of the time; tokens are made while it streams, so the
    hashing overlaps with the database's work.
    """
    result = BulkResult()
    for row in rows:
        if "device_id" not in row:
            row["device_id"] = str(uuid.uuid4())
    existing = _existing_device_ids(tenant_id, [row["device_id"] for row in rows])
    if existing and on_conflict == "error":
        shown = ", ".join(sorted(existing)[:20])
        raise DomainError(
            {"id": [f"{len(existing)} device id(s) already exist: {shown}"]}, code="device_exists"
        )
    if existing:
        result.skipped = sorted(existing)
        rows = [row for row in rows if row["device_id"] not in existing]

    group_names = sorted({name for row in rows for name in row.get("groups") or ()})
    groups = {g.name: g for g in resolve_groups(tenant_id, group_names)} if group_names else {}
    groups.update({str(g.pk): g for g in list(groups.values())})

    now = timezone.now()

    def records() -> Iterator[tuple[Any, ...]]:
        """One row per device, its token made as the COPY consumes it."""
        issued = tokens.issue_many(tokens.DEVICE_TOKEN_KIND, len(rows))
        for row, (plain, prefix, hashed) in zip(rows, issued, strict=True):
            result.created.append((row["device_id"], plain))
            yield (
                tenant_id,
                row["device_id"],
                row.get("name") or row["device_id"],
                row.get("serial", ""),
                row.get("model", ""),
                row.get("os", ""),
                row.get("os_version", ""),
                row.get("state", "active"),
                row.get("timezone", "UTC"),
                row.get("tags", []),
                prefix,
                hashed,
                now,
            )

    _write_devices(records(), progress)

    members: dict[str, list[str]] = {}
    for row in rows:
        for name in row.get("groups") or ():
            members.setdefault(str(groups[name].pk), []).append(row["device_id"])
    for group_id, device_ids in members.items():
        _add_to_group(tenant_id, group_id, device_ids)
    if rows:
        events.emit_devices(
            tenant_id, EventType.DEVICE_CREATED, device_ids=[row["device_id"] for row in rows]
        )
        changes.changed(tenant_id)
    return result


def _existing_device_ids(tenant_id: int, device_ids: list[str]) -> set[str]:
    # One array parameter: Django's __in would bind 100,000 parameters, ~10x slower.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT device_id FROM {Device._meta.db_table} WHERE tenant_id = %s AND device_id = ANY(%s)",
            [tenant_id, device_ids],
        )
        return {device_id for (device_id,) in cursor.fetchall()}


def _add_to_group(tenant_id: int, group_id: str, device_ids: list[str]) -> None:
    through = Device.groups.through
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {through._meta.db_table} (device_id, group_id) "
            f"SELECT id, %s FROM {Device._meta.db_table} WHERE tenant_id = %s AND device_id = ANY(%s) "
            "ON CONFLICT DO NOTHING",
            [group_id, tenant_id, device_ids],
        )


_COLUMNS = (
    "tenant_id, device_id, name, serial, model, os, os_version, state, timezone, tags, "
    "token_prefix, token_hash, created_at, updated_at, token_revoked"
)


def _write_devices(records: Iterable[tuple[Any, ...]], progress: Callable[[int], object] | None) -> None:
    """Insert the records; ``progress`` is told every BULK_BATCH_SIZE rows."""
    done = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3 cursor: one COPY is ~5x faster than INSERTs for 100k rows
        with raw.copy(f"COPY {Device._meta.db_table} ({_COLUMNS}) FROM STDIN") as copy:
            for record in records:
                copy.write_row((*record[:9], json.dumps(record[9]), *record[10:], record[12], False))
                done += 1
                if progress is not None and done % BULK_BATCH_SIZE == 0:
                    progress(BULK_BATCH_SIZE)
    if progress is not None and done % BULK_BATCH_SIZE:
        progress(done % BULK_BATCH_SIZE)
