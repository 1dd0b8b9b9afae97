"""Bulk device import: ``POST /v0/devices/bulk/`` and ``manage.py import_devices``."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from inventory.models import Device, Group
from tests.conftest import Api, Org, add_device

BULK = "/v0/devices/bulk/"


def created_content(response) -> dict[str, Any]:
    assert response.status_code == 201, response.content
    return response.json()["content"]


def device_ids(org: Org) -> list[str]:
    return sorted(Device.objects.filter(tenant=org.tenant).values_list("device_id", flat=True))


# --- the API ------------------------------------------------------------------------------------


def test_bulk_creates_every_device_and_returns_working_tokens(org: Org) -> None:
    rows = [
        {"id": "dev_1", "name": "One", "os": "Android", "tags": ["a", "b"], "timezone": "Europe/Berlin"},
        {"id": "dev_2", "model": "K10", "state": "inactive"},
        {"name": "no id given"},
    ]

    body = created_content(org.operator.post(BULK, rows))

    assert body["created"] == 3 and body["skipped"] == []
    assert [d["id"] for d in body["devices"][:2]] == ["dev_1", "dev_2"]
    generated = body["devices"][2]["id"]
    assert len(generated) == 36  # a UUID
    assert len({d["token"] for d in body["devices"]}) == 3
    for entry in body["devices"]:
        assert Api(entry["token"]).get("/v0/devices/").status_code == 403  # authenticates as the device
    one = org.admin.get("/v0/devices/dev_1/").json()["content"]
    assert (one["name"], one["os"], one["tags"], one["timezone"]) == (
        "One",
        "android",
        ["a", "b"],
        "Europe/Berlin",
    )
    assert "token" not in one
    two = org.admin.get("/v0/devices/dev_2/").json()["content"]
    assert (two["name"], two["state"], two["timezone"]) == ("dev_2", "inactive", "UTC")
    assert org.admin.get(f"/v0/devices/{generated}/").json()["content"]["name"] == "no id given"


def test_bulk_assigns_groups_by_name_or_id(org: Org) -> None:
    kiosks = Group.objects.create(tenant=org.tenant, name="kiosks")
    berlin = Group.objects.create(tenant=org.tenant, name="berlin")

    created_content(
        org.admin.post(
            BULK,
            [
                {"id": "k1", "groups": ["kiosks", "berlin"]},
                {"id": "k2", "groups": [str(kiosks.pk)]},
                {"id": "x"},
            ],
        )
    )

    assert sorted(Device.objects.get(device_id="k1").groups.values_list("name", flat=True)) == [
        "berlin",
        "kiosks",
    ]
    assert list(Device.objects.get(device_id="k2").groups.all()) == [kiosks]
    assert not Device.objects.get(device_id="x").groups.exists()
    counts = {g["name"]: g["device_count"] for g in org.admin.get("/v0/groups/").json()["content"]["results"]}
    assert counts == {"kiosks": 2, "berlin": 1}
    assert berlin.devices.count() == 1


def test_bulk_with_an_unknown_group_writes_nothing(org: Org) -> None:
    response = org.admin.post(BULK, [{"id": "a"}, {"id": "b", "groups": ["nope"]}])

    assert response.status_code == 400
    assert "nope" in json.dumps(response.json()["errors"])
    assert device_ids(org) == []


def test_another_tenants_group_is_unknown(org: Org, other_org: Org) -> None:
    theirs = Group.objects.create(tenant=other_org.tenant, name="theirs")

    for ref in ["theirs", str(theirs.pk)]:
        response = org.admin.post(BULK, [{"id": "a", "groups": [ref]}])
        assert response.status_code == 400, ref
    assert device_ids(org) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "a"}, "list"),
        ("devices", "list"),
        (None, "list"),
        ([], "empty"),
    ],
)
def test_bulk_needs_a_non_empty_list(org: Org, body: Any, message: str) -> None:
    response = org.admin.post(BULK, body)

    assert response.status_code == 400
    assert message in response.json()["message"]
    assert device_ids(org) == []


def test_row_errors_are_keyed_by_row_and_nothing_is_written(org: Org) -> None:
    rows = [
        {"id": "good-1"},
        {"id": "bad id with spaces"},
        {"id": "good-2", "state": "broken"},
        "not an object",
        {"id": "good-3", "tags": "not-a-list", "timezone": "Nowhere/Land"},
    ]

    response = org.admin.post(BULK, rows)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"rows[1]", "rows[2]", "rows[3]", "rows[4]"}
    assert "id" in errors["rows[1]"]
    assert "state" in errors["rows[2]"]
    assert "non_field_errors" in errors["rows[3]"]
    assert set(errors["rows[4]"]) == {"tags", "timezone"}
    assert response.json()["message"].startswith("rows[1].id:")
    assert device_ids(org) == []


def test_duplicate_ids_in_the_payload_are_refused(org: Org) -> None:
    response = org.admin.post(BULK, [{"id": "a"}, {"id": "b"}, {"id": "a"}])

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["rows[2]"]
    assert "duplicate" in errors["rows[2]"]["id"][0]
    assert device_ids(org) == []


def test_existing_ids_are_refused_by_default(org: Org) -> None:
    add_device(org.tenant, "old-1", name="untouched")

    for query in ["", "?on_conflict=error"]:
        response = org.admin.post(BULK + query, [{"id": "new-1"}, {"id": "old-1", "name": "changed"}])

        assert response.status_code == 400
        assert "old-1" in response.json()["errors"]["id"][0]
    assert device_ids(org) == ["old-1"]
    assert Device.objects.get(device_id="old-1").name == "untouched"


def test_on_conflict_skip_imports_the_rest(org: Org) -> None:
    old = add_device(org.tenant, "old-1", name="untouched")

    body = created_content(
        org.admin.post(BULK + "?on_conflict=skip", [{"id": "new-1"}, {"id": "old-1", "name": "changed"}])
    )

    assert body["created"] == 1 and body["skipped"] == ["old-1"]
    assert [d["id"] for d in body["devices"]] == ["new-1"]
    assert device_ids(org) == ["new-1", "old-1"]
    assert Device.objects.get(device_id="old-1").name == "untouched"
    assert old.api.get("/v0/devices/").status_code == 403  # the old device keeps its token


def test_bad_on_conflict_is_400(org: Org) -> None:
    response = org.admin.post(BULK + "?on_conflict=overwrite", [{"id": "a"}])

    assert response.status_code == 400 and "on_conflict" in response.json()["errors"]
    assert device_ids(org) == []


def test_ids_of_another_tenant_do_not_conflict(org: Org, other_org: Org) -> None:
    add_device(other_org.tenant, "shared-id")

    body = created_content(org.admin.post(BULK, [{"id": "shared-id"}]))

    assert body["created"] == 1


def test_too_many_rows_are_refused(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inventory.api.views.MAX_BULK_DEVICES", 3)

    response = org.admin.post(BULK, [{"id": f"d{i}"} for i in range(4)])

    assert response.status_code == 400 and "at most 3" in response.json()["message"]
    assert device_ids(org) == []


def test_a_thousand_devices_in_one_call(org: Org) -> None:
    rows = [{"id": f"d{i:04d}", "tags": ["bulk"], "os": "linux"} for i in range(1000)]

    body = created_content(org.admin.post(BULK, rows))

    assert body["created"] == 1000
    page = org.viewer.get("/v0/devices/", {"tag": "bulk", "limit": 1000}).json()["content"]
    assert page["count"] == 1000


# --- the management command ---------------------------------------------------------------------


def run_import(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_devices", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_import_csv_with_tags_and_groups(org: Org, tmp_path: Path) -> None:
    Group.objects.create(tenant=org.tenant, name="kiosks")
    path = tmp_path / "devices.csv"
    path.write_text(
        "id,name,os,model,tags,groups,timezone\n"
        "k1,Lobby,Android,K10,a;b,kiosks,Europe/Berlin\n"
        "k2,,ios,,,,\n"
        ",Unnamed,linux,R1,x,,\n"
    )
    tokens_path = tmp_path / "tokens.csv"

    out, _ = run_import("--tenant", org.tenant.slug, "--tokens", str(tokens_path), str(path), "-v0")

    assert "imported 3 device(s)" in out
    k1 = Device.objects.get(tenant=org.tenant, device_id="k1")
    assert (k1.name, k1.os, k1.model, k1.tags, k1.timezone) == (
        "Lobby",
        "android",
        "K10",
        ["a", "b"],
        "Europe/Berlin",
    )
    assert list(k1.groups.values_list("name", flat=True)) == ["kiosks"]
    k2 = Device.objects.get(tenant=org.tenant, device_id="k2")
    assert (k2.name, k2.tags, k2.timezone, k2.state) == ("k2", [], "UTC", "active")
    assert Device.objects.filter(tenant=org.tenant, name="Unnamed").exists()
    lines = tokens_path.read_text().splitlines()
    assert len(lines) == 3
    device_id, token = lines[0].split(",")
    assert device_id == "k1"
    assert Api(token).get("/v0/devices/").status_code == 403  # a working device token


def test_import_json_lines(org: Org, tmp_path: Path) -> None:
    path = tmp_path / "devices.jsonl"
    path.write_text(
        json.dumps({"id": "j1", "os": "windows", "tags": ["x"]})
        + "\n\n"
        + json.dumps({"id": "j2", "state": "inactive", "unknown": 1})
        + "\n"
    )

    out, _ = run_import("--tenant", org.tenant.slug, str(path), "-v0")

    assert "imported 2 device(s)" in out
    assert device_ids(org) == ["j1", "j2"]
    assert Device.objects.get(device_id="j1").tags == ["x"]
    assert Device.objects.get(device_id="j2").state == "inactive"


def test_import_with_a_rejected_row_imports_nothing(org: Org, tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("id,state,timezone\nok-1,active,UTC\nbad-1,sleeping,UTC\nok-2,active,Nowhere/Land\n")

    with pytest.raises(CommandError, match=r"2 row\(s\) rejected; nothing was imported"):
        run_import("--tenant", org.tenant.slug, str(path), "-v0")

    assert device_ids(org) == []


def test_import_reports_which_rows_are_rejected(org: Org, tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("id,state\nok-1,active\nbad-1,sleeping\n")
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("import_devices", "--tenant", org.tenant.slug, str(path), "-v0", stderr=err)

    assert "rows[1]" in err.getvalue() and "state" in err.getvalue()


def test_import_of_existing_ids_fails_unless_skipped(org: Org, tmp_path: Path) -> None:
    add_device(org.tenant, "old")
    path = tmp_path / "devices.jsonl"
    path.write_text('{"id": "old"}\n{"id": "new"}\n')

    with pytest.raises(CommandError, match="already exist"):
        run_import("--tenant", org.tenant.slug, str(path), "-v0")
    assert device_ids(org) == ["old"]

    out, _ = run_import("--tenant", org.tenant.slug, "--on-conflict", "skip", str(path), "-v0")
    assert "imported 1 device(s), skipped 1" in out
    assert device_ids(org) == ["new", "old"]


def test_import_bad_json_line_names_the_line(org: Org, tmp_path: Path) -> None:
    path = tmp_path / "devices.jsonl"
    path.write_text('{"id": "a"}\n{"id": \n')

    with pytest.raises(CommandError, match="line 2"):
        run_import("--tenant", org.tenant.slug, str(path), "-v0")
    assert device_ids(org) == []


@pytest.mark.django_db
def test_import_unknown_tenant_or_file(org: Org, tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("id\na\n")

    with pytest.raises(CommandError, match="no tenant 'nope'"):
        run_import("--tenant", "nope", str(path))
    with pytest.raises(CommandError, match="does not exist"):
        run_import("--tenant", org.tenant.slug, str(tmp_path / "missing.csv"))
