"""The device query language of ``operation_device_query``.

``devices``, ``groups``, ``device_type``, ``filters`` and ``all``, ANDed. Filters are an
explicit allow-list of fields and lookups, so a query can never reach a column or a join
it should not. Every problem is a :class:`~config.errors.DomainError` naming the key and the reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from config.api.validators import NUL
from config.errors import DomainError
from config.timestamps import parse_aware
from inventory.filtersets import tags_contain
from inventory.models import Device, DeviceState, Group

KEYS = ("devices", "groups", "device_type", "filters", "all")
DEVICE_TYPES = ("active", "inactive", "all")


def _string(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("must be a string of at most 200 characters")
    if "\x00" in value:  # PostgreSQL refuses it in a query parameter, with its own words
        raise ValueError(NUL)
    return value


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > 1000:
        raise ValueError("must be a non-empty list of at most 1000 strings")
    return [_string(item) for item in value]


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


_TEXT: dict[str, Callable[[Any], Any]] = {
    "exact": _string,
    "iexact": _string,
    "in": _strings,
    "startswith": _string,
    "icontains": _string,
}
# parse_aware's TimestampError is a ValueError that carries the reason, like the others here.
_TIME: dict[str, Callable[[Any], Any]] = {
    "gte": parse_aware,
    "lte": parse_aware,
    "gt": parse_aware,
    "lt": parse_aware,
    "isnull": _boolean,
}

#: field -> lookup -> value parser. Nothing outside this table can be filtered on.
FILTERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "os": {"exact": _string, "iexact": _string, "in": _strings},
    "os_version": {**_TEXT, "gte": _string, "lte": _string, "gt": _string, "lt": _string},
    "model": _TEXT,
    "name": _TEXT,
    "serial": _TEXT,
    "timezone": {"exact": _string, "in": _strings, "startswith": _string},
    "tags": {"contains": lambda v: _strings(v) if isinstance(v, list) else [_string(v)]},
    "last_seen": _TIME,
    "created_at": {k: v for k, v in _TIME.items() if k != "isnull"},
}


@dataclass
class DeviceQuery:
    devices: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    device_type: str = "active"
    filters: dict[str, Any] = field(default_factory=dict)
    all: bool = False

    @classmethod
    def parse(cls, raw: Any) -> DeviceQuery:
        """Validate the query's shape and values (no database access)."""
        if not isinstance(raw, dict):
            raise DomainError({"operation_device_query": ["must be a JSON object"]})
        errors: dict[str, list[str]] = {}
        query = cls()
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            errors["operation_device_query"] = [
                f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}"
            ]
        limit = int(settings.MAX_QUERY_DEVICES)
        if "devices" in raw:
            devices = raw["devices"]
            if not isinstance(devices, list) or not all(
                isinstance(d, str) and d and len(d) <= 128 for d in devices
            ):
                errors["operation_device_query.devices"] = ["must be a list of device ids (strings)"]
            elif any("\x00" in d for d in devices):  # as in _string
                errors["operation_device_query.devices"] = [NUL]
            elif len(devices) > limit:
                errors["operation_device_query.devices"] = [
                    f"at most {limit} device ids; use groups or filters"
                ]
            elif not devices:
                errors["operation_device_query.devices"] = ["must not be empty"]
            else:
                query.devices = list(dict.fromkeys(devices))
        if "groups" in raw:
            try:
                query.groups = _strings(raw["groups"])
            except ValueError as error:
                errors["operation_device_query.groups"] = [f"{error} (group ids or names)"]
        if "device_type" in raw:
            if raw["device_type"] not in DEVICE_TYPES:
                errors["operation_device_query.device_type"] = [f"must be one of {', '.join(DEVICE_TYPES)}"]
            else:
                query.device_type = raw["device_type"]
        if "filters" in raw:
            query.filters = _parse_filters(raw["filters"], errors)
        if "all" in raw:
            if not isinstance(raw["all"], bool):
                errors["operation_device_query.all"] = ["must be true or false"]
            else:
                query.all = raw["all"]
        if not errors and not (query.devices or query.groups or query.filters or query.all):
            errors["operation_device_query"] = [
                "selects no devices: give devices, groups or filters, or all: true for the whole fleet"
            ]
        if errors:
            raise DomainError(errors)
        return query

    def check_references(self, tenant_id: int) -> None:
        """Explicit device ids and groups must exist in the tenant; a 400 names the missing ones."""
        errors: dict[str, list[str]] = {}
        if self.devices:
            found: set[str] = set()
            for start in range(0, len(self.devices), 50_000):
                found.update(
                    Device.objects.filter(
                        tenant_id=tenant_id, device_id__in=self.devices[start : start + 50_000]
                    ).values_list("device_id", flat=True)
                )
            missing = [d for d in self.devices if d not in found]
            if missing:
                shown = ", ".join(missing[:20]) + (
                    f" and {len(missing) - 20} more" if len(missing) > 20 else ""
                )
                errors["operation_device_query.devices"] = [f"unknown device id(s): {shown}"]
        if self.groups:
            known = Group.objects.filter(tenant_id=tenant_id).filter(self._group_condition())
            names = {g.name for g in known} | {str(g.pk) for g in known}
            missing = [g for g in self.groups if g not in names]
            if missing:
                errors["operation_device_query.groups"] = [f"unknown group(s): {', '.join(missing[:20])}"]
        if errors:
            # The first missing kind names the code; ``errors`` names them all.
            code = "not_found_device" if "operation_device_query.devices" in errors else "not_found_group"
            raise DomainError(errors, code=code)

    def _group_condition(self) -> Q:
        ids = []
        for value in self.groups:
            with contextlib.suppress(ValueError):
                ids.append(uuid.UUID(value))
        return Q(name__in=self.groups) | Q(pk__in=ids)

    def queryset(self, tenant_id: int) -> QuerySet[Device]:
        """The matching devices, as SQL: the fan-out turns it into INSERT ... SELECT."""
        devices = Device.objects.filter(tenant_id=tenant_id)
        if self.device_type != "all":
            devices = devices.filter(state=DeviceState(self.device_type))
        if self.devices:
            devices = devices.filter(device_id__in=self.devices)
        if self.groups:
            groups = Group.objects.filter(tenant_id=tenant_id).filter(self._group_condition())
            devices = devices.filter(
                pk__in=Device.groups.through.objects.filter(group__in=groups).values("device_id")
            )
        for key, value in self.filters.items():
            if key == "tags__contains":
                for tag in value:
                    devices = tags_contain(devices, tag)
            else:
                devices = devices.filter(**{key: value})
        return devices

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"device_type": self.device_type}
        if self.devices:
            data["devices"] = self.devices
        if self.groups:
            data["groups"] = self.groups
        if self.filters:
            data["filters"] = {
                k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in self.filters.items()
            }
        if self.all:
            data["all"] = True
        return data


def _parse_filters(raw: Any, errors: dict[str, list[str]]) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        errors["operation_device_query.filters"] = [
            "must be a non-empty object of {field or field__lookup: value}"
        ]
        return {}
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        name, _, lookup = str(key).partition("__")
        lookup = lookup or ("contains" if name == "tags" else "exact")
        where = f"operation_device_query.filters.{key}"
        if name not in FILTERS:
            errors[where] = [f"unknown field {name!r}; allowed: {', '.join(sorted(FILTERS))}"]
            continue
        parser = FILTERS[name].get(lookup)
        if parser is None:
            errors[where] = [
                f"unknown lookup {lookup!r} for {name}; allowed: {', '.join(sorted(FILTERS[name]))}"
            ]
            continue
        try:
            parsed[f"{name}__{lookup}"] = parser(value)
        except ValueError as error:
            errors[where] = [str(error)]
    return parsed
