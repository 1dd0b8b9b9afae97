"""Idempotency keys on every POST (CONTRACT §11, docs/idempotency.md, ``config.api.idempotency``).

A replay answers the kept status and body with ``Idempotent-Replayed: true`` and does nothing
else; another method, path or body with the key is 422; a second request while the first runs
is 409 (two real threads, the first held inside its transaction by a table lock the test
holds, seen waiting in ``pg_stat_activity``); keys are per principal, expire, are purged; a non-2xx
answer frees the key; kept bodies are sealed at rest; every POST of the API honours the header.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import re
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import move_and_settle, report
from config.api.views import ApiViewMixin
from config.encryption import PREFIX, unseal
from config.idempotency.models import IdempotentRequest
from config.idempotency.store import purge_expired
from config.idempotency.tasks import purge_expired_keys
from inventory.models import AuditEntry, Device, Group
from inventory.services import create_api_key
from operations.models import HeadlessOperation, Operation
from tests.conftest import Api, CeleryProcesses, Org, _process_env, add_device, gunicorn, wait_until
from tests.helpers import content, error, openapi_document, task_events
from tests.test_metrics import scrape, value
from tests.world import World, build_world, fill, path_parameters, shape

KEY = "HTTP_IDEMPOTENCY_KEY"
DEVICES = "/v0/devices/"


def post(api: Api, path: str, body: Any, key: str | None = None, **headers: str) -> Any:
    if key is not None:
        headers[KEY] = key
    return api.post(path, body, **headers)


def kept_rows() -> list[IdempotentRequest]:
    return list(IdempotentRequest.objects.order_by("id"))


def raw_body(key: str) -> str:
    """The ``body`` column as PostgreSQL holds it, read with SQL, not through the model."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {IdempotentRequest._meta.db_table} WHERE key = %s", [key])
        (body,) = cursor.fetchone()
    return str(body)


def expire(key: str) -> None:
    """Move a key's end into the past: what the clock does after IDEMPOTENCY_TTL_HOURS (or a lease)."""
    IdempotentRequest.objects.filter(key=key).update(
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )


# --- replay -----------------------------------------------------------------------------------


def test_a_replay_answers_the_kept_status_and_body_and_makes_no_second_device(org: Org) -> None:
    first = post(org.admin, DEVICES, {"id": "kiosk-1", "name": "Kiosk"}, key="create-kiosk-1")
    made = content(first, 201)

    again = post(org.admin, DEVICES, {"id": "kiosk-1", "name": "Kiosk"}, key="create-kiosk-1")

    assert again.status_code == 201
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert made["token"]  # the kept answer carries the device token, shown once, and again here
    assert Device.objects.filter(tenant=org.tenant).count() == 1


def test_a_replay_makes_no_second_operation(org: Org) -> None:
    add_device(org.tenant, "dev-a")
    body = {"operation_type": "REBOOT", "operation_device_query": {"devices": ["dev-a"]}}
    first = post(org.operator, "/v0/operations/", body, key="reboot-dev-a")
    content(first, 201)

    again = post(org.operator, "/v0/operations/", body, key="reboot-dev-a")

    assert (again.status_code, again.content) == (201, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert Operation.objects.filter(tenant=org.tenant).count() == 1


def test_a_replayed_bulk_import_imports_nothing_and_answers_the_same_tokens(org: Org) -> None:
    rows = [{"id": f"bulk-{i}"} for i in range(3)]
    first = post(org.admin, f"{DEVICES}bulk/", rows, key="bulk-1")
    tokens = {d["id"]: d["token"] for d in content(first, 201)["devices"]}

    again = post(org.admin, f"{DEVICES}bulk/", rows, key="bulk-1")

    assert again["Idempotent-Replayed"] == "true"
    assert {d["id"]: d["token"] for d in content(again, 201)["devices"]} == tokens
    assert Device.objects.filter(tenant=org.tenant).count() == 3


def test_a_replayed_token_rotation_rotates_once(org: Org) -> None:
    add_device(org.tenant, "dev-r")
    path = f"{DEVICES}dev-r/rotate-token/"
    token = content(post(org.admin, path, None, key="rotate-r"))["token"]

    again = post(org.admin, path, None, key="rotate-r")

    assert again["Idempotent-Replayed"] == "true"
    assert content(again)["token"] == token
    # The token of the first answer is the device's: no second rotation replaced it.
    assert Api(token).get("/v2/command-inbox/", {"device_id": "dev-r"}).status_code == 200


def test_a_form_body_is_fingerprinted_by_its_bytes_and_replayed(org: Org) -> None:
    """Seed 001's form POST: the body is read for its fingerprint and still parsed by the view."""
    add_device(org.tenant, "dev-h")
    fields = {"data": json.dumps({"device_id": "dev-h", "operation_type": "reboot"})}
    url = "/api/v1/inventory_device_headless_operation/"
    auth = f"Bearer {org.admin.token}"

    def send(form: dict[str, str]) -> Any:
        return org.admin.client.post(
            url,
            urlencode(form),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=auth,
            HTTP_IDEMPOTENCY_KEY="form",
        )

    first = send(fields)
    assert first.status_code == 201, first.content
    assert send(fields).content == first.content
    assert send({**fields, "extra": "1"}).status_code == 422
    assert HeadlessOperation.objects.count() == 1


def test_a_replay_is_audited_like_any_write(org: Org) -> None:
    post(org.admin, "/v0/groups/", {"name": "lab"}, key="group-lab")
    post(org.admin, "/v0/groups/", {"name": "lab"}, key="group-lab")

    entries = AuditEntry.objects.filter(tenant_id=org.tenant.pk, path="/v0/groups/")
    assert [e.status_code for e in entries] == [201, 201]
    assert len({e.object_id for e in entries}) == 1 and Group.objects.count() == 1


def test_keyed_posts_are_counted_by_outcome_in_the_metrics(org: Org) -> None:
    def counts() -> dict[str, float]:
        families = scrape()
        return {
            outcome: value(families, "dos_idempotency_keys", "dos_idempotency_keys_total", outcome=outcome)
            for outcome in ("claimed", "replayed", "mismatch")
        }

    before = counts()
    post(org.admin, "/v0/groups/", {"name": "m"}, key="metrics")
    post(org.admin, "/v0/groups/", {"name": "m"}, key="metrics")
    post(org.admin, "/v0/groups/", {"name": "other"}, key="metrics")

    after = counts()
    assert {outcome: after[outcome] - before[outcome] for outcome in after} == {
        "claimed": 1,
        "replayed": 1,
        "mismatch": 1,
    }


# --- 422: the key was used for another request ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (DEVICES, {"id": "kiosk-2", "name": "Kiosk"}),  # another body
        (DEVICES, {"id": "kiosk-1", "name": "Kiosk", "serial": "S1"}),  # another body
        ("/v0/groups/", {"name": "kiosk-1"}),  # another path
        (f"{DEVICES}?on_conflict=skip", {"id": "kiosk-1", "name": "Kiosk"}),  # another query string
    ],
)
def test_the_key_with_another_path_or_body_is_422_and_does_nothing(org: Org, path: str, body: Any) -> None:
    content(post(org.admin, DEVICES, {"id": "kiosk-1", "name": "Kiosk"}, key="k-1"), 201)

    refused = error(post(org.admin, path, body, key="k-1"), 422)

    assert "Idempotency-Key" in refused["errors"]
    assert f"POST {DEVICES}" in refused["message"]
    assert Device.objects.count() == 1 and Group.objects.count() == 0


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_the_key_with_another_method_is_422_and_does_nothing(org: Org, method: str) -> None:
    content(post(org.admin, DEVICES, {"id": "kiosk-1", "name": "Kiosk"}, key="k-1"), 201)
    send = getattr(org.admin, method)
    args = () if method == "delete" else ({"name": "Renamed"},)

    refused = error(send(f"{DEVICES}kiosk-1/", *args, **{KEY: "k-1"}), 422)

    assert "Idempotency-Key" in refused["errors"]
    assert Device.objects.get().name == "Kiosk"


def test_a_put_patch_or_delete_with_a_fresh_key_runs_and_keeps_nothing(org: Org) -> None:
    add_device(org.tenant, "dev-p")

    content(org.admin.patch(f"{DEVICES}dev-p/", {"name": "One"}, **{KEY: "patch-1"}))
    content(org.admin.patch(f"{DEVICES}dev-p/", {"name": "Two"}, **{KEY: "patch-1"}))

    assert Device.objects.get().name == "Two"
    assert kept_rows() == []


# --- non-2xx answers free the key -------------------------------------------------------------


def test_a_refused_request_can_be_retried_with_the_same_key(org: Org) -> None:
    error(post(org.admin, DEVICES, {"id": "kiosk-1", "os_version": 7}, key="retry-me"), 400)
    assert kept_rows() == []

    fixed = post(org.admin, DEVICES, {"id": "kiosk-1", "os_version": "7"}, key="retry-me")

    assert fixed.status_code == 201 and not fixed.has_header("Idempotent-Replayed")
    assert [row.status_code for row in kept_rows()] == [201]


def test_a_conflict_is_not_kept_and_the_same_request_runs_again_once_it_is_resolved(org: Org) -> None:
    add_device(org.tenant, "taken")
    body = {"id": "taken", "name": "New"}
    error(post(org.admin, DEVICES, body, key="taken-1"), 409)
    org.admin.delete(f"{DEVICES}taken/")

    again = post(org.admin, DEVICES, body, key="taken-1")

    assert content(again, 201)["name"] == "New"
    assert not again.has_header("Idempotent-Replayed")


def test_a_request_refused_before_the_view_runs_claims_nothing(org: Org) -> None:
    error(post(org.viewer, DEVICES, {"id": "kiosk-1"}, key="viewer-1"), 403)
    error(post(Api("dok_not-a-key"), DEVICES, {"id": "kiosk-1"}, key="anon-1"), 401)

    assert kept_rows() == []


# --- the header --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "caf\u00e9", "tab\there", "new\nline", "nul\x00", "\x7f", "\u2603"],
    ids=["empty", "256-chars", "latin-1", "tab", "newline", "nul", "del", "snowman"],
)
def test_a_malformed_key_is_400_naming_the_header(org: Org, key: str) -> None:
    refused = error(post(org.admin, DEVICES, {"id": "kiosk-1"}, key=key), 400)

    assert "Idempotency-Key" in refused["errors"]
    assert "Idempotency-Key" in refused["message"]
    assert Device.objects.count() == 0 and kept_rows() == []


@pytest.mark.parametrize(
    "key", ["a", "x" * 255, "order 42 / retry #1 ~!", "550e8400-e29b-41d4-a716-446655440000"]
)
def test_keys_of_1_to_255_printable_characters_are_taken(org: Org, key: str) -> None:
    content(post(org.admin, "/v0/groups/", {"name": "g"}, key=key), 201)

    assert [row.key for row in kept_rows()] == [key]


def test_without_the_header_nothing_is_kept_and_every_post_runs(org: Org) -> None:
    content(post(org.admin, "/v0/groups/", {"name": "a"}), 201)
    content(post(org.admin, "/v0/groups/", {"name": "b"}), 201)

    assert kept_rows() == [] and Group.objects.count() == 2


def test_a_get_ignores_the_header(org: Org) -> None:
    content(org.viewer.get(DEVICES, None, **{KEY: "\u2603"}))


# --- tenants -----------------------------------------------------------------------------------


def test_one_key_in_two_tenants_is_two_independent_requests(org: Org, other_org: Org) -> None:
    mine = post(org.admin, DEVICES, {"id": "kiosk-1"}, key="shared-key")
    theirs = post(other_org.admin, DEVICES, {"id": "kiosk-9", "name": "Other"}, key="shared-key")

    assert content(mine, 201)["id"] == "kiosk-1"
    assert content(theirs, 201)["id"] == "kiosk-9"
    assert not theirs.has_header("Idempotent-Replayed")
    assert Device.objects.filter(tenant=org.tenant).count() == 1
    assert Device.objects.filter(tenant=other_org.tenant).count() == 1
    # And each replays its own answer, not the other tenant's.
    assert post(other_org.admin, DEVICES, {"id": "kiosk-9", "name": "Other"}, key="shared-key").content == (
        theirs.content
    )


# --- principals ----------------------------------------------------------------------------------


def test_two_keys_of_one_tenant_sending_one_key_each_get_their_own_run(org: Org) -> None:
    """A replay may hold a secret made once: another API key of the tenant never gets it."""
    add_device(org.tenant, "dev-s")
    other_admin = Api(create_api_key(org.tenant, "admin", "second admin")[1])
    path = f"{DEVICES}dev-s/rotate-token/"
    mine = content(post(org.admin, path, None, key="rotate-s"))["token"]

    theirs = post(other_admin, path, None, key="rotate-s")

    assert not theirs.has_header("Idempotent-Replayed")
    assert content(theirs)["token"] != mine  # a second rotation of its own, not the first's token
    assert Api(content(theirs)["token"]).get("/v2/command-inbox/", {"device_id": "dev-s"}).status_code == 200
    # And each replays its own answer.
    assert content(post(org.admin, path, None, key="rotate-s"))["token"] == mine
    assert post(other_admin, path, None, key="rotate-s").content == theirs.content


def test_the_same_key_by_the_same_principal_replays(org: Org) -> None:
    other_admin = Api(create_api_key(org.tenant, "admin", "second admin")[1])
    first = post(org.admin, DEVICES, {"id": "kiosk-p"}, key="per-principal")
    content(post(other_admin, DEVICES, {"id": "kiosk-q"}, key="per-principal"), 201)

    again = post(org.admin, DEVICES, {"id": "kiosk-p"}, key="per-principal")

    assert (again.status_code, again.content) == (201, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert Device.objects.filter(tenant=org.tenant).count() == 2


def test_a_put_is_checked_against_its_own_principals_keys_only(org: Org) -> None:
    add_device(org.tenant, "dev-k")
    content(post(org.admin, "/v0/groups/", {"name": "g"}, key="held"), 201)

    # The operator's PATCH with that key: not the admin's key, so it runs (no 422 naming the
    # admin's POST and its path); the admin's own PATCH with it is refused.
    content(org.operator.patch(f"{DEVICES}dev-k/", {"name": "Renamed"}, **{KEY: "held"}))
    refused = error(org.admin.patch(f"{DEVICES}dev-k/", {"name": "Again"}, **{KEY: "held"}), 422)
    assert "POST /v0/groups/" in refused["message"]
    assert Device.objects.get().name == "Renamed"


# --- expiry and purge ----------------------------------------------------------------------------


def test_an_answer_is_kept_for_the_ttl(org: Org, settings: Any) -> None:
    settings.IDEMPOTENCY_TTL_HOURS = 3
    content(post(org.admin, "/v0/groups/", {"name": "g"}, key="ttl"), 201)

    (row,) = kept_rows()
    ahead = row.expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=2, minutes=59) < ahead <= dt.timedelta(hours=3)


def test_the_ttl_defaults_to_24_hours() -> None:
    assert settings.IDEMPOTENCY_TTL_HOURS == 24


def test_after_the_ttl_the_same_request_runs_again(org: Org) -> None:
    body = {"name": "No id: a new UUID each time"}
    first = content(post(org.admin, DEVICES, body, key="expiring"), 201)
    expire("expiring")

    again = post(org.admin, DEVICES, body, key="expiring")

    assert content(again, 201)["id"] != first["id"]
    assert not again.has_header("Idempotent-Replayed")
    assert Device.objects.count() == 2
    # and the key now holds the new answer
    assert post(org.admin, DEVICES, body, key="expiring").content == again.content


def test_after_the_ttl_the_key_may_serve_another_request(org: Org) -> None:
    content(post(org.admin, "/v0/groups/", {"name": "first"}, key="reused"), 201)
    expire("reused")

    content(post(org.admin, DEVICES, {"id": "kiosk-1"}, key="reused"), 201)


def test_the_purge_deletes_expired_rows_in_batches_and_keeps_live_ones(org: Org) -> None:
    for name in ("a", "b", "c", "d", "e"):
        content(post(org.admin, "/v0/groups/", {"name": name}, key=f"old-{name}"), 201)
        expire(f"old-{name}")
    content(post(org.admin, "/v0/groups/", {"name": "live"}, key="live"), 201)

    assert purge_expired(batch_size=2) == 5

    assert [row.key for row in kept_rows()] == ["live"]


def test_the_purge_is_a_periodic_task(org: Org) -> None:
    content(post(org.admin, "/v0/groups/", {"name": "old"}, key="old"), 201)
    expire("old")
    entry = settings.CELERY_BEAT_SCHEDULE["purge-idempotency-keys"]

    assert entry["task"] == purge_expired_keys.name
    assert purge_expired_keys.apply().get() == 1
    assert kept_rows() == []


# --- secrets at rest ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "secret"),
    [
        (DEVICES, {"id": "kiosk-1"}, lambda answer: answer["content"]["token"]),
        (f"{DEVICES}bulk/", [{"id": "kiosk-2"}], lambda answer: answer["content"]["devices"][0]["token"]),
        (f"{DEVICES}dev-s/rotate-token/", None, lambda answer: answer["content"]["token"]),
    ],
    ids=["device", "bulk", "rotate-token"],
)
def test_kept_answers_are_sealed_at_rest(
    org: Org, path: str, body: Any, secret: Callable[[Any], str]
) -> None:
    add_device(org.tenant, "dev-s")
    answer = post(org.admin, path, body, key="secret-1")
    token = secret(answer.json())
    assert token.startswith("ddt_")

    stored = raw_body("secret-1")

    assert stored.startswith(PREFIX)
    assert token not in stored and token.split("_", 1)[1] not in stored
    assert unseal(stored).encode() == answer.content


def test_a_kept_answer_no_configured_key_opens_is_422_not_a_500(org: Org) -> None:
    from cryptography.fernet import Fernet
    from django.test import override_settings

    from config import encryption

    first = post(org.admin, DEVICES, {"id": "kiosk-1"}, key="rotated-away")
    content(first, 201)
    try:
        encryption.forget_keys()
        with override_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
            refused = error(post(org.admin, DEVICES, {"id": "kiosk-1"}, key="rotated-away"), 422)
    finally:
        encryption.forget_keys()

    assert "Idempotency-Key" in refused["errors"]
    assert post(org.admin, DEVICES, {"id": "kiosk-1"}, key="rotated-away").content == first.content


# --- concurrency: two real requests against the real database --------------------------------


@contextlib.contextmanager
def table_locked(table: str) -> Iterator[None]:
    """Hold ``LOCK TABLE table`` on a connection of the test's own, so a request that needs
    the table waits inside its transaction until the block ends.

    Requests sent meanwhile from this thread give up waiting for a lock after 10 s (an
    error, so the test fails) rather than wait for the block that holds it, forever."""
    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"] or "postgres",
        dbname=db["NAME"],
    ) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")
        try:
            yield
        finally:
            locker.commit()
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")


def waiting_on_locks(table: str) -> int:
    """Backends of the test database waiting for a lock in a statement on ``table``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE %s",
            [f"%{table}%"],
        )
        (count,) = cursor.fetchone()
    return int(count)


class Background:
    """A request sent from another thread (with its own database connection)."""

    def __init__(self, send: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = send()
            except BaseException as failure:
                self.error = failure
            finally:
                connection.close()

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def answer(self) -> Any:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the background request did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def _fresh(org: Org) -> Api:
    """The org's admin key on a client of its own (a Django test client is not shared by threads)."""
    return Api(org.admin.token)


def test_a_second_request_while_the_first_runs_is_409_at_once(org: Org, transactional_db: None) -> None:
    table = Device._meta.db_table
    body = {"id": "kiosk-1"}
    with table_locked(table):
        first = Background(lambda: post(_fresh(org), DEVICES, body, key="racing"))
        wait_until(lambda: waiting_on_locks(table) == 1, what="the first request to wait in its transaction")

        second = post(org.admin, DEVICES, body, key="racing")

        refused = error(second, 409)
        assert "Idempotency-Key" in refused["errors"] and second["Retry-After"] == "1"
        assert first.thread.is_alive()
    assert first.answer().status_code == 201

    third = post(org.admin, DEVICES, body, key="racing")

    assert (third.status_code, third.content) == (201, first.answer().content)
    assert third["Idempotent-Replayed"] == "true"
    assert Device.objects.count() == 1


def test_a_different_body_while_the_first_runs_is_422(org: Org, transactional_db: None) -> None:
    table = Device._meta.db_table
    with table_locked(table):
        first = Background(lambda: post(_fresh(org), DEVICES, {"id": "kiosk-1"}, key="racing"))
        wait_until(lambda: waiting_on_locks(table) == 1, what="the first request to wait in its transaction")

        error(post(org.admin, DEVICES, {"id": "kiosk-2"}, key="racing"), 422)
    assert first.answer().status_code == 201
    assert list(Device.objects.values_list("device_id", flat=True)) == ["kiosk-1"]


def test_a_request_that_outlived_its_lease_and_was_taken_over_is_rolled_back(
    org: Org, transactional_db: None
) -> None:
    table = Device._meta.db_table
    body = {"name": "No id: each run would make a new device"}
    with table_locked(table):
        late = Background(lambda: post(_fresh(org), DEVICES, body, key="lease"))
        wait_until(lambda: waiting_on_locks(table) == 1, what="the first request to wait in its transaction")
        expire("lease")  # its lease has passed: the next request with the key takes it over
        taker = Background(lambda: post(_fresh(org), DEVICES, body, key="lease"))
        wait_until(lambda: waiting_on_locks(table) == 2, what="the second request to wait as well")

    lost, won = late.answer(), taker.answer()

    assert error(lost, 409)["errors"]["Idempotency-Key"][0].startswith("this request outlived its claim")
    (device,) = Device.objects.all()
    assert content(won, 201)["id"] == device.device_id
    assert post(org.admin, DEVICES, body, key="lease").content == won.content


def test_a_running_request_holds_its_key_for_the_lease(
    org: Org, transactional_db: None, settings: Any
) -> None:
    settings.IDEMPOTENCY_LEASE_SECONDS = 45
    table = Device._meta.db_table
    with table_locked(table):
        running = Background(lambda: post(_fresh(org), DEVICES, {"id": "kiosk-1"}, key="leased"))
        wait_until(lambda: waiting_on_locks(table) == 1, what="the request to wait inside its transaction")

        (claim,) = kept_rows()

        assert claim.status_code is None and claim.body == ""
        assert claim.expires_at - claim.created_at == dt.timedelta(seconds=45)
    assert running.answer().status_code == 201


# --- every POST of the API -------------------------------------------------------------------------


def _posts() -> list[str]:
    return [path for path, item in openapi_document()["paths"].items() if "post" in item]


POSTS = _posts()


#: A body each POST of the API answers 2xx to, from a World. A new POST fails
#: test_every_post_replays until it is added here.
def _finished_with_a_failure(world: World) -> dict[str, Any]:
    """The world's operation finished, one device failed: a re-run (of the failed) answers 201."""
    report(world.command.pk, CommandState.FAILURE, "idempotency test", actor="tests")
    move_and_settle(CommandStatus.objects.filter(pk=world.second_command.pk), CommandState.CANCELLED, "done")
    return {}


POST_BODIES: dict[str, Callable[[World], Any]] = {
    "/v0/devices/": lambda w: {"id": "idem-new", "name": "New"},
    "/v0/devices/bulk/": lambda w: [{"id": "idem-bulk-1"}, {"id": "idem-bulk-2"}],
    "/v0/devices/{}/rotate-token/": lambda w: None,
    "/v0/devices/{}/revoke-token/": lambda w: None,
    "/v0/groups/": lambda w: {"name": "idem-group"},
    "/v0/operations/": lambda w: {
        "operation_type": "REBOOT",
        "operation_device_query": {"devices": [w.device.device.device_id]},
    },
    "/v0/operations/preview/": lambda w: {"operation_device_query": {"all": True}},
    # Issue 25: the world's WIPE waits for approval, asked for by another principal.
    "/v0/operations/{}/approve/": lambda w: {"remark": "idempotency test"},
    "/v0/operations/{}/deny/": lambda w: {"remark": "idempotency test"},
    "/v0/operation-templates/": lambda w: {"name": "idem-template", "operation_type": "REBOOT"},
    "/v0/operations/{}/rerun/": lambda w: _finished_with_a_failure(w),
    "/api/v1/inventory_device_headless_operation/": lambda w: {
        "device_id": w.device.device.device_id,
        "operation_type": "reboot",
    },
    "/api/v1/inventory_device_headless_operation/{}/cancel/": lambda w: {"reason": "idempotency test"},
    "/aggregates/maintenance/scheduler/jobs/orgId/{}": lambda w: {
        "time_expression": "0 0 4 ? * * *",
        "scheduler_type": "time-based",
    },
    # The webhooks of CONTRACT §10 (their branch's tests/world.py fills the paths; a public
    # address literal passes the SSRF guard without DNS, and nothing is sent to it).
    "/v0/webhooks/": lambda w: {"url": "https://93.184.216.34/idempotency", "events": ["*"]},
    "/v0/webhooks/{}/rotate-secret/": lambda w: None,
    "/v0/webhooks/{}/ping/": lambda w: None,
    "/v0/webhooks/{}/deliveries/{}/redeliver/": lambda w: None,
}
#: Tables a replay writes to: the audit log records it, and the key's own row.
WRITTEN_BY_A_REPLAY = {"inventory.AuditEntry", "idempotency.IdempotentRequest"}
#: The secrets an answer may show once: device tokens, API keys, webhook secrets.
SECRET = re.compile(r"(?:ddt|dok|whsec)_[A-Za-z0-9+/=_-]{8,}")


def _counts() -> dict[str, int]:
    """Rows of every table of the project (and of celery beat's), but what a replay writes."""
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models()
        if model._meta.label not in WRITTEN_BY_A_REPLAY
    }


@pytest.fixture
def world(org: Org) -> World:
    return build_world(org)


@pytest.mark.parametrize("path", POSTS)
def test_every_post_replays(world: World, path: str) -> None:
    assert shape(path) in POST_BODIES, f"POST {path}: add a body it answers 2xx to in POST_BODIES"
    url = fill(path, path_parameters(path, world))
    body = POST_BODIES[shape(path)](world)
    admin = world.org.admin

    first = post(admin, url, body, key=f"every-post {path}")
    assert 200 <= first.status_code < 300, first.content
    after_first = _counts()
    again = post(admin, url, body, key=f"every-post {path}")

    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again["Idempotent-Replayed"] == "true"
    assert _counts() == after_first
    stored = raw_body(f"every-post {path}")
    assert stored.startswith(PREFIX)
    assert not [secret for secret in SECRET.findall(first.content.decode()) if secret in stored]


@pytest.mark.parametrize("path", POSTS)
def test_every_post_refuses_a_malformed_key(world: World, path: str) -> None:
    url = fill(path, path_parameters(path, world))
    body = POST_BODIES.get(shape(path), lambda w: {})(world)  # may set the world up (a re-run's)
    before = _counts()

    refused = post(world.org.admin, url, body, key="\u2603")

    assert refused.status_code == 400, refused.content
    assert "Idempotency-Key" in refused.content.decode()
    assert _counts() == before


@pytest.mark.parametrize("path", POSTS)
def test_every_post_documents_the_header_and_its_answers(path: str) -> None:
    operation = openapi_document()["paths"][path]["post"]

    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["in"] == "header" and not header.get("required")
    assert "Idempotency-Key" in operation["responses"]["409"]["description"]
    assert "Idempotency-Key" in operation["responses"]["422"]["description"]
    successes = [code for code in operation["responses"] if code.startswith("2")]
    assert successes and all(
        "Idempotent-Replayed" in operation["responses"][code].get("headers", {}) for code in successes
    )


def _post_views(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every route of the URL map whose view answers POST, with the view's class."""
    found: list[tuple[str, Any]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern) == "admin/":  # the console: Django admin, not the API
                continue
            found.extend(_post_views(pattern.url_patterns, prefix + str(pattern.pattern)))
        elif isinstance(pattern, URLPattern):
            callback = pattern.callback
            view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
            actions = getattr(callback, "actions", None)
            if view is None:
                continue
            if (actions is not None and "post" in actions) or (actions is None and hasattr(view, "post")):
                found.append((prefix + str(pattern.pattern), view))
    return found


def test_every_post_route_goes_through_the_base_view_that_claims_keys() -> None:
    routes = _post_views(get_resolver().url_patterns)

    assert len({route for route, _ in routes if "(?P<format>" not in route}) >= len(POSTS)
    outside = [(route, view.__name__) for route, view in routes if not issubclass(view, ApiViewMixin)]
    assert outside == [], "POST routes that bypass config.api.views.ApiViewMixin (and its keys)"


# --- a request whose worker is killed ------------------------------------------------------------


def _http_post(url: str, token: str, key: str, body: Any) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


@pytest.mark.faults
def test_the_claim_of_a_killed_worker_blocks_its_key_only_until_its_lease_ends(
    org: Org, transactional_db: None, tmp_path: Path
) -> None:
    table = Device._meta.db_table
    log = tmp_path / "gunicorn.log"
    body = {"name": "No id: each run would make a new device"}
    token = org.admin.token
    assert token is not None
    with gunicorn({**_process_env(), "DEBUG": "0"}, log, "-w", "1") as url:
        (worker,) = re.findall(r"Booting worker with pid: (\d+)", log.read_text())
        with table_locked(table):
            dying = Background(lambda: _http_post(f"{url}{DEVICES}", token, "killed", body))
            wait_until(lambda: waiting_on_locks(table) == 1, what="the request to wait in its transaction")
            os.kill(int(worker), signal.SIGKILL)
            with pytest.raises((ConnectionError, urllib.error.URLError, http.client.HTTPException)):
                dying.answer()
        # The killed worker's backend finds its client gone and rolls back.
        wait_until(lambda: waiting_on_locks(table) == 0, what="the dead request's statement to end")
        (claim,) = kept_rows()
        assert claim.status_code is None

        status, headers, _ = _http_post(f"{url}{DEVICES}", token, "killed", body)  # a new worker answers
        assert (status, headers["Retry-After"]) == (409, "1")  # its lease (60 s by default) still runs

        expire("killed")  # what IDEMPOTENCY_LEASE_SECONDS of waiting does
        status, headers, answer = _http_post(f"{url}{DEVICES}", token, "killed", body)
        assert status == 201 and "Idempotent-Replayed" not in headers
        assert json.loads(answer)["content"]["id"] == Device.objects.get().device_id
        assert _http_post(f"{url}{DEVICES}", token, "killed", body)[2] == answer


@pytest.mark.e2e
def test_celery_beat_and_a_worker_purge_expired_keys(
    celery_processes: CeleryProcesses, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDEMPOTENCY_PURGE_SECONDS", "1")
    content(post(org.admin, "/v0/groups/", {"name": "old"}, key="old"), 201)
    content(post(org.admin, "/v0/groups/", {"name": "live"}, key="live"), 201)
    expire("old")

    celery_processes.worker(concurrency=1)
    celery_processes.beat()

    try:
        wait_until(lambda: [row.key for row in kept_rows()] == ["live"], timeout=60, what="the purge")
    except AssertionError:
        print(celery_processes.log("beat")[-3000:], celery_processes.log("worker")[-3000:])
        raise
    assert task_events(celery_processes.log("worker"), "succeeded", purge_expired_keys.name) >= 1
