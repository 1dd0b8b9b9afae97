"""Bearer authentication, roles and tenant isolation on /v0/devices/ and /v0/groups/."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory.models import ApiKey, Group
from inventory.services import create_api_key, revoke_api_key
from tests.conftest import Api, DeviceActor, Org, add_device
from tests.helpers import error

LIST_PATHS = ["/v0/devices/", "/v0/groups/"]


# --- 401 ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", LIST_PATHS)
def test_missing_token_is_401_with_json_body(anonymous: Api, path: str) -> None:
    response = anonymous.get(path)

    error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-key",
        "Bearer dok_0123456789abcdef_unknownsecretunknownsecretunknownsecret",
        "Bearer ddt_0123456789abcdef_unknownsecretunknownsecretunknownsecret",
        "Bearer dok_short_secret",
        "Bearer",
        "Bearer two parts",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer d\u00f6k_0123456789abcdef_x",
    ],
    ids=[
        "garbage",
        "unknown-key",
        "unknown-device",
        "bad-prefix",
        "no-token",
        "extra-part",
        "basic",
        "token",
        "nonascii",
    ],
)
def test_unknown_or_malformed_token_is_401(org: Org, header: str) -> None:
    api = Api(None)

    response = api.client.get("/v0/devices/", HTTP_AUTHORIZATION=header)

    error(response, 401)


#: Tokens no issue() makes: a NUL or another control character in the prefix or the secret, a
#: prefix that is not lowercase hex. Without a proxy in front, a NUL reached PostgreSQL in the
#: prefix lookup and raised ``DataError`` (a 500).
UNPRINTABLE_TOKENS = [
    "dok_0123456789abcd\x00f_secretsecretsecret",
    "ddt_0123456789abcd\x00f_secretsecretsecret",
    "ddt_\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00_secret",
    "dok_0123456789abcdef_secret\x00secret",
    "ddt_0123456789abcde\x7f_secretsecretsecret",
    "ddt_0123456789abcde\x1b_secretsecretsecret",
    "ddt_0123456789ABCDEF_secretsecretsecret",
    "ddt_0123456789abcdef_secret\tsecret",
]
DEVICE_PATHS = [
    ("get", "/v0/devices/"),
    ("get", "/v2/command-inbox/?device_id=kiosk-1"),
    ("put", "/commands/v0/status/1/"),
    ("get", "/aggregates/maintenance/scheduler/jobs/orgId/acme"),
]


@pytest.mark.parametrize("token", UNPRINTABLE_TOKENS)
@pytest.mark.parametrize(("method", "path"), DEVICE_PATHS, ids=[path for _, path in DEVICE_PATHS])
def test_a_token_with_a_nul_or_unprintable_character_is_401_before_any_query(
    org: Org, token: str, method: str, path: str
) -> None:
    client = Api(None).client
    client.raise_request_exception = False

    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401, response.content
    assert response.json()["error_code"] == "authentication_failed"
    assert not [q["sql"] for q in queries if "prefix" in q["sql"]], "looked the token up"


def test_a_known_prefix_with_a_wrong_secret_is_401(org: Org) -> None:
    good = org.admin.token
    assert good is not None
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")

    assert org.admin.get("/v0/devices/").status_code == 200  # the prefix is now cached
    error(Api(forged).get("/v0/devices/"), 401)


def test_revoked_key_stops_working_at_once(org: Org) -> None:
    key, plain = create_api_key(org.tenant, "operator", "to revoke")
    api = Api(plain)
    assert api.get("/v0/devices/").status_code == 200  # the lookup is now cached

    revoke_api_key(key)

    error(api.get("/v0/devices/"), 401)
    error(api.post("/v0/groups/", {"name": "after revoke"}), 401)
    assert not Group.objects.filter(name="after revoke").exists()


def test_expired_key_is_401(org: Org) -> None:
    key, plain = create_api_key(org.tenant, "admin", "expired")
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    error(Api(plain).get("/v0/devices/"), 401)


def test_key_expiring_while_cached_is_401(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    key, plain = create_api_key(org.tenant, "admin", "expiring")
    expires = timezone.now() + dt.timedelta(hours=1)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=expires)
    api = Api(plain)
    assert api.get("/v0/devices/").status_code == 200  # the lookup is now cached, with its expiry

    monkeypatch.setattr(timezone, "now", lambda: expires + dt.timedelta(seconds=1))

    error(api.get("/v0/devices/"), 401)


# --- 403 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v0/devices/", {"id": "new-one"}),
        ("post", "/v0/devices/bulk/", [{"id": "new-bulk"}]),
        ("put", "/v0/devices/dev-1/", {"name": "renamed"}),
        ("patch", "/v0/devices/dev-1/", {"name": "renamed"}),
        ("delete", "/v0/devices/dev-1/", None),
        ("post", "/v0/devices/dev-1/rotate-token/", None),
        ("post", "/v0/devices/dev-1/revoke-token/", None),
        ("post", "/v0/groups/", {"name": "new group"}),
        ("put", "/v0/groups/{group}/", {"name": "renamed"}),
        ("patch", "/v0/groups/{group}/", {"name": "renamed"}),
        ("delete", "/v0/groups/{group}/", None),
    ],
)
def test_viewer_cannot_write(org: Org, device: DeviceActor, method: str, path: str, body: Any) -> None:
    group = Group.objects.create(tenant=org.tenant, name="kiosks")
    path = path.format(group=group.pk)
    api = org.viewer

    response = api.delete(path) if method == "delete" else getattr(api, method)(path, body)

    body_ = error(response, 403)
    assert "viewer" in body_["message"]
    device.device.refresh_from_db()
    group.refresh_from_db()
    assert device.device.name == "dev-1" and not device.device.token_revoked
    assert group.name == "kiosks"
    assert not Group.objects.filter(name="new group").exists()
    assert device.api.get("/v0/devices/").status_code == 403  # the token still authenticates


@pytest.mark.parametrize("path", LIST_PATHS)
def test_viewer_reads(org: Org, device: DeviceActor, path: str) -> None:
    assert org.viewer.get(path).status_code == 200


@pytest.mark.parametrize("path", [*LIST_PATHS, "/v0/devices/dev-1/"])
def test_device_token_cannot_reach_devices_or_groups(device: DeviceActor, path: str) -> None:
    error(device.api.get(path), 403)


def test_device_token_cannot_create_devices(org: Org, device: DeviceActor) -> None:
    error(device.api.post("/v0/devices/", {"id": "sneaky"}), 403)
    error(device.api.post("/v0/groups/", {"name": "sneaky"}), 403)


# --- tenants ------------------------------------------------------------------------------------


def test_other_tenants_device_is_404_like_a_missing_one(org: Org, other_org: Org) -> None:
    add_device(other_org.tenant, "theirs")

    for path in ["/v0/devices/theirs/", "/v0/devices/does-not-exist/"]:
        error(org.admin.get(path), 404)
    error(org.admin.patch("/v0/devices/theirs/", {"name": "mine now"}), 404)
    error(org.admin.delete("/v0/devices/theirs/"), 404)
    error(org.admin.post("/v0/devices/theirs/rotate-token/"), 404)
    assert other_org.admin.get("/v0/devices/theirs/").json()["content"]["name"] == "theirs"


def test_other_tenants_group_is_404(org: Org, other_org: Org) -> None:
    theirs = Group.objects.create(tenant=other_org.tenant, name="theirs")

    error(org.admin.get(f"/v0/groups/{theirs.pk}/"), 404)
    error(org.admin.patch(f"/v0/groups/{theirs.pk}/", {"name": "x"}), 404)
    error(org.admin.delete(f"/v0/groups/{theirs.pk}/"), 404)
    assert Group.objects.filter(pk=theirs.pk, name="theirs").exists()


def test_lists_never_include_other_tenants_objects(org: Org, other_org: Org) -> None:
    add_device(org.tenant, "mine", os="android", tags=["x"])
    add_device(other_org.tenant, "theirs", os="android", tags=["x"])
    Group.objects.create(tenant=org.tenant, name="shared-name")
    Group.objects.create(tenant=other_org.tenant, name="shared-name")

    all_params: list[dict[str, Any]] = [{}, {"os": "android"}, {"tag": "x"}, {"name": "the"}, {"limit": 1000}]
    for params in all_params:
        devices = org.admin.get("/v0/devices/", params).json()["content"]
        assert "theirs" not in [d["id"] for d in devices["results"]], params
    groups = org.admin.get("/v0/groups/").json()["content"]
    assert groups["count"] == 1
    assert [g["name"] for g in groups["results"]] == ["shared-name"]


def test_same_device_id_in_two_tenants_is_two_devices(org: Org, other_org: Org) -> None:
    add_device(other_org.tenant, "dev_1")

    response = org.admin.post("/v0/devices/", {"id": "dev_1"})

    assert response.status_code == 201
    assert org.admin.get("/v0/devices/").json()["content"]["count"] == 1


# --- keys ---------------------------------------------------------------------------------------


def test_last_used_at_is_recorded(org: Org) -> None:
    key, plain = create_api_key(org.tenant, "viewer", "fresh")
    assert key.last_used_at is None
    before = timezone.now()

    assert Api(plain).get("/v0/devices/").status_code == 200

    key.refresh_from_db()
    assert key.last_used_at is not None and key.last_used_at >= before


def test_keys_and_device_tokens_are_stored_hashed(org: Org) -> None:
    key, plain = create_api_key(org.tenant, "admin", "hashed")
    created = org.admin.post("/v0/devices/", {"id": "hashed-device"}).json()["content"]
    device_token = created["token"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM inventory_apikey WHERE id = %s", [key.pk])
        key_row = cursor.fetchone()
        cursor.execute("SELECT * FROM inventory_device WHERE device_id = %s", ["hashed-device"])
        device_row = cursor.fetchone()

    secret = plain.split("_", 2)[2]  # the secret itself may contain "_"
    assert not any(secret in str(value) for value in key_row)
    device_secret = device_token.split("_", 2)[2]
    assert not any(device_secret in str(value) for value in device_row)
    assert Api(plain).get("/v0/devices/").status_code == 200  # and yet the key works


def test_a_device_tokens_lookup_reads_its_own_inbox_generations(org: Org, device: DeviceActor) -> None:
    from commands import inbox_cache
    from inventory.authentication import resolve_token_reading

    inbox_cache.forget_device(device.device.pk)  # its generation is no longer 0
    templates = inbox_cache.GENERATION_TEMPLATES

    assert resolve_token_reading(device.token, templates)[1] is None  # not cached yet: read apart
    principal, seen = resolve_token_reading(device.token, templates)
    assert principal is not None and principal.device_pk == device.device.pk
    assert inbox_cache.as_generations(seen or []) == inbox_cache.generations(org.tenant.pk, device.device.pk)
    assert inbox_cache.as_generations(seen or [])[1] > 0


def test_a_keys_lookup_reads_no_device_generations(org: Org) -> None:
    from commands import inbox_cache
    from inventory.authentication import resolve_token_reading

    assert org.operator.token is not None
    resolve_token_reading(org.operator.token, inbox_cache.GENERATION_TEMPLATES)
    principal, seen = resolve_token_reading(org.operator.token, inbox_cache.GENERATION_TEMPLATES)
    assert principal is not None and principal.kind == "key"
    assert seen is None


def test_forgetting_a_device_token_drops_its_identity_with_its_lookup(device: DeviceActor) -> None:
    from django.core.cache import cache

    from commands import inbox_cache
    from inventory import tokens
    from inventory.authentication import forget_token, resolve_token_reading

    resolve_token_reading(device.token, inbox_cache.GENERATION_TEMPLATES)
    parsed = tokens.split(device.token)
    assert parsed is not None
    prefix = parsed[1]
    assert cache.get(f"auth:device:{prefix}") == device.device.pk

    forget_token(prefix)

    assert cache.get_many([f"auth:{prefix}", f"auth:tenant:{prefix}", f"auth:device:{prefix}"]) == {}
    assert resolve_token_reading(device.token, inbox_cache.GENERATION_TEMPLATES)[1] is None


def test_every_token_issued_is_well_formed() -> None:
    from inventory import tokens

    issued = [
        tokens.issue(kind) for kind in (tokens.API_KEY_KIND, tokens.DEVICE_TOKEN_KIND) for _ in range(200)
    ]
    many = list(tokens.issue_many(tokens.DEVICE_TOKEN_KIND, 400))

    assert all(tokens.split(token.plain) == (token.plain[:3], token.prefix) for token in issued)
    assert all(tokens.split(plain) == ("ddt", prefix) for plain, prefix, _ in many)
