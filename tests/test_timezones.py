"""Only real IANA zones are time zones (issue 12, item 8 b).

``zoneinfo.available_timezones()`` lists what the zone database ships, which includes
``Factory`` (tzdata's "time zone not yet set", abbreviation ``-00``) and, on machines whose
zone directory has the link, ``localtime`` (whatever the server's clock is set to): neither
says where a device is. Every timezone field reads ``inventory.models.devices``'s set.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from inventory.device_rows import clean_device_row
from inventory.models import Device
from inventory.models.devices import PSEUDO_ZONES, available_timezones, validate_timezone
from tests.conftest import Org, add_device
from tests.helpers import error, openapi_document

PSEUDO = ["Factory", "localtime", "posixrules", "posix/Europe/Berlin", "right/UTC"]
REAL = ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "Asia/Kolkata"]


def test_the_set_has_the_real_zones_and_none_of_the_pseudo_ones() -> None:
    zones = available_timezones()

    assert set(REAL) <= zones
    assert not set(PSEUDO) & zones
    assert len(zones) > 500


@pytest.mark.parametrize("zone", PSEUDO)
def test_the_model_validator_and_the_row_check_refuse_a_pseudo_zone(zone: str) -> None:
    with pytest.raises(ValidationError):
        validate_timezone(zone)
    _, errors = clean_device_row({"timezone": zone})
    assert "timezone" in errors


@pytest.mark.parametrize("zone", ["Factory", "localtime"])
def test_the_device_api_refuses_a_pseudo_zone(org: Org, zone: str) -> None:
    add_device(org.tenant, "d1")

    for response in (
        org.admin.post("/v0/devices/", {"id": "d2", "timezone": zone}),
        org.admin.put("/v0/devices/d1/", {"timezone": zone}),
        org.admin.patch("/v0/devices/d1/", {"timezone": zone}),
        org.admin.post("/v0/devices/bulk/", [{"id": "d3", "timezone": zone}]),
    ):
        body = error(response, 400)
        assert "timezone" in str(body["errors"]), body


@pytest.mark.parametrize("zone", ["Factory", "localtime"])
def test_an_operations_console_timezone_refuses_a_pseudo_zone(org: Org, zone: str) -> None:
    add_device(org.tenant, "d1")
    body: dict[str, Any] = {
        "operation_type": "REBOOT",
        "operation_device_query": {"devices": ["d1"]},
        "schedule_type": "WINDOW",
        "schedule_args": {
            "start_datetime": "2030-01-01T10:00:00Z",
            "end_datetime": "2030-01-02T10:00:00Z",
            "timezone": zone,
        },
    }

    response = org.admin.post("/v0/operations/", body)

    assert "schedule_args.timezone" in error(response, 400)["errors"]


@pytest.mark.parametrize("zone", REAL)
def test_real_zones_are_taken(org: Org, zone: str) -> None:
    response = org.admin.post("/v0/devices/", {"timezone": zone})

    assert response.status_code == 201, response.content
    assert response.json()["content"]["timezone"] == zone


def test_the_migration_moves_devices_with_a_pseudo_zone_to_utc(org: Org) -> None:
    migration = importlib.import_module("inventory.migrations.0012_devices_off_pseudo_zones")
    historical = (
        MigrationExecutor(connection)
        .loader.project_state(("inventory", "0012_devices_off_pseudo_zones"))
        .apps
    )
    for zone in [*PSEUDO, *REAL]:
        device = add_device(org.tenant, f"in-{zone}".replace("/", "-")).device
        Device.objects.filter(pk=device.pk).update(timezone=zone)  # as stored before the check
    before = timezone.now()

    moved = migration.move_pseudo_zones_to_utc(historical, None)

    zones = dict(Device.objects.values_list("device_id", "timezone"))
    assert moved == len(PSEUDO)
    assert {zones[f"in-{zone}".replace("/", "-")] for zone in PSEUDO} == {"UTC"}
    assert all(zones[f"in-{zone}".replace("/", "-")] == zone for zone in REAL)
    assert Device.objects.filter(timezone="UTC", updated_at__gte=before).count() == len(PSEUDO)
    assert migration.move_pseudo_zones_to_utc(historical, None) == 0  # once is enough


def test_the_migration_knows_every_pseudo_zone_the_check_refuses() -> None:
    migration = importlib.import_module("inventory.migrations.0012_devices_off_pseudo_zones")

    assert set(migration.PSEUDO_ZONES) == PSEUDO_ZONES
    assert all(zone.startswith(migration.PSEUDO_PREFIXES) for zone in PSEUDO if "/" in zone)


def test_the_published_schema_lists_exactly_the_zones_a_device_takes(org: Org) -> None:
    schemas = openapi_document()["components"]["schemas"]
    enum = schemas["TimezoneEnum"]["enum"]

    assert set(enum) == available_timezones() and not set(PSEUDO) & set(enum)
    for request in ("DeviceRequest", "PatchedDeviceRequest"):
        assert schemas[request]["properties"]["timezone"]["allOf"] == [
            {"$ref": "#/components/schemas/TimezoneEnum"}
        ]
    answer = schemas["Device"]["properties"]["timezone"]
    assert answer["type"] == "string" and "enum" not in answer  # a stored value stays readable
    for index, zone in enumerate(enum[:: len(enum) // 12]):  # the enum's values are taken
        assert org.admin.post("/v0/devices/", {"id": f"z{index}", "timezone": zone}).status_code == 201
