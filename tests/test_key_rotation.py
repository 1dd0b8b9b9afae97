"""API key rotation: a new key like the old one, the old one revoked at once or after a grace period."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from inventory.models import ApiKey
from inventory.services import create_api_key, revoke_api_key, rotate_api_key
from tests.conftest import Api, Org


def test_rotation_makes_a_like_key_and_revokes_the_old_one_at_once(org: Org) -> None:
    key, plain = create_api_key(org.tenant, "operator", "ci")
    expires = timezone.now() + dt.timedelta(days=30)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=expires)
    key.refresh_from_db()
    assert Api(plain).get("/v0/devices/").status_code == 200  # cached lookup

    new_key, new_plain = rotate_api_key(key)

    assert (new_key.tenant_id, new_key.role, new_key.name, new_key.expires_at) == (
        key.tenant_id,
        "operator",
        "ci",
        expires,
    )
    assert new_plain != plain
    assert Api(plain).get("/v0/devices/").status_code == 401
    assert Api(new_plain).get("/v0/devices/").status_code == 200


def test_rotation_with_a_grace_period_keeps_the_old_key_until_then(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, plain = create_api_key(org.tenant, "admin", "deploy")
    assert Api(plain).get("/v0/devices/").status_code == 200

    _, new_plain = rotate_api_key(key, grace_seconds=600)

    assert Api(plain).get("/v0/devices/").status_code == 200
    later = timezone.now() + dt.timedelta(seconds=601)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert Api(plain).get("/v0/devices/").status_code == 401
    assert Api(new_plain).get("/v0/devices/").status_code == 200


def test_a_revoked_key_cannot_be_rotated(org: Org) -> None:
    key, _ = create_api_key(org.tenant, "admin")
    revoke_api_key(key)
    key.refresh_from_db()

    with pytest.raises(ValueError, match="revoked"):
        rotate_api_key(key)


def test_the_command_prints_the_new_key_alone_on_its_last_line(org: Org) -> None:
    _key, plain = create_api_key(org.tenant, "viewer", "dashboards")
    out = StringIO()

    call_command("rotate_api_key", "--prefix", plain.split("_")[1], stdout=out, stderr=StringIO())

    new_plain = out.getvalue().strip().splitlines()[-1]
    assert Api(new_plain).get("/v0/devices/").status_code == 200
    assert Api(plain).get("/v0/devices/").status_code == 401
    assert ApiKey.objects.filter(tenant=org.tenant, name="dashboards").count() == 2


def test_the_command_refuses_an_unknown_prefix(db: None) -> None:
    with pytest.raises(CommandError, match="no API key"):
        call_command("rotate_api_key", "--prefix", "0123456789abcdef", stdout=StringIO())
