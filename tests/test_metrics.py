"""``GET /metrics``: who may read it (the installation's ``METRICS_TOKEN`` and a superuser's
console session; never a tenant's key or a device), and that it is Prometheus text (parsed with
prometheus_client's own parser) carrying the server's families after real requests: an inbox
hand-out, an empty poll and its 304, a device's status PUT, a fan-out."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from config import metrics
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import ROOT, Api, DeviceActor, Org, staff_console, superuser_console
from tests.helpers import content, error

INBOX = "/v2/command-inbox/"


#: The installation's token in these tests (``METRICS_TOKEN``), as Prometheus would send it.
METRICS_TOKEN = "test-metrics-token-0123456789abcdef"


def scrape() -> dict[str, Any]:
    """One scrape as Prometheus makes it: the installation's bearer token."""
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        response = Api(METRICS_TOKEN).get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    """The sample's value, 0 if it is not there (yet)."""
    found = (
        [
            s.value
            for s in families[family].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        if family in families
        else []
    )
    return sum(found)


# --- who may read it -------------------------------------------------------------------------


def test_the_installations_token_reads_the_metrics(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN

    response = Api(METRICS_TOKEN).get("/metrics")

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    assert b"dos_http_requests_total" in response.content


def test_a_superusers_console_session_reads_the_metrics(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    assert superuser_console().get("/metrics").status_code == 200
    settings.METRICS_TOKEN = ""  # the session needs no token
    assert superuser_console("root2").get("/metrics").status_code == 200


def test_a_staff_session_that_is_not_a_superuser_is_403(org: Org, settings: Any) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN

    refused = error(staff_console("alice", org.tenant).get("/metrics"), 403)

    assert refused["error_code"] == "metrics_token_required"


@pytest.mark.parametrize("token_set", [True, False], ids=["token-set", "token-unset"])
def test_tenant_keys_and_device_tokens_are_403(
    org: Org, device: DeviceActor, settings: Any, token_set: bool
) -> None:
    """The figures are every tenant's together: no tenant's key reads them, a viewer neither."""
    settings.METRICS_TOKEN = METRICS_TOKEN if token_set else ""
    for api in (org.viewer, org.operator, org.admin, device.api):
        response = api.get("/metrics")
        refused = error(response, 403)
        assert refused["error_code"] == "metrics_token_required", refused
        assert "METRICS_TOKEN" in refused["message"]
        assert b"dos_" not in response.content


@pytest.mark.parametrize("token_set", [True, False], ids=["token-set", "token-unset"])
def test_no_token_or_a_wrong_one_is_401(db: None, anonymous: Any, settings: Any, token_set: bool) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN if token_set else ""
    missing = error(anonymous.get("/metrics"), 401)
    assert missing["error_code"] == "not_authenticated"
    wrongs = (
        (METRICS_TOKEN + "x", METRICS_TOKEN[:-1], "x", "dok_not-a-key") if token_set else (METRICS_TOKEN,)
    )
    for wrong in wrongs:
        response = Api(wrong).get("/metrics")
        assert error(response, 401)["error_code"] == "authentication_failed"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {METRICS_TOKEN}").status_code == 401


def test_metrics_after_real_requests(org: Org, device: DeviceActor) -> None:
    before = scrape()

    operation = dispatched_operation(org.tenant, [device])  # a fan-out of one row
    handed = device.api.get(INBOX, {"device_id": "dev-1"})
    assert len(content(handed)["results"]) == 1
    empty = device.api.get(INBOX, {"device_id": "dev-1"})
    assert content(empty)["results"] == []
    not_modified = device.api.get(INBOX, {"device_id": "dev-1"}, HTTP_IF_NONE_MATCH=empty["ETag"])
    assert not_modified.status_code == 304
    command = command_of(operation, device)
    put = device.api.put(f"/commands/v0/status/{command.pk}/", {"state": "Command Success"})
    assert put.status_code == 200, put.content

    after = scrape()

    def grew(family: str, sample: str, **labels: str) -> float:
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    polls = ("dos_inbox_polls", "dos_inbox_polls_total")
    assert grew(*polls, outcome="handed_out") == 1
    assert grew(*polls, outcome="empty") == 1
    assert grew(*polls, outcome="not_modified") == 1

    changes = ("dos_command_state_changes", "dos_command_state_changes_total")
    assert grew(*changes, state="initiated") == 1  # the hand-out
    assert grew(*changes, state="success") == 1  # the device's report

    assert grew("dos_fanout_rows", "dos_fanout_rows_total") == 1
    assert grew("dos_fanout_duration_seconds", "dos_fanout_duration_seconds_count", outcome="ok") == 1

    inbox_route = "/v2/command-inbox/"
    requests = ("dos_http_requests", "dos_http_requests_total")
    assert grew(*requests, method="GET", route=inbox_route, status="304") == 1
    assert grew(*requests, method="GET", route=inbox_route, status="200") == 2
    assert grew(*requests, method="PUT", route="/commands/v0/status/{pk}/", status="200") == 1
    latency = ("dos_http_request_duration_seconds", "dos_http_request_duration_seconds_count")
    assert grew(*latency, method="GET", route=inbox_route) == 3
    assert after["dos_http_request_duration_seconds"].type == "histogram"

    # Read at scrape time: the operations by state (every state, 0 included) and the queue.
    assert after["dos_operations"].type == "gauge"
    states = {s.labels["state"]: s.value for s in after["dos_operations"].samples}
    assert states["success"] == 1  # its one command succeeded
    assert states["cancelled"] == 0
    assert {s.labels["queue"] for s in after["dos_celery_queue_length"].samples} == {"celery", "webhooks"}


def test_a_failing_scrape_collector_leaves_the_rest(org: Org) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("boom")

    metrics.scrape_collectors.append(broken)
    try:
        families = scrape()
    finally:
        metrics.scrape_collectors.remove(broken)
    assert "dos_operations" in families and "dos_http_requests" in families


def test_the_grafana_dashboard_reads_only_metrics_the_server_serves(org: Org, device: DeviceActor) -> None:
    dispatched_operation(org.tenant, [device])  # so the labelled fan-out histogram has samples
    device.api.get(INBOX, {"device_id": "dev-1"})
    served = {sample.name for family in scrape().values() for sample in family.samples}

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for query in queries for name in re.findall(r"\bdos_\w+", query)}

    assert used, "the dashboard has no queries"
    assert used - served == set()


def test_queue_length_with_the_filesystem_broker(org: Org, tmp_path: Any, settings: Any) -> None:
    """``make run``'s broker: messages are files in a folder; two real ones are counted."""
    from kombu import Connection

    folder = tmp_path / "queue"
    folder.mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),
    }
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    with Connection("filesystem://", transport_options=options) as conn:
        queue = conn.SimpleQueue("celery")
        queue.put({"n": 1})
        queue.put({"n": 2})
        other = conn.SimpleQueue("another")
        other.put({"n": 3})
        conn.SimpleQueue("webhooks").put({"n": 4})

    families = scrape()

    assert value(families, "dos_celery_queue_length", "dos_celery_queue_length", queue="celery") == 2
    assert value(families, "dos_celery_queue_length", "dos_celery_queue_length", queue="webhooks") == 1
