"""Logs: a request id (the caller's X-Request-ID, or a new one) in the answer's header and on
every record of the request; one record per answer with route, status, duration and tenant;
``LOG_FORMAT=json`` gives one JSON object a line, the default readable text."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client

from tests.conftest import ROOT, DeviceActor, Org
from tests.faults import free_port


def records_of(caplog: Any, request_id: str) -> list[Any]:
    return [r for r in caplog.records if r.name == "dos.requests" and r.request_id == request_id]


def test_an_incoming_request_id_is_kept_and_logged(org: Org, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="dos.requests")

    response = org.viewer.get("/v0/devices/", HTTP_X_REQUEST_ID="trace-abc-123")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "trace-abc-123"
    [record] = records_of(caplog, "trace-abc-123")
    assert record.method == "GET"
    assert record.path == "/v0/devices/"
    assert record.route == "/v0/devices/"
    assert record.status == 200
    assert record.duration_ms >= 0
    assert record.tenant == org.tenant.pk
    assert record.levelno == logging.INFO


def test_a_request_id_is_made_when_none_or_a_bad_one_comes(org: Org, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="dos.requests")

    made = org.viewer.get("/v0/devices/")["X-Request-ID"]
    replaced = org.viewer.get("/v0/devices/", HTTP_X_REQUEST_ID='bad id "with" spaces')["X-Request-ID"]

    assert len(made) == 32 and made != replaced
    assert " " not in replaced
    assert records_of(caplog, made) and records_of(caplog, replaced)


def test_the_inbox_logs_its_tenant_and_errors_log_as_warnings(
    org: Org, device: DeviceActor, anonymous: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="dos.requests")

    device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}, HTTP_X_REQUEST_ID="poll-1")
    anonymous.get("/v0/devices/", HTTP_X_REQUEST_ID="anon-1")

    [poll] = records_of(caplog, "poll-1")
    assert (poll.route, poll.status, poll.tenant) == ("/v2/command-inbox/", 200, org.tenant.pk)
    [refused] = records_of(caplog, "anon-1")
    assert (refused.status, refused.tenant, refused.levelno) == (401, None, logging.WARNING)


def test_other_records_of_the_request_carry_its_id(org: Org, caplog: Any, settings: Any) -> None:
    caplog.set_level(logging.INFO)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: a warning

    Client().get("/readyz", HTTP_X_REQUEST_ID="ready-1")

    [warning] = [r for r in caplog.records if r.name == "config.health"]
    assert warning.request_id == "ready-1"
    assert [r.status for r in records_of(caplog, "ready-1")] == [503]


def test_an_error_is_logged_once_with_its_id(org: Org, caplog: Any) -> None:
    caplog.set_level(logging.INFO)

    org.viewer.get("/no-such-path/", HTTP_X_REQUEST_ID="lost-1")

    assert [r.status for r in records_of(caplog, "lost-1")] == [404]
    assert not [r for r in caplog.records if r.name == "django.request"]  # no second, id-less line


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_format(log_format: str, tmp_path: Any) -> None:
    """The process's own logging setup, in a fresh interpreter: one JSON object per line, or text."""
    script = (
        "import django, logging; django.setup();"
        "from config.logs import request_id; request_id.set('rid-9');"
        "logging.getLogger('dos.requests').warning('GET / 404', extra={'status': 404, 'tenant': 7})"
    )
    env = {**os.environ, "LOG_FORMAT": log_format, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "GET / 404" in line]
    if log_format == "json":
        record = json.loads(line)
        assert record["level"] == "WARNING"
        assert record["logger"] == "dos.requests"
        assert record["message"] == "GET / 404"
        assert record["request_id"] == "rid-9"
        assert (record["status"], record["tenant"]) == (404, 7)
        assert "timestamp" in record
    else:
        assert line.endswith("WARNING dos.requests [rid-9] GET / 404")
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_a_bad_log_format_stops_the_process() -> None:
    env = {**os.environ, "LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "LOG_FORMAT='xml'" in done.stderr
