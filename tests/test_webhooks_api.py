"""``/v0/webhooks/``: admin keys only, the secret shown once and sealed at rest, 400s that
name the field, tenant scope, ping, deliveries and redeliver."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from config.encryption import unseal
from inventory.models import PendingDelivery, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.conftest import DeviceActor, Org
from tests.helpers import content, error

pytestmark = pytest.mark.django_db

HOOKS = "/v0/webhooks/"
PUBLIC = "https://93.184.216.34/hooks"  # a public address literal: no DNS, never called here


def create(org: Org, **body: Any) -> dict[str, Any]:
    return dict(content(org.admin.post(HOOKS, {"url": PUBLIC, "events": ["*"], **body}), 201))


def test_create_shows_the_secret_once_and_keeps_it_sealed(org: Org) -> None:
    created = create(org, description="ops", events=["operation.created", "command.state_changed"])

    secret = created["secret"]
    assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert created["events"] == ["operation.created", "command.state_changed"]
    assert (created["active"], created["description"], created["disabled_at"]) == (True, "ops", None)
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    assert secret not in endpoint.secret_sealed and unseal(endpoint.secret_sealed) == secret
    shown = content(org.admin.get(f"{HOOKS}{created['id']}/"))
    listed = content(org.admin.get(HOOKS))["results"]
    assert "secret" not in shown and all("secret" not in item for item in listed)
    assert [item["id"] for item in listed] == [created["id"]]


def test_only_admin_keys_manage_webhooks(org: Org, device: DeviceActor) -> None:
    for api in (org.operator, org.viewer, device.api):
        assert api.get(HOOKS).status_code == 403
        assert api.post(HOOKS, {"url": PUBLIC, "events": ["*"]}).status_code == 403
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["operation.exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"events": "*"}, "events"),
        ({"events": [1]}, "events"),
        ({"url": "ftp://93.184.216.34/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://localhost/x"}, "url"),
        ({"url": "http://10.0.0.5/x"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
        ({"url": "http://[::1]:8000/x"}, "url"),
        ({"url": "http://does-not-exist.invalid/x"}, "url"),
        ({"url": "http://93.184.216.34:99999/x"}, "url"),
        ({"url": 5}, "url"),
        ({"active": "maybe"}, "active"),
        ({"description": "x" * 501}, "description"),
    ],
)
def test_bad_input_is_400_naming_the_field(org: Org, body: dict[str, Any], field: str) -> None:
    answer = error(org.admin.post(HOOKS, {"url": PUBLIC, "events": ["*"], **body}), 400)
    assert field in answer["errors"], answer
    endpoint = create(org)
    answer = error(org.admin.patch(f"{HOOKS}{endpoint['id']}/", body), 400)
    assert field in answer["errors"], answer


#: IPv6 forms of private IPv4 addresses, and site-local IPv6 (issue 23 item 7): each must be
#: refused as its embedded IPv4 would be.
EMBEDDED_PRIVATE = [
    ("http://[2002:7f00:1::]/x", "127.0.0.1"),  # 6to4 of the loopback
    ("http://[2002:a9fe:a9fe::]/latest/meta-data/", "169.254.169.254"),  # 6to4 of the metadata service
    ("http://[2002:a00:1::]/x", "10.0.0.1"),  # 6to4 of a private address
    ("http://[fec0::1]/x", "site-local"),
    ("http://[::ffff:127.0.0.1]/x", "127.0.0.1"),  # IPv4-mapped
    ("http://[::ffff:a9fe:a9fe]/x", "169.254.169.254"),
    ("http://[64:ff9b::7f00:1]/x", "127.0.0.1"),  # NAT64
    ("http://[64:ff9b::a9fe:a9fe]/x", "169.254.169.254"),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", "127.0.0.1"),  # Teredo, client 127.0.0.1
    ("http://[::7f00:1]/x", "127.0.0.1"),  # IPv4-compatible
]


@pytest.mark.parametrize(("url", "named"), EMBEDDED_PRIVATE, ids=[url for url, _ in EMBEDDED_PRIVATE])
def test_ipv6_forms_of_private_addresses_are_refused_naming_them(org: Org, url: str, named: str) -> None:
    refused = error(org.admin.post(HOOKS, {"url": url, "events": ["*"]}), 400, "url_refused")

    assert named in refused["errors"]["url"][0], refused
    assert WebhookEndpoint.objects.count() == 0
    endpoint = create(org)
    error(org.admin.patch(f"{HOOKS}{endpoint['id']}/", {"url": url}), 400, "url_refused")
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == PUBLIC


#: A URL with whitespace or a control character is refused wherever it is, raw or
#: percent-encoded (a control character only: ``%20`` is how a URL writes a space).
UNSENDABLE = [
    (f"{PUBLIC}\r\nX-Injected: 1", "a carriage return (CR)"),
    (f"{PUBLIC}\nX-Injected: 1", "a line feed (LF)"),
    (f"{PUBLIC}?a=1\tb", "a tab"),
    ("https://93.184.216.34/my hooks", "a space"),
    (f" {PUBLIC}", "a space"),
    (f"{PUBLIC}\n", "a line feed (LF)"),
    (f"{PUBLIC}\x00", "U+0000"),
    (f"{PUBLIC}\u2028", "U+2028"),
    (f"{PUBLIC}%0d%0aX-Injected:%201", "%0d"),
    (f"{PUBLIC}?q=%0A", "%0A"),
]


@pytest.mark.parametrize(("url", "reason"), UNSENDABLE, ids=[repr(url) for url, _ in UNSENDABLE])
def test_urls_with_whitespace_or_control_characters_are_refused_and_not_stored(
    org: Org, settings: Any, url: str, reason: str
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # a format check: no setting lifts it

    refused = error(org.admin.post(HOOKS, {"url": url, "events": ["*"]}), 400, "url_refused")

    assert list(refused["errors"]) == ["url"]
    assert reason in refused["errors"]["url"][0], refused
    assert refused["message"].startswith("url: ")
    assert WebhookEndpoint.objects.count() == 0
    endpoint = create(org)
    error(org.admin.patch(f"{HOOKS}{endpoint['id']}/", {"url": url}), 400, "url_refused")
    assert WebhookEndpoint.objects.get(pk=endpoint["id"]).url == PUBLIC


@pytest.mark.parametrize(
    "url",
    [
        "https://[2002:5db8:d822::]/hooks",  # 6to4 of a public address (93.184.216.34)
        "https://[::ffff:93.184.216.34]/hooks",  # IPv4-mapped public address
        "https://93.184.216.34/my%20hooks?x=%41",  # an encoded space and letter are no control characters
    ],
)
def test_public_addresses_in_ipv6_form_and_encoded_spaces_are_taken(org: Org, url: str) -> None:
    assert create(org, url=url)["url"] == url


def test_private_networks_may_be_allowed(org: Org, settings: Any) -> None:
    """Refused, the error names the setting that allows it (issue 26); set, it is taken."""
    refused = error(org.admin.post(HOOKS, {"url": "http://127.0.0.1:8080/hooks", "events": ["*"]}), 400)
    assert "WEBHOOK_ALLOW_PRIVATE_NETWORKS=1" in refused["errors"]["url"][0], refused
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert create(org, url="http://127.0.0.1:8080/hooks")["url"] == "http://127.0.0.1:8080/hooks"


def test_another_tenant_sees_nothing(org: Org, other_org: Org) -> None:
    created = create(org)
    path = f"{HOOKS}{created['id']}/"
    assert content(other_org.admin.get(HOOKS))["results"] == []
    for answer in (
        other_org.admin.get(path),
        other_org.admin.patch(path, {"active": False}),
        other_org.admin.delete(path),
        other_org.admin.post(f"{path}ping/"),
        other_org.admin.post(f"{path}rotate-secret/"),
        other_org.admin.get(f"{path}deliveries/"),
    ):
        assert answer.status_code == 404, answer.content
    assert WebhookEndpoint.objects.get(pk=created["id"]).active


def test_patch_rotate_and_delete(org: Org) -> None:
    created = create(org)
    path = f"{HOOKS}{created['id']}/"
    changed = content(org.admin.patch(path, {"events": ["device.created"], "active": False}))
    assert (changed["events"], changed["active"]) == (["device.created"], False)
    rotated = content(org.admin.post(f"{path}rotate-secret/"))
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert unseal(WebhookEndpoint.objects.get(pk=created["id"]).secret_sealed) == rotated["secret"]
    assert org.admin.delete(path).status_code == 204
    assert org.admin.get(path).status_code == 404


def test_ping_queues_a_ping_for_this_endpoint_only(org: Org) -> None:
    first, second = create(org), create(org)
    answer = org.admin.post(f"{HOOKS}{first['id']}/ping/")
    assert answer.status_code == 202, answer.content
    event = WebhookEvent.objects.get()
    assert event.type == "webhook.ping" and str(event.endpoint_id) == first["id"]
    assert [str(p.endpoint_id) for p in PendingDelivery.objects.all()] == [first["id"]]
    org.admin.patch(f"{HOOKS}{second['id']}/", {"active": False})
    error(org.admin.post(f"{HOOKS}{second['id']}/ping/"), 400, "endpoint_disabled")


def test_deliveries_list_and_redeliver(org: Org) -> None:
    created = create(org)
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    event = WebhookEvent.objects.create(tenant=org.tenant, type="device.created", data={"id": "d"})
    attempt = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=event,
        event_type=event.type,
        attempt=1,
        status_code=503,
        error="",
        duration_ms=12,
        created_at=timezone.now(),
        next_retry_at=timezone.now(),
    )
    page = content(org.admin.get(f"{HOOKS}{created['id']}/deliveries/"))
    assert page["count"] == 1
    [row] = page["results"]
    assert row["id"] == str(attempt.pk) and row["event_id"] == f"evt_{event.pk}"
    assert (row["event_type"], row["attempt"], row["status_code"], row["duration_ms"]) == (
        "device.created",
        1,
        503,
        12,
    )
    assert set(row) == {
        "id",
        "event_id",
        "event_type",
        "attempt",
        "status_code",
        "error",
        "duration_ms",
        "created_at",
        "next_retry_at",
    }

    redeliver = f"{HOOKS}{created['id']}/deliveries/{attempt.pk}/redeliver/"
    assert org.admin.post(redeliver).status_code == 202
    pending = PendingDelivery.objects.get(endpoint=endpoint, event=event)
    assert pending.attempt == 2 and pending.due_at <= timezone.now()

    other = create(org)
    assert org.admin.post(f"{HOOKS}{other['id']}/deliveries/{attempt.pk}/redeliver/").status_code == 404
    assert org.admin.post(f"{HOOKS}{created['id']}/deliveries/999999999/redeliver/").status_code == 404
    with connection.cursor() as cursor:  # as the retention purge does: the attempts stay
        cursor.execute(f"DELETE FROM {WebhookEvent._meta.db_table}")
    error(org.admin.post(redeliver), 400, "event_purged")
