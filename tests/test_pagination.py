"""``limit`` and ``offset`` of every list (``config/api/pagination.py``).

Seed 002 types them as numbers, so a client may well send ``10.0``: an integral value is
taken, a fraction is a 400 naming the parameter (issue 12, item 11 e). An empty value or a
``limit`` of 0 is a 400 too, as the published schema says (item 8 d).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Org, add_device
from tests.helpers import content, error

LISTS = ["/v0/devices/", "/commands/v0/status/", "/v0/operations/", "/v0/groups/"]


@pytest.fixture
def five_devices(org: Org) -> None:
    for index in range(5):
        add_device(org.tenant, f"dev-{index}")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("limit", "offset"), [("2.0", "1.0"), ("2.00", "1"), ("2", "1.0"), ("+2", "1"), ("002.0", "01")]
)
def test_integral_numbers_in_any_spelling_are_taken(
    org: Org, five_devices: None, path: str, limit: str, offset: str
) -> None:
    page = content(org.admin.get(path, {"limit": limit, "offset": offset}))
    plain = content(org.admin.get(path, {"limit": "2", "offset": "1"}))

    assert page == plain


def test_an_integral_limit_pages_the_devices(org: Org, five_devices: None) -> None:
    page = content(org.admin.get("/v0/devices/", {"limit": "2.0", "offset": "1.0"}))

    assert page["count"] == 5
    assert [item["id"] for item in page["results"]] == ["dev-1", "dev-2"]
    assert "limit=2" in page["next"] and "offset=3" in page["next"]


@pytest.mark.parametrize("path", [*LISTS, "/api/v1/inventory_device_headless_operation/"])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "10.5"),
        ("offset", "0.5"),
        ("limit", "1e-1"),
        ("limit", "2e0"),
        ("limit", "2."),
        ("limit", ".5"),
        ("limit", ""),
        ("offset", ""),
        ("limit", "0"),
        ("limit", "0.0"),
        ("offset", "-1"),
        ("limit", "ten"),
        ("limit", "NaN"),
        ("limit", "Infinity"),
        ("limit", "1_0"),
        ("limit", "0x10"),
        ("offset", "1e999999999"),
        ("limit", "9" * 5000),
    ],
)
def test_anything_but_an_integer_in_range_is_400(org: Org, path: str, name: str, value: str) -> None:
    response = org.admin.get(path, {name: value})

    assert response.status_code == 400, response.content
    assert name in response.json()["errors"]


def test_a_limit_past_the_maximum_is_clamped(org: Org, five_devices: None, settings: Any) -> None:
    settings.API_PAGE_SIZE_MAX = 3

    page = content(org.admin.get("/v0/devices/", {"limit": "1000.0"}))

    assert len(page["results"]) == 3


def test_the_schema_says_what_is_taken(org: Org) -> None:
    document = org.admin.get("/api/schema/", {"format": "json"}).json()
    parameters = {
        parameter["name"]: parameter["schema"]
        for parameter in document["paths"]["/v0/devices/"]["get"]["parameters"]
    }

    assert parameters["limit"]["type"] == "integer" and parameters["limit"]["minimum"] == 1
    assert parameters["offset"]["type"] == "integer" and parameters["offset"]["minimum"] == 0


def test_an_error_names_the_value(org: Org) -> None:
    body = error(org.admin.get("/v0/devices/", {"limit": "10.5"}), 400)

    assert "10.5" in body["errors"]["limit"][0]
