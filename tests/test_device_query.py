"""The device query language: every error path, and what each selector picks."""

from __future__ import annotations

from typing import Any

import pytest

from config.errors import DomainError
from inventory.models import Group
from operations.device_query import DeviceQuery
from tests.conftest import Org, add_device


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ([], "operation_device_query", "JSON object"),
        ({}, "operation_device_query", "selects no devices"),
        ({"device_type": "all"}, "operation_device_query", "selects no devices"),
        ({"everything": True}, "operation_device_query", "unknown key"),
        ({"devices": "dev-1"}, "operation_device_query.devices", "list of device ids"),
        ({"devices": []}, "operation_device_query.devices", "must not be empty"),
        ({"devices": [1, 2]}, "operation_device_query.devices", "list of device ids"),
        ({"groups": []}, "operation_device_query.groups", "non-empty list"),
        ({"groups": [None]}, "operation_device_query.groups", "string"),
        ({"all": "yes"}, "operation_device_query.all", "true or false"),
        ({"all": True, "device_type": "broken"}, "operation_device_query.device_type", "one of"),
        ({"filters": {}}, "operation_device_query.filters", "non-empty object"),
        ({"filters": []}, "operation_device_query.filters", "non-empty object"),
        ({"filters": {"token_hash": "x"}}, "operation_device_query.filters.token_hash", "unknown field"),
        ({"filters": {"tenant__slug": "x"}}, "operation_device_query.filters.tenant__slug", "unknown field"),
        ({"filters": {"os__regex": ".*"}}, "operation_device_query.filters.os__regex", "unknown lookup"),
        ({"filters": {"os": 3}}, "operation_device_query.filters.os", "string"),
        ({"filters": {"os__in": "android"}}, "operation_device_query.filters.os__in", "list"),
        (
            {"filters": {"last_seen__gte": "yesterday"}},
            "operation_device_query.filters.last_seen__gte",
            "ISO 8601",
        ),
        (
            {"filters": {"last_seen__gte": "2030-01-01T00:00:00"}},
            "operation_device_query.filters.last_seen__gte",
            "UTC offset",
        ),
        (
            {"filters": {"last_seen__isnull": "no"}},
            "operation_device_query.filters.last_seen__isnull",
            "true or false",
        ),
        ({"filters": {"name": "a\x00b"}}, "operation_device_query.filters.name", "NUL character"),
    ],
)
def test_bad_query_is_a_400_naming_the_problem(raw: Any, field: str, words: str) -> None:
    with pytest.raises(DomainError) as caught:
        DeviceQuery.parse(raw)

    detail = caught.value.errors
    assert isinstance(detail, dict)
    assert field in detail, detail
    assert words in str(detail[field])


def test_too_many_explicit_devices_is_refused(settings: Any) -> None:
    settings.MAX_QUERY_DEVICES = 3

    with pytest.raises(DomainError) as caught:
        DeviceQuery.parse({"devices": ["a", "b", "c", "d"]})

    assert "at most 3" in str(caught.value.errors)


def test_unknown_devices_and_groups_are_named(org: Org) -> None:
    add_device(org.tenant, "known")
    query = DeviceQuery.parse({"devices": ["known", "ghost-1", "ghost-2"], "groups": ["nowhere"]})

    with pytest.raises(DomainError) as caught:
        query.check_references(org.tenant.pk)

    detail = caught.value.errors
    assert isinstance(detail, dict)
    assert "ghost-1, ghost-2" in str(detail["operation_device_query.devices"])
    assert "nowhere" in str(detail["operation_device_query.groups"])


def test_another_tenants_devices_are_unknown(org: Org, other_org: Org) -> None:
    add_device(other_org.tenant, "theirs")

    with pytest.raises(DomainError):
        DeviceQuery.parse({"devices": ["theirs"]}).check_references(org.tenant.pk)


def picked(org: Org, raw: dict[str, Any]) -> set[str]:
    return set(DeviceQuery.parse(raw).queryset(org.tenant.pk).values_list("device_id", flat=True))


def test_selectors_are_anded(org: Org, other_org: Org) -> None:
    kiosks = Group.objects.create(tenant=org.tenant, name="kiosks")
    a = add_device(org.tenant, "a", os="android", model="K1", tags=["berlin", "floor-1"]).device
    b = add_device(org.tenant, "b", os="android", model="K2", tags=["berlin"]).device
    add_device(org.tenant, "c", os="linux", model="K1", tags=["paris"])
    add_device(org.tenant, "d", os="android", state="inactive")
    add_device(other_org.tenant, "a-elsewhere", os="android")
    a.groups.add(kiosks)
    b.groups.add(kiosks)

    assert picked(org, {"all": True}) == {"a", "b", "c"}
    assert picked(org, {"all": True, "device_type": "all"}) == {"a", "b", "c", "d"}
    assert picked(org, {"all": True, "device_type": "inactive"}) == {"d"}
    assert picked(org, {"filters": {"os": "android"}}) == {"a", "b"}
    assert picked(org, {"filters": {"os__in": ["linux"], "model": "K1"}}) == {"c"}
    assert picked(org, {"filters": {"tags__contains": "berlin"}}) == {"a", "b"}
    assert picked(org, {"filters": {"tags": ["berlin", "floor-1"]}}) == {"a"}
    assert picked(org, {"groups": ["kiosks"]}) == {"a", "b"}
    assert picked(org, {"groups": [str(kiosks.pk)], "filters": {"model": "K2"}}) == {"b"}
    assert picked(org, {"devices": ["a", "c"], "filters": {"os": "linux"}}) == {"c"}
    assert picked(org, {"filters": {"last_seen__isnull": True}}) == {"a", "b", "c"}
