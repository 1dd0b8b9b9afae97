"""The device's paths served by granian, the web server the README recommends for production
(measured faster than gunicorn on every device path, docs/performance.md, "Hot paths"): over
real HTTP, a poll that hands out a command, the report, the empty poll and its 304, a refusal.

gunicorn serves the other end-to-end tests (and ``../shared/conformance/run.sh``); both run
``config.wsgi``'s application.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.command_factories import command_of, dispatched_operation
from tests.conftest import ROOT, DeviceActor, Org, _process_env, kill_group, wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
def granian(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """granian serving ``config.wsgi`` (one worker, two threads) on a free port."""
    port = _free_port()
    log = tmp_path / "granian.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "wsgi",
                "config.wsgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--blocking-threads",
                "2",
            ],
            cwd=ROOT,
            env={**_process_env(), "DEBUG": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(
                f"granian exited with {server.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_until(answers, timeout=60, what="granian to answer")
        yield url
    finally:
        kill_group(server, signal.SIGTERM, timeout=15)


def test_a_device_polls_reports_and_hears_304_through_granian(
    granian: str, org: Org, device: DeviceActor
) -> None:
    command = command_of(dispatched_operation(org.tenant, [device]), device)
    inbox = f"{granian}/v2/command-inbox/?device_id=dev-1"

    status, body, _ = _call(inbox, device.token)
    assert status == 200
    assert [item["id"] for item in body["content"]["results"]] == [str(command.pk)]

    status, body, _ = _call(
        f"{granian}/commands/v0/status/{command.pk}/", device.token, "PUT", {"state": "Command Success"}
    )
    assert (status, body["content"]["state"]) == (200, "Command Success")

    status, body, headers = _call(inbox, device.token)
    assert (status, body["content"]["count"]) == (200, 0)
    status, _, _ = _call(inbox, device.token, **{"If-None-Match": headers["ETag"]})
    assert status == 304

    wrong = device.token[:-4] + ("aaaa" if not device.token.endswith("aaaa") else "bbbb")
    status, body, headers = _call(inbox, wrong)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="api"'
