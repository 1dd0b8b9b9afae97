"""Resource limits (OWASP API4): requests per minute per token, body size, page size, and the
length of an explicit device list."""

from __future__ import annotations

from typing import Any

import pytest

from inventory import ratelimit
from inventory.models import Device
from inventory.services import create_api_key
from tests.conftest import Api, DeviceActor, Org, add_device
from tests.helpers import error


@pytest.fixture(autouse=True)
def _counted_in_one_window(fresh_rate_window: None) -> None:
    """Every test here counts requests up to a limit within one minute's window."""


def assert_throttled(response: Any) -> None:
    error(response, 429)
    assert 1 <= int(response["Retry-After"]) <= ratelimit.WINDOW_SECONDS


def test_an_api_key_past_its_limit_gets_429_with_retry_after(org: Org, settings: Any) -> None:
    settings.RATE_LIMIT_KEY_PER_MINUTE = 3
    for _ in range(3):
        assert org.admin.get("/v0/devices/").status_code == 200

    assert_throttled(org.admin.get("/v0/devices/"))
    assert_throttled(org.admin.post("/v0/groups/", {"name": "over the limit"}))


def test_each_key_has_its_own_counter(org: Org, settings: Any) -> None:
    settings.RATE_LIMIT_KEY_PER_MINUTE = 2
    for _ in range(3):
        org.admin.get("/v0/devices/")

    assert org.viewer.get("/v0/devices/").status_code == 200
    assert_throttled(org.admin.get("/v0/devices/"))


def test_a_device_token_past_its_limit_gets_429_on_the_inbox_and_statuses(
    org: Org, device: DeviceActor, settings: Any
) -> None:
    settings.RATE_LIMIT_DEVICE_PER_MINUTE = 2
    inbox = "/v2/command-inbox/"
    assert device.api.get(inbox, {"device_id": "dev-1"}).status_code == 200
    assert device.api.get("/commands/v0/status/").status_code == 200

    assert_throttled(device.api.get(inbox, {"device_id": "dev-1"}))
    assert_throttled(device.api.get("/commands/v0/status/"))
    other = add_device(org.tenant, "dev-2")
    assert other.api.get(inbox, {"device_id": "dev-2"}).status_code == 200


def test_a_304_poll_counts_too(org: Org, device: DeviceActor, settings: Any) -> None:
    settings.RATE_LIMIT_DEVICE_PER_MINUTE = 2
    first = device.api.get("/v2/command-inbox/", {"device_id": "dev-1"})
    etag = first["ETag"]
    assert (
        device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}, HTTP_IF_NONE_MATCH=etag).status_code
        == 304
    )

    assert_throttled(device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}, HTTP_IF_NONE_MATCH=etag))


def test_device_and_key_limits_are_separate_settings(org: Org, device: DeviceActor, settings: Any) -> None:
    settings.RATE_LIMIT_DEVICE_PER_MINUTE = 1
    settings.RATE_LIMIT_KEY_PER_MINUTE = 100
    device.api.get("/commands/v0/status/")

    assert_throttled(device.api.get("/commands/v0/status/"))
    assert org.admin.get("/v2/command-inbox/", {"device_id": "dev-1"}).status_code == 200


def test_zero_turns_a_limit_off(org: Org, settings: Any) -> None:
    settings.RATE_LIMIT_KEY_PER_MINUTE = 0

    for _ in range(20):
        assert org.viewer.get("/v0/groups/").status_code == 200


def test_an_invalid_token_is_401_not_429(org: Org, settings: Any) -> None:
    settings.RATE_LIMIT_KEY_PER_MINUTE = 1
    _key, plain = create_api_key(org.tenant, "admin", "x")
    wrong = Api(plain[:-4] + "AAAA")  # the right prefix, the wrong secret

    for _ in range(3):
        assert wrong.get("/v0/devices/").status_code == 401


def test_the_window_is_a_cache_counter_that_expires(org: Org, settings: Any) -> None:
    from django.core.cache import caches

    cache: Any = caches["default"]
    settings.RATE_LIMIT_KEY_PER_MINUTE = 10
    org.admin.get("/v0/devices/")

    keys = list(cache._cache.get_client().keys("*rl:*")) if hasattr(cache, "_cache") else []
    if keys:  # Redis: the counter carries the window's expiry
        ttl = cache._cache.get_client().ttl(keys[0])
        assert 0 < ttl <= ratelimit.WINDOW_SECONDS + 1


# --- a token's budget is spent only by its holder; failures are counted per address ---------------


def _forged(token: str) -> str:
    """The token's prefix (which shows in logs and lookups) with a wrong secret."""
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def test_wrong_secrets_with_a_devices_prefix_do_not_spend_its_requests(
    org: Org, device: DeviceActor, settings: Any
) -> None:
    """Issue 12 item 6: 620 requests with a real prefix and a wrong secret made the real token
    answer 429. Only a verified token spends its budget."""
    settings.RATE_LIMIT_DEVICE_PER_MINUTE = 3
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 0  # this test is about the token's own counter
    forged = Api(_forged(device.token))
    for _ in range(10):
        error(forged.get("/v2/command-inbox/", {"device_id": "dev-1"}), 401)
        error(forged.get("/commands/v0/status/"), 401)

    assert device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}).status_code == 200
    assert device.api.get("/commands/v0/status/").status_code == 200


def test_wrong_secrets_with_a_keys_prefix_do_not_spend_its_requests(org: Org, settings: Any) -> None:
    settings.RATE_LIMIT_KEY_PER_MINUTE = 2
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 0
    assert org.admin.token is not None
    forged = Api(_forged(org.admin.token))
    for _ in range(5):
        error(forged.get("/v0/devices/"), 401)

    assert org.admin.get("/v0/devices/").status_code == 200
    assert org.admin.get("/v0/devices/").status_code == 200
    assert_throttled(org.admin.get("/v0/devices/"))  # its own requests still count


@pytest.mark.parametrize("path", ["/v0/devices/", "/v2/command-inbox/?device_id=dev-1"])
def test_failures_past_the_limit_of_one_address_get_429(
    org: Org, device: DeviceActor, settings: Any, path: str
) -> None:
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 3
    unknown = Api("ddt_0123456789abcdef_unknownsecretunknownsecretunknownsecret")
    forged = Api(_forged(device.token))
    for api in (unknown, forged, unknown):
        error(api.get(path, REMOTE_ADDR="203.0.113.7"), 401)

    assert_throttled(forged.get(path, REMOTE_ADDR="203.0.113.7"))
    assert_throttled(unknown.get(path, REMOTE_ADDR="203.0.113.7"))
    error(unknown.get(path, REMOTE_ADDR="203.0.113.8"), 401)  # another address has its own count


def test_a_valid_token_is_never_refused_for_another_clients_failures(
    org: Org, device: DeviceActor, settings: Any
) -> None:
    """A device behind the same NAT as a guesser keeps working: the address's limit refuses
    failures only, and a device cannot be locked out by anyone without its token."""
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 2
    forged = Api(_forged(device.token))
    for _ in range(4):
        forged.get("/v2/command-inbox/", {"device_id": "dev-1"}, REMOTE_ADDR="198.51.100.1")
    assert_throttled(forged.get("/v2/command-inbox/", {"device_id": "dev-1"}, REMOTE_ADDR="198.51.100.1"))

    ok = device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}, REMOTE_ADDR="198.51.100.1")
    assert ok.status_code == 200
    assert org.admin.get("/v0/devices/", REMOTE_ADDR="198.51.100.1").status_code == 200


def test_x_forwarded_for_is_ignored_unless_proxies_are_trusted(org: Org, settings: Any) -> None:
    """Anyone can send X-Forwarded-For: with TRUSTED_PROXY_COUNT=0 a guesser cannot escape its
    address's count by varying it; behind N proxies the N-th address from the right counts."""
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 2
    unknown = Api("dok_0123456789abcdef_unknownsecretunknownsecretunknownsecret")
    for n in range(2):
        error(unknown.get("/v0/devices/", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}"), 401)
    assert_throttled(unknown.get("/v0/devices/", HTTP_X_FORWARDED_FOR="192.0.2.99"))

    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.5"  # every request comes from the proxy
    for spoofed in ("1.1.1.1", "not an address"):
        forwarded = f"{spoofed}, 192.0.2.10"
        error(unknown.get("/v0/devices/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=proxy), 401)
    assert_throttled(unknown.get("/v0/devices/", HTTP_X_FORWARDED_FOR="192.0.2.10", REMOTE_ADDR=proxy))
    error(unknown.get("/v0/devices/", HTTP_X_FORWARDED_FOR="192.0.2.11", REMOTE_ADDR=proxy), 401)


def test_the_304_poll_of_a_valid_token_stays_one_redis_round_trip(
    org: Org, device: DeviceActor, settings: Any
) -> None:
    """The token lookup, the token's counter and the inbox's generations: one pipeline."""
    import redis.connection

    settings.RATE_LIMIT_DEVICE_PER_MINUTE = 1000
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 10
    params = {"device_id": "dev-1"}
    etag = device.api.get("/v2/command-inbox/", params)["ETag"]
    assert device.api.get("/v2/command-inbox/", params, HTTP_IF_NONE_MATCH=etag).status_code == 304

    sends = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        sends.append(args)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
        assert device.api.get("/v2/command-inbox/", params, HTTP_IF_NONE_MATCH=etag).status_code == 304

    assert len(sends) == 1


# --- body size, page size, device lists ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v0/devices/bulk/"),
        ("post", "/v0/operations/"),
        ("post", "/api/v1/inventory_device_headless_operation/"),
        ("post", "/aggregates/maintenance/scheduler/jobs/orgId/acme"),
    ],
)
def test_a_body_over_the_limit_is_413_everywhere(org: Org, settings: Any, method: str, path: str) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = getattr(org.admin, method)(path, {"padding": "x" * 2000})

    assert response.status_code == 413, response.content
    body = response.json()
    assert "API_MAX_BODY_MB" in (body.get("message") or body["status"]["message"])
    assert not Device.objects.exists()


def test_page_size_is_capped(org: Org, settings: Any) -> None:
    settings.API_PAGE_SIZE_MAX = 2
    for i in range(3):
        add_device(org.tenant, f"d{i}")

    content = org.viewer.get("/v0/devices/", {"limit": 1_000_000}).json()["content"]

    assert len(content["results"]) == 2
    assert content["next"] is not None


def test_an_explicit_device_list_over_the_cap_is_a_clear_400(org: Org, settings: Any) -> None:
    settings.MAX_QUERY_DEVICES = 2
    body = {"operation_type": "REBOOT", "operation_device_query": {"devices": ["a", "b", "c"]}}

    response = org.admin.post("/v0/operations/", body)

    assert response.status_code == 400, response.content
    assert "at most 2" in response.json()["message"]
    assert "devices" in response.json()["message"]
