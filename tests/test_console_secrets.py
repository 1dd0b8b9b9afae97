"""Plain keys and device tokens made in the console: shown once, on a page of their own, to the
user who made them, and never put into ``django.contrib.messages`` (whose cookie would carry
them to the browser and back on every request)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.contrib.messages.storage.cookie import CookieStorage, MessageSerializer
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from inventory import tokens
from inventory.models import ApiKey, Device, Group
from inventory.services import create_api_key, create_device
from tests.conftest import Api, Org, superuser_console

SECRET_PAGE = re.compile(r"^/admin/inventory/(apikey|device|webhookendpoint)/secret/[\w-]+/$")
INBOX = "/v2/command-inbox/"


def message_texts(client: Client, page: Any) -> list[str]:
    """Every message the user has: those waiting in the cookie and those the page rendered."""
    waiting = client.cookies.get("messages")
    signer = signing.get_cookie_signer(salt=CookieStorage.key_salt)
    stored = (
        signer.unsign_object(waiting.value, serializer=MessageSerializer)  # type: ignore[arg-type]  # stubs
        if waiting is not None and waiting.value
        else []
    )
    rendered = list(page.context["messages"]) if page.context and "messages" in page.context else []
    return [str(message) for message in [*stored, *rendered]]


def one_time_secrets(client: Client, response: Any) -> tuple[str, list[str]]:
    """Follow a console view's redirect to its one-time page; the page's URL and plain values.

    Checks on the way what every such page must hold to: the redirect carries no secret, no
    message does, the page is not cached, and a second visit shows nothing.
    """
    assert response.status_code == 302, response.content.decode()[:500]
    url = response["Location"]
    assert SECRET_PAGE.match(url), url
    page = client.get(url)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    html = page.content.decode()
    plains = re.findall(r'<code id="secret-value[-\d]*" class="secret-value"[^>]*>([^<]+)</code>', html)
    assert plains and 'id="copy-secret"' in html
    texts = message_texts(client, page)
    assert not [text for text in texts for plain in plains if plain in text]
    again = client.get(url)
    assert again.status_code == 410 and "no-store" in again["Cache-Control"]
    assert 'id="secret-gone"' in again.content.decode()
    assert not [plain for plain in plains if plain in again.content.decode()]
    session = json.dumps(dict(client.session))
    assert not [plain for plain in plains if plain in session], "the page left the secret in the session"
    return url, plains


def test_a_new_key_is_shown_once_and_works(console: Client, org: Org) -> None:
    response = console.post(
        "/admin/inventory/apikey/add/",
        {
            "tenant": org.tenant.pk,
            "name": "ci",
            "role": "viewer",
            "expires_at_0": "2099-01-02",
            "expires_at_1": "03:04:05",
        },
    )
    waiting = message_texts(console, response)

    _, [plain] = one_time_secrets(console, response)

    key = ApiKey.objects.get(name="ci")
    assert plain.startswith(f"{tokens.API_KEY_KIND}_{key.prefix}_")
    assert key.expires_at == dt.datetime(2099, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert waiting == [f"The API key “{key}” was added successfully."]
    assert Api(plain).get("/v0/devices/").status_code == 200


def test_another_user_cannot_open_the_page_and_does_not_use_it_up(console: Client, org: Org) -> None:
    response = console.post("/admin/inventory/apikey/add/", {"tenant": org.tenant.pk, "role": "admin"})
    url = response["Location"]

    other = superuser_console("eve").get(url)

    assert other.status_code == 410 and 'id="secret-gone"' in other.content.decode()
    assert tokens.API_KEY_KIND + "_" not in other.content.decode()
    _, [plain] = one_time_secrets(console, response)
    assert Api(plain).get("/v0/devices/").status_code == 200


def test_a_page_not_opened_in_time_is_gone(
    console: Client, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = console.post("/admin/inventory/apikey/add/", {"tenant": org.tenant.pk, "role": "viewer"})
    later = timezone.now() + dt.timedelta(minutes=11)
    monkeypatch.setattr(timezone, "now", lambda: later)

    page = console.get(response["Location"])

    assert page.status_code == 410 and "not opened within 10 minutes" in page.content.decode()
    assert "console_secrets_once" not in console.session


def test_rotating_keys_shows_every_new_key_once(console: Client, org: Org) -> None:
    old = [create_api_key(org.tenant, "operator", name) for name in ("deploy", "backup")]
    revoked, _ = create_api_key(org.tenant, "viewer", "gone")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    response = console.post(
        "/admin/inventory/apikey/",
        {"action": "rotate", "_selected_action": [str(key.pk) for key, _ in old] + [str(revoked.pk)]},
    )
    waiting = message_texts(console, response)
    _, plains = one_time_secrets(console, response)

    assert waiting == ["Skipped 1 revoked key(s): make a new key instead."]
    assert len(plains) == 2
    for plain in plains:
        assert Api(plain).get("/v0/devices/").status_code == 200
    for _, old_plain in old:
        assert Api(old_plain).get("/v0/devices/").status_code == 401


def test_a_device_made_in_the_console_gets_its_token_once(console: Client, org: Org) -> None:
    group = Group.objects.create(tenant=org.tenant, name="tills")
    response = console.post(
        "/admin/inventory/device/add/",
        {
            "tenant": org.tenant.pk,
            "device_id": "till-1",
            "os": "android",
            "state": "active",
            "timezone": "Europe/Berlin",
            "tags": '["shop"]',
            "groups": [str(group.pk)],
        },
    )

    url, [plain] = one_time_secrets(console, response)

    device = Device.objects.get(device_id="till-1")
    assert url.startswith("/admin/inventory/device/secret/")
    assert plain.startswith(f"{tokens.DEVICE_TOKEN_KIND}_{device.token_prefix}_")
    assert (device.name, device.tags, list(device.groups.all())) == ("till-1", ["shop"], [group])
    assert Api(plain).get(INBOX, {"device_id": "till-1"}).status_code == 200


def test_device_token_rotation_by_button_and_by_action(console: Client, org: Org) -> None:
    devices = [create_device(org.tenant.pk, {"device_id": f"d-{i}"}) for i in range(3)]
    first, first_token = devices[0]

    button = console.post(f"/admin/inventory/device/{first.pk}/rotate-token/")
    _, [by_button] = one_time_secrets(console, button)
    action = console.post(
        "/admin/inventory/device/",
        {"action": "rotate_token", "_selected_action": [str(device.pk) for device, _ in devices[1:]]},
    )
    _, by_action = one_time_secrets(console, action)

    assert Api(first_token).get(INBOX, {"device_id": "d-0"}).status_code == 401
    assert Api(by_button).get(INBOX, {"device_id": "d-0"}).status_code == 200
    assert len(by_action) == 2
    for index, ((_, old_token), new_token) in enumerate(zip(devices[1:], by_action, strict=True), start=1):
        assert Api(old_token).get(INBOX, {"device_id": f"d-{index}"}).status_code == 401
        assert Api(new_token).get(INBOX, {"device_id": f"d-{index}"}).status_code == 200


def test_a_page_is_shown_only_under_the_screen_that_made_it(console: Client, org: Org) -> None:
    device, _ = create_device(org.tenant.pk, {"device_id": "d-1"})
    response = console.post(f"/admin/inventory/device/{device.pk}/rotate-token/")
    once_id = response["Location"].rstrip("/").rsplit("/", 1)[1]

    assert console.get(f"/admin/inventory/apikey/secret/{once_id}/").status_code == 410
    one_time_secrets(console, response)


def test_a_session_kept_in_a_cookie_is_refused(db: None, org: Org, settings: Any) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    console = superuser_console("root")

    with pytest.raises(ImproperlyConfigured, match="server-side SESSION_ENGINE"):
        console.post("/admin/inventory/apikey/add/", {"tenant": org.tenant.pk, "name": "ci", "role": "admin"})

    assert not ApiKey.objects.filter(name="ci").exists()  # the add view's transaction rolled back
