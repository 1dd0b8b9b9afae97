"""The device's paths served by granian, the web server the README recommends for production
(measured faster than gunicorn on every device path, docs/performance.md, "Hot paths"): over
real HTTP, a poll that hands out a command, the report, the empty poll and its 304, a refusal.

gunicorn serves the other end-to-end tests (and ``../shared/conformance/run.sh``); both run
``config.wsgi``'s application.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, _process_env, granian


def _call(
    url: str, token: str, method: str = "GET", body: Any = None, **headers: str
) -> tuple[int, Any, Message]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}", **headers}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None, answer.headers
    except urllib.error.HTTPError as refused:
        raw = refused.read()
        return refused.code, json.loads(raw) if raw else None, refused.headers


@pytest.fixture
def served(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """granian serving ``config.wsgi`` (one worker, two threads)."""
    options = ["--workers", "1", "--blocking-threads", "2"]
    with granian({**_process_env(), "DEBUG": "0"}, tmp_path / "granian.log", *options) as url:
        yield url


def test_a_device_polls_reports_and_hears_304_through_granian(
    served: str, org: Org, device: DeviceActor
) -> None:
    command = command_of(dispatched_operation(org.tenant, [device]), device)
    inbox = f"{served}/v2/command-inbox/?device_id=dev-1"

    status, body, _ = _call(inbox, device.token)
    assert status == 200
    assert [item["id"] for item in body["content"]["results"]] == [str(command.pk)]

    status, body, _ = _call(
        f"{served}/commands/v0/status/{command.pk}/", device.token, "PUT", {"state": "Command Success"}
    )
    assert (status, body["content"]["state"]) == (200, "Command Success")

    status, body, headers = _call(inbox, device.token)
    assert (status, body["content"]["count"]) == (200, 0)
    status, _, _ = _call(inbox, device.token, **{"If-None-Match": headers["ETag"]})
    assert status == 304

    wrong = device.token[:-4] + ("aaaa" if not device.token.endswith("aaaa") else "bbbb")
    status, body, headers = _call(inbox, wrong)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="api"'
