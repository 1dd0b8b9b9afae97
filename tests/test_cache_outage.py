"""A Redis outage through the test client (issue 23): the cache of these tests is a Redis of
their own (``tests/faults.py``), stopped and started again; the database is the test run's.

While it is down: API keys and device tokens are looked up in PostgreSQL, so reads and the
write paths go on (a device's poll and report, an operation's POST and PUT CANCELLED,
``/metrics``); the rate limits are not counted (they fail open); the inbox answers from the
database without a 304; a rollout's rate-limited commands are held back; what still needs the
cache answers 503 with ``Retry-After`` in the endpoint's envelope (device tokens with
``CACHE_OUTAGE_SERVES_DEVICES`` off). Once it is back, everything answers as before.
``tests/test_faults_redis.py`` does the same behind gunicorn, under traffic.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings
from prometheus_client import REGISTRY

from commands.choices import CommandState
from commands.models import CommandStatus
from config.errors import CacheUnavailable
from inventory.models import ApiKey
from inventory.services import create_api_key, revoke_api_key
from operations.choices import OperationState
from operations.models import Operation
from tests.command_factories import dispatched_operation
from tests.conftest import Api, DeviceActor, Org, add_devices, wait_until
from tests.faults import RedisServer
from tests.helpers import content, error, handed_out, poll_inbox
from tests.test_metrics import METRICS_TOKEN

pytestmark = pytest.mark.faults


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own as the cache (the broker stays the run's)."""
    server = RedisServer(tmp_path)
    server.start()
    own = {"default": {**settings.CACHES["default"], "LOCATION": server.url(0)}}
    try:
        with override_settings(CACHES=own):
            yield server
    finally:
        server.stop()


def _answers() -> bool:
    try:
        cache.get("probe")
    except CacheUnavailable:
        return False
    return True


def back(server: RedisServer) -> None:
    """Start ``server`` again and wait until this process's cache answers (a second at most
    after its last failure)."""
    server.start()
    wait_until(_answers, timeout=10, interval=0.1, what="the cache to answer again")


def unavailable_uses(use: str) -> float:
    return REGISTRY.get_sample_value("dos_cache_unavailable_total", {"use": use}) or 0.0


def test_every_path_goes_on_from_the_database_while_redis_is_down(
    redis_server: RedisServer, org: Org
) -> None:
    devices = add_devices(org.tenant, 2)
    device, other = devices
    operation = dispatched_operation(org.tenant, devices)
    [command_id] = handed_out(poll_inbox(device))  # the lookups are cached now
    empty = poll_inbox(device)
    assert empty.status_code == 200 and empty["ETag"]
    assert poll_inbox(device, HTTP_IF_NONE_MATCH=empty["ETag"]).status_code == 304
    looked_up = unavailable_uses("token_lookup")

    redis_server.stop()

    # The inbox: from the database, handing out, and never a 304 (no generation can be read).
    assert handed_out(poll_inbox(other)) == [CommandStatus.objects.get(device=other.device).pk]
    again = poll_inbox(device, HTTP_IF_NONE_MATCH=empty["ETag"])
    assert again.status_code == 200 and content(again)["results"] == []
    assert "ETag" not in again  # "nothing new" cannot be named without its generations
    # The device's report, on the plain view.
    report = device.api.put(f"/commands/v0/status/{command_id}/", {"state": "Command Acknowledged"})
    assert content(report)["state"] == "Command Acknowledged"
    # An operator's reads and writes.
    assert content(org.viewer.get("/v0/devices/"))["count"] == 2
    created = content(
        org.operator.post(
            "/v0/operations/", {"operation_type": "REBOOT", "operation_device_query": {"all": True}}
        ),
        201,
    )
    cancelled = org.operator.put(
        f"/v0/operations/{operation.pk}/", {"state": "CANCELLED", "reason": "no cache"}
    )
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["content"]["state"] == "CANCELLED"
    assert Operation.objects.get(pk=operation.pk).state == OperationState.CANCELLED
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        metrics = Api(METRICS_TOKEN).get("/metrics")
    assert metrics.status_code == 200 and b"dos_cache_unavailable_total" in metrics.content
    assert unavailable_uses("token_lookup") > looked_up

    back(redis_server)

    # Answers as before: a lookup cached again, the empty answer's ETag and its 304.
    assert content(org.viewer.get(f"/v0/operations/{created['id']}/"))["id"] == created["id"]
    fresh = poll_inbox(device)
    assert fresh.status_code == 200 and fresh["ETag"]
    assert poll_inbox(device, HTTP_IF_NONE_MATCH=fresh["ETag"]).status_code == 304


@override_settings(
    RATE_LIMIT_KEY_PER_MINUTE=2, RATE_LIMIT_DEVICE_PER_MINUTE=2, RATE_LIMIT_AUTH_FAILURES_PER_MINUTE=1
)
def test_the_rate_limits_fail_open_while_redis_is_down(
    redis_server: RedisServer, org: Org, device: DeviceActor, fresh_rate_window: None
) -> None:
    """Nothing can be counted, so nothing is refused for it; counted again once Redis is back
    (it kept nothing, so the window starts afresh)."""
    stranger = Api(f"dok_{'0' * 16}_no-such-key")  # well-formed: its failures are counted
    redis_server.stop()

    assert [org.admin.get("/v0/devices/").status_code for _ in range(4)] == [200] * 4
    assert [poll_inbox(device).status_code for _ in range(4)] == [200] * 4
    assert [stranger.get("/v0/devices/").status_code for _ in range(3)] == [401] * 3

    back(redis_server)

    assert [org.admin.get("/v0/devices/").status_code for _ in range(3)] == [200, 200, 429]
    assert [stranger.get("/v0/devices/").status_code for _ in range(2)] == [401, 429]


@override_settings(CACHE_OUTAGE_SERVES_DEVICES=False)
def test_device_tokens_answer_503_while_redis_is_down_when_set_so(
    redis_server: RedisServer, org: Org, device: DeviceActor
) -> None:
    """The large fleet's choice (docs/scaling.md): devices wait for Redis, PostgreSQL serves
    the operators. Every answer is the endpoint's envelope, the plain views' and DRF's alike."""
    operation = dispatched_operation(org.tenant, [device])
    command = CommandStatus.objects.get(operation=operation)
    redis_server.stop()

    answers = {
        "inbox (plain view)": poll_inbox(device),
        "report (plain view)": device.api.put(
            f"/commands/v0/status/{command.pk}/", {"state": "Command Success"}
        ),
        "command list (DRF)": device.api.get("/commands/v0/status/", {"device": device.device.device_id}),
    }
    for what, answer in answers.items():
        body = error(answer, 503, "cache_unavailable")
        assert answer["Retry-After"] == "5", what
        assert answer["Content-Type"] == "application/json", what
        assert body["errors"] == {}, what
    assert CommandStatus.objects.get(pk=command.pk).state == command.state  # nothing moved
    assert org.admin.get("/v0/devices/").status_code == 200  # keys are still served

    back(redis_server)
    assert poll_inbox(device).status_code == 200


def test_a_rollouts_rate_limited_commands_wait_for_redis(redis_server: RedisServer, org: Org) -> None:
    """Its window cannot be counted, so none is handed out (failing open could hand a fleet its
    download at once); picked, put back, and handed out once Redis is back."""
    devices = add_devices(org.tenant, 2)
    operation = dispatched_operation(org.tenant, devices, rollout={"max_per_minute": 5})
    redis_server.stop()

    held = poll_inbox(devices[0])
    assert content(held)["results"] == [] and "ETag" not in held
    assert CommandStatus.objects.filter(operation=operation, state=CommandState.QUEUED).count() == 2
    status = content(org.viewer.get(f"/v0/operations/{operation.pk}/"))["rollout_status"]
    assert status["handed_out_last_minute"] is None  # unknown, not refused

    back(redis_server)
    wait_until(lambda: handed_out(poll_inbox(devices[1])), timeout=10, what="a hand-out after the outage")


def test_a_key_revoked_while_redis_does_not_answer_stops_at_once_and_its_cached_lookup_goes_when_it_does(
    redis_server: RedisServer, org: Org
) -> None:
    """A Redis that hangs (SIGSTOP: it keeps its data, answers nothing) while a key is revoked:
    the revocation stands, the key is refused at once (lookups read PostgreSQL meanwhile), and
    its cached lookup, still in Redis, is dropped once it answers, before it could be served."""
    key, plain = create_api_key(org.tenant, "admin", "leaked")
    leaked = Api(plain)
    assert leaked.get("/v0/devices/").status_code == 200  # its lookup is cached
    assert cache.get(f"auth:{key.prefix}") is not None
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        revoke_api_key(key)  # waits for the socket timeout once, then defers the cache drop
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
        error(leaked.get("/v0/devices/"), 401, "authentication_failed")
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)

    wait_until(_answers, timeout=10, interval=0.1, what="the cache to answer again")
    assert cache.get(f"auth:{key.prefix}") is None
    error(leaked.get("/v0/devices/"), 401, "authentication_failed")


def test_the_console_goes_on_while_redis_is_down(
    redis_server: RedisServer, org: Org, console: Client
) -> None:
    """Its pages read PostgreSQL; a rollout's rate shows as unknown; its cancel button works."""
    device = add_devices(org.tenant, 1)
    operation = dispatched_operation(org.tenant, device, rollout={"max_per_minute": 5})
    base = f"/admin/operations/operation/{operation.pk}/"
    redis_server.stop()

    for path in ("/admin/", "/admin/operations/operation/", f"{base}change/", "/admin/inventory/device/"):
        assert console.get(path).status_code == 200, path
    assert console.get(f"{base}progress/").json()["state"] == "DISPATCHED"
    assert console.post(f"{base}cancel/", {"confirmed": "yes"}).status_code == 302
    assert console.get(f"{base}progress/").json()["state"] == "CANCELLED"


def test_an_empty_answers_etag_of_before_a_restart_never_hides_a_command_of_after(
    redis_server: RedisServer, org: Org
) -> None:
    """Redis keeps nothing on disk: a restart loses the generations, and a counter made again
    from nothing must not reach the value an ETag of before the restart names (it did: one
    bump before, one after, both read 2, and the device heard 304 with a command queued)."""
    device, other = add_devices(org.tenant, 2)
    dispatched_operation(org.tenant, [other])  # the tenant's generation is bumped once
    etag = poll_inbox(device)["ETag"]
    assert poll_inbox(device, HTTP_IF_NONE_MATCH=etag).status_code == 304

    redis_server.stop()
    back(redis_server)
    dispatched_operation(org.tenant, [device])  # bumped once again, from nothing

    assert len(handed_out(poll_inbox(device, HTTP_IF_NONE_MATCH=etag))) == 1
