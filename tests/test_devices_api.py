"""CRUD, filters and paging of /v0/devices/ and /v0/groups/, and device token rotation."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from inventory.models import Device, Group
from inventory.services import bulk_import_devices
from tests.command_factories import run_in_threads
from tests.conftest import Api, DeviceActor, Org, add_device
from tests.helpers import content, error


def ids(page) -> list[str]:
    return [device["id"] for device in page["results"]]


# --- create, read, update, delete ---------------------------------------------------------------


def test_create_with_client_chosen_id_returns_token_once(org: Org) -> None:
    created = content(
        org.admin.post(
            "/v0/devices/",
            {
                "id": "dev_67890",
                "name": "Front desk",
                "serial": "SN-1",
                "model": "Kiosk 10",
                "os": "Android",
                "os_version": "14",
                "timezone": "Europe/Berlin",
                "tags": ["lobby", "lobby", "floor-1"],
                "unknown_field": "ignored",
            },
        ),
        201,
    )

    assert created["id"] == "dev_67890"
    assert created["os"] == "android"
    assert created["tags"] == ["lobby", "floor-1"]
    assert created["state"] == "active"
    assert created["token"].startswith("ddt_")
    fetched = content(org.admin.get("/v0/devices/dev_67890/"))
    assert "token" not in fetched
    assert {k: v for k, v in created.items() if k != "token"} == fetched
    listed = content(org.admin.get("/v0/devices/"))["results"]
    assert all("token" not in device for device in listed)
    assert Api(created["token"]).get("/v0/devices/").status_code == 403  # a working device token


def test_create_without_id_makes_a_uuid_and_defaults(org: Org) -> None:
    created = content(org.admin.post("/v0/devices/", {}), 201)

    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created["name"] == created["id"]
    assert created["timezone"] == "UTC"
    assert created["tags"] == [] and created["groups"] == []
    assert created["last_seen"] is None


def test_create_with_a_taken_id_is_409_naming_id(org: Org, device: DeviceActor) -> None:
    response = org.admin.post("/v0/devices/", {"id": "dev-1", "name": "again"})

    assert response.status_code == 409
    assert "id" in response.json()["errors"]
    assert Device.objects.filter(tenant=org.tenant).count() == 1


def test_create_with_groups_by_name_or_id(org: Org) -> None:
    kiosks = Group.objects.create(tenant=org.tenant, name="kiosks")
    berlin = Group.objects.create(tenant=org.tenant, name="berlin")

    created = content(org.admin.post("/v0/devices/", {"id": "d", "groups": ["kiosks", str(berlin.pk)]}), 201)

    assert sorted(created["groups"]) == sorted([str(kiosks.pk), str(berlin.pk)])


def test_create_with_an_unknown_group_is_400_and_creates_nothing(org: Org) -> None:
    response = org.admin.post("/v0/devices/", {"id": "d", "groups": ["nope"]})

    assert response.status_code == 400
    assert "nope" in response.json()["errors"]["groups"][0]
    assert not Device.objects.filter(device_id="d").exists()


def test_put_replaces_and_patch_changes_only_given_fields(org: Org) -> None:
    add_device(org.tenant, "d1", name="old", model="M1", tags=["a"], timezone="Asia/Tokyo")

    patched = content(org.admin.patch("/v0/devices/d1/", {"name": "new", "state": "inactive"}))
    assert (patched["name"], patched["state"], patched["model"], patched["tags"]) == (
        "new",
        "inactive",
        "M1",
        ["a"],
    )
    assert patched["timezone"] == "Asia/Tokyo"

    put = content(org.admin.put("/v0/devices/d1/", {"name": "put", "model": "M2"}))
    assert (put["name"], put["model"], put["state"], put["tags"], put["timezone"]) == (
        "put",
        "M2",
        "active",
        [],
        "UTC",
    )
    assert content(org.admin.get("/v0/devices/d1/")) == put


def test_patch_can_move_a_device_into_groups_and_out(org: Org) -> None:
    add_device(org.tenant, "d1")
    group = Group.objects.create(tenant=org.tenant, name="g")

    assert content(org.admin.patch("/v0/devices/d1/", {"groups": ["g"]}))["groups"] == [str(group.pk)]
    assert content(org.admin.patch("/v0/devices/d1/", {"groups": []}))["groups"] == []


def test_patch_to_a_taken_id_is_409(org: Org) -> None:
    add_device(org.tenant, "d1")
    add_device(org.tenant, "d2")

    response = org.admin.patch("/v0/devices/d1/", {"id": "d2"})

    assert response.status_code == 409 and "id" in response.json()["errors"]


def test_patch_with_a_bad_value_changes_nothing(org: Org) -> None:
    add_device(org.tenant, "d1", name="keep")

    response = org.admin.patch("/v0/devices/d1/", {"name": "changed", "timezone": "Mars/Olympus"})

    assert response.status_code == 400 and "timezone" in response.json()["errors"]
    assert Device.objects.get(device_id="d1").name == "keep"


def test_delete_removes_the_device_and_its_token(org: Org) -> None:
    actor = add_device(org.tenant, "d1")
    assert actor.api.get("/v0/devices/").status_code == 403  # token known and cached

    response = org.operator.delete("/v0/devices/d1/")

    assert response.status_code == 204
    assert org.admin.get("/v0/devices/d1/").status_code == 404
    assert actor.api.get("/v0/devices/").status_code == 401


# --- filters ------------------------------------------------------------------------------------


@pytest.fixture
def filterable_devices(org: Org) -> dict[str, Device]:
    now = timezone.now()
    Group.objects.create(tenant=org.tenant, name="kiosks")
    rows = [
        (
            "k1",
            {
                "name": "Lobby Kiosk",
                "os": "android",
                "model": "K10",
                "tags": ["lobby", "eu"],
                "groups": ["kiosks"],
            },
        ),
        ("k2", {"name": "Back kiosk", "os": "android", "model": "K20", "tags": ["eu"], "state": "inactive"}),
        ("p1", {"name": "Phone", "os": "ios", "model": "iPhone 15", "tags": ["lobby"]}),
        ("r1", {"name": "Router", "os": "linux", "model": "R1", "tags": []}),
    ]
    devices = {device_id: add_device(org.tenant, device_id, **fields).device for device_id, fields in rows}
    for device_id, days in [("k1", 1), ("k2", 10), ("p1", 30)]:
        Device.objects.filter(pk=devices[device_id].pk).update(last_seen=now - dt.timedelta(days=days))
    return devices


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "active"}, ["k1", "p1", "r1"]),
        ({"state": "inactive"}, ["k2"]),
        ({"os": "ANDROID"}, ["k1", "k2"]),
        ({"os": "iOS"}, ["p1"]),
        ({"model": "K10"}, ["k1"]),
        ({"tag": "lobby"}, ["k1", "p1"]),
        ({"tag": "eu", "os": "android", "state": "active"}, ["k1"]),
        ({"tag": "lob"}, []),
        ({"group": "kiosks"}, ["k1"]),
        ({"group": "no-such-group"}, []),
        ({"name": "KIOSK"}, ["k1", "k2"]),
        ({"name": "zzz"}, []),
    ],
)
def test_device_filters(
    org: Org, filterable_devices: dict[str, Device], params: dict[str, str], expected: list[str]
) -> None:
    page = content(org.viewer.get("/v0/devices/", params))

    assert sorted(ids(page)) == expected
    assert page["count"] == len(expected)


def test_group_filter_by_id(org: Org, filterable_devices: dict[str, Device]) -> None:
    group = Group.objects.get(tenant=org.tenant, name="kiosks")

    assert ids(content(org.viewer.get("/v0/devices/", {"group": str(group.pk)}))) == ["k1"]


def test_last_seen_filters(org: Org, filterable_devices: dict[str, Device]) -> None:
    five_days_ago = (timezone.now() - dt.timedelta(days=5)).isoformat()
    twenty_days_ago = (timezone.now() - dt.timedelta(days=20)).isoformat()

    assert ids(content(org.viewer.get("/v0/devices/", {"last_seen_after": five_days_ago}))) == ["k1"]
    assert sorted(ids(content(org.viewer.get("/v0/devices/", {"last_seen_before": five_days_ago})))) == [
        "k2",
        "p1",
    ]
    between = {"last_seen_after": twenty_days_ago, "last_seen_before": five_days_ago}
    assert ids(content(org.viewer.get("/v0/devices/", between))) == ["k2"]


# --- paging -------------------------------------------------------------------------------------


@pytest.fixture
def many_devices(org: Org) -> int:
    rows = [{"device_id": f"d{i:05d}"} for i in range(1005)]
    bulk_import_devices(org.tenant.pk, rows)
    return len(rows)


def test_default_page_is_20_with_next_link(org: Org, many_devices: int) -> None:
    page = content(org.viewer.get("/v0/devices/"))

    assert page["count"] == many_devices
    assert len(page["results"]) == 20
    assert page["previous"] is None
    assert "limit=20" in page["next"] and "offset=20" in page["next"]


def test_offset_and_limit_walk_the_list_in_a_stable_order(org: Org, many_devices: int) -> None:
    first = ids(content(org.viewer.get("/v0/devices/", {"limit": 10})))
    second = ids(content(org.viewer.get("/v0/devices/", {"limit": 10, "offset": 10})))

    assert first == [f"d{i:05d}" for i in range(10)]
    assert second == [f"d{i:05d}" for i in range(10, 20)]


def test_limit_is_clamped_to_1000(org: Org, many_devices: int) -> None:
    page = content(org.viewer.get("/v0/devices/", {"limit": 5000}))

    assert len(page["results"]) == 1000
    assert page["count"] == many_devices


def test_offset_past_the_end_is_an_empty_page(org: Org, many_devices: int) -> None:
    page = content(org.viewer.get("/v0/devices/", {"offset": 5000}))

    assert page["results"] == [] and page["count"] == many_devices


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "x"}, "offset"),
    ],
)
def test_bad_limit_or_offset_is_400_naming_it(org: Org, params: dict[str, str], field: str) -> None:
    for path in ["/v0/devices/", "/v0/groups/"]:
        response = org.viewer.get(path, params)

        assert response.status_code == 400, (path, response.content)
        assert field in response.json()["errors"]


# --- groups -------------------------------------------------------------------------------------


def test_group_crud_with_device_count(org: Org) -> None:
    created = content(
        org.operator.post("/v0/groups/", {"name": "kiosks", "description": "lobby screens"}), 201
    )
    group_id = created["id"]
    assert created["device_count"] == 0
    uuid.UUID(group_id)
    add_device(org.tenant, "k1", groups=["kiosks"])
    add_device(org.tenant, "k2", groups=[group_id])
    add_device(org.tenant, "other")

    assert content(org.viewer.get(f"/v0/groups/{group_id}/"))["device_count"] == 2
    listed = content(org.viewer.get("/v0/groups/"))
    assert [(g["name"], g["device_count"]) for g in listed["results"]] == [("kiosks", 2)]

    renamed = content(org.operator.patch(f"/v0/groups/{group_id}/", {"name": "screens"}))
    assert renamed["name"] == "screens" and renamed["description"] == "lobby screens"
    assert renamed["device_count"] == 2
    replaced = content(org.operator.put(f"/v0/groups/{group_id}/", {"name": "screens", "description": ""}))
    assert replaced["description"] == ""

    assert org.operator.delete(f"/v0/groups/{group_id}/").status_code == 204
    assert org.viewer.get(f"/v0/groups/{group_id}/").status_code == 404
    assert Device.objects.filter(tenant=org.tenant).count() == 3  # devices stay


def test_group_name_is_unique_per_tenant(org: Org, other_org: Org) -> None:
    content(org.admin.post("/v0/groups/", {"name": "kiosks"}), 201)
    content(other_org.admin.post("/v0/groups/", {"name": "kiosks"}), 201)

    response = org.admin.post("/v0/groups/", {"name": "kiosks"})

    refused = error(response, 409, "group_exists")
    assert refused["errors"] == {"name": ["a group named 'kiosks' already exists"]}


def test_renaming_a_group_to_a_taken_name_is_409_and_to_its_own_is_fine(org: Org) -> None:
    content(org.admin.post("/v0/groups/", {"name": "kiosks"}), 201)
    phones = content(org.admin.post("/v0/groups/", {"name": "phones"}), 201)
    path = f"/v0/groups/{phones['id']}/"

    error(org.admin.patch(path, {"name": "kiosks"}), 409, "group_exists")
    error(org.admin.put(path, {"name": "kiosks", "description": ""}), 409, "group_exists")
    assert content(org.admin.patch(path, {"name": "phones", "description": "same name"}))["name"] == "phones"
    assert Group.objects.get(pk=phones["id"]).name == "phones"


@pytest.mark.django_db(transaction=True)
def test_groups_of_one_name_created_at_once_give_one_201_and_409s(org: Org) -> None:
    def create() -> int:
        return int(org.admin.post("/v0/groups/", {"name": "race"}).status_code)

    answers = run_in_threads([create] * 8)

    assert sorted(answers) == [201] + [409] * 7
    assert Group.objects.filter(tenant=org.tenant, name="race").count() == 1


def test_group_needs_a_name(org: Org) -> None:
    response = org.admin.post("/v0/groups/", {"description": "nameless"})

    assert response.status_code == 400 and "name" in response.json()["errors"]


def test_group_list_filter_by_name(org: Org) -> None:
    for name in ["Berlin kiosks", "Tokyo phones"]:
        Group.objects.create(tenant=org.tenant, name=name)

    page = content(org.viewer.get("/v0/groups/", {"name": "KIOSK"}))

    assert [g["name"] for g in page["results"]] == ["Berlin kiosks"]


# --- device tokens ------------------------------------------------------------------------------


def test_rotate_token_returns_a_new_token_and_the_old_one_stops(org: Org, device: DeviceActor) -> None:
    assert device.api.get("/v0/devices/").status_code == 403  # old token known and cached

    rotated = content(org.operator.post("/v0/devices/dev-1/rotate-token/"))

    assert rotated["id"] == "dev-1"
    assert rotated["token"].startswith("ddt_") and rotated["token"] != device.token
    assert device.api.get("/v0/devices/").status_code == 401
    assert Api(rotated["token"]).get("/v0/devices/").status_code == 403


def test_revoke_token_stops_it_and_rotate_gives_a_working_one(org: Org, device: DeviceActor) -> None:
    assert device.api.get("/v0/devices/").status_code == 403

    revoked = content(org.operator.post("/v0/devices/dev-1/revoke-token/"))

    assert "token" not in revoked
    assert device.api.get("/v0/devices/").status_code == 401
    rotated = content(org.operator.post("/v0/devices/dev-1/rotate-token/"))
    assert Api(rotated["token"]).get("/v0/devices/").status_code == 403
