"""The lean device path (``config.lean``) answers exactly as the full stack, and settles
concurrent reports together (``commands.coalesce``).

Two real gunicorn servers of the same test database: one as deployed (the device's requests on
the lean handler), one with ``LEAN_DEVICE_PATH=0`` (everything through the full middleware
stack). Each case runs once against each, for a device ``dev-x`` of a tenant of its own (so that
the device's id is the same in both answers), and the answers must be the same: status, body
(apart from ids and times), every header (apart from ``Date``, and the ETag's value, which names
the tenant and device), the request id echoed, the log line, the metrics.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler

from commands import counting
from commands.api.device_urls import serves
from commands.choices import CommandState
from commands.models import CommandStatus
from inventory import tokens
from operations.models import Operation
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, _process_env, add_device, add_devices, gunicorn, make_org, wait_until

METRICS_TOKEN = "test-metrics-token-0123456789abcdef"
#: Low enough that a case can pass it; each case has devices (tokens) of its own.
RATE_LIMIT = 12


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def call(
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request over HTTP, its answer as sent (headers by lower-case name)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


@dataclass
class Servers:
    lean: str
    full: str
    lean_log: Path
    full_log: Path


@pytest.fixture(scope="module")
def servers(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """gunicorn as deployed, and the same with the lean path off; one process, eight threads each."""
    tmp = tmp_path_factory.mktemp("lean")
    env = {
        **_process_env(),
        "DEBUG": "0",
        "METRICS_TOKEN": METRICS_TOKEN,
        "RATE_LIMIT_DEVICE_PER_MINUTE": str(RATE_LIMIT),
        "API_MAX_BODY_MB": "1",
        "DEVICE_GROUP_COMMIT": "1",  # off by default: the answers must be the same with it on
        "LOG_REQUESTS": "all",
    }
    options = ("-w", "1", "-k", "gthread", "--threads", "8")
    with (
        gunicorn(env, tmp / "lean.log", *options) as lean,
        gunicorn({**env, "LEAN_DEVICE_PATH": "0"}, tmp / "full.log", *options) as full,
    ):
        yield Servers(lean, full, tmp / "lean.log", tmp / "full.log")


@dataclass
class Setup:
    device: DeviceActor
    command: CommandStatus
    other_token: str  # the key of the tenant's operator


def _setup(slug: str) -> Setup:
    org = make_org(slug)
    device = add_device(org.tenant, "dev-x")
    command = command_of(dispatched_operation(org.tenant, [device]), device)
    assert org.operator.token is not None
    return Setup(device, command, org.operator.token)


def _inbox(device_id: str = "dev-x") -> str:
    return f"/v2/command-inbox/?device_id={device_id}"


def _status(pk: int) -> str:
    return f"/commands/v0/status/{pk}/"


def _put(
    base: str, s: Setup, body: bytes, pk: int | None = None, headers: dict[str, str] | None = None
) -> Answer:
    return call(base, "PUT", _status(pk or s.command.pk), s.device.token, body, headers)


def _304(base: str, s: Setup) -> Answer:
    call(base, "GET", _inbox(), s.device.token)  # hands the command out
    empty = call(base, "GET", _inbox(), s.device.token)
    assert empty.status == 200 and "etag" in empty.headers
    return call(base, "GET", _inbox(), s.device.token, headers={"If-None-Match": empty.headers["etag"]})


def _empty_200(base: str, s: Setup) -> Answer:
    call(base, "GET", _inbox(), s.device.token)
    return call(base, "GET", _inbox(), s.device.token)


def _backwards(base: str, s: Setup) -> Answer:
    assert _put(base, s, b'{"state": "Command Success"}').status == 200
    return _put(base, s, b'{"state": "Command Acknowledged"}')


def _rate_limited(base: str, s: Setup) -> Answer:
    for _ in range(RATE_LIMIT):
        call(base, "GET", _inbox(), s.device.token)
    return _put(base, s, b'{"state": "Command Acknowledged"}')


def _token_of_kind(kind: str) -> str:
    """A string of a token's shape (routing looks nothing up); no such token exists."""
    return f"{kind}_{'0' * 16}_{'x' * 43}"


WRONG = _token_of_kind(tokens.DEVICE_TOKEN_KIND)

CASES: dict[str, Callable[[str, Setup], Answer]] = {
    "inbox hands out": lambda base, s: call(base, "GET", _inbox(), s.device.token),
    "inbox empty 200": _empty_200,
    "inbox 304": _304,
    "inbox without a token": lambda base, s: call(base, "GET", _inbox()),
    "inbox with a wrong token": lambda base, s: call(base, "GET", _inbox(), WRONG),
    "inbox without device_id": lambda base, s: call(base, "GET", "/v2/command-inbox/", s.device.token),
    "inbox with a bad device_id": lambda base, s: call(base, "GET", _inbox("bad%20id!"), s.device.token),
    "inbox of another device": lambda base, s: call(base, "GET", _inbox("dev-y"), s.device.token),
    "inbox POST": lambda base, s: call(base, "POST", _inbox(), s.device.token, b"{}"),
    "PUT a move": lambda base, s: _put(base, s, b'{"state": "Command Acknowledged", "details": {"b": 1}}'),
    "PUT without a state": lambda base, s: _put(base, s, b'{"reason": "x"}'),
    "PUT malformed JSON": lambda base, s: _put(base, s, b'{"state": '),
    "PUT an unknown command": lambda base, s: _put(
        base, s, b'{"state": "Command Success"}', pk=2_000_000_000
    ),
    "PUT backwards": _backwards,
    "PUT a stale version": lambda base, s: _put(
        base, s, b'{"state": "Command Success", "expected_version": 9}'
    ),
    "PUT too large": lambda base, s: _put(base, s, b'{"reason": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
    "PUT past the rate limit": _rate_limited,
    "PUT with a request id": lambda base, s: _put(
        base, s, b'{"state": "Command Acknowledged"}', headers={"X-Request-ID": "parity-1"}
    ),
    "PUT by a key (the full stack on both)": lambda base, s: call(
        base, "PUT", _status(s.command.pk), s.other_token, b'{"state": "Command Acknowledged"}'
    ),
    "PUT with an Idempotency-Key (the full stack on both)": lambda base, s: _put(
        base, s, b'{"state": "Command Acknowledged"}', headers={"Idempotency-Key": "k-1"}
    ),
}

#: What tells the two answers apart by design: ids, times, the poll interval's jitter.
_VOLATILE = {"id", "request", "created_on", "updated_on", "next_poll_seconds"}


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_without_ids(item) for item in value]
    return value


def _comparable(answer: Answer) -> dict[str, Any]:
    body = _without_ids(answer.json())
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        body["message"] = re.sub(r"retry in \d+", "retry in N", body["message"])
    headers = {k: v for k, v in answer.headers.items() if k not in {"date", "etag", "retry-after"}}
    if answer.status != 429:
        headers.pop("x-request-id", None)
    return {
        "status": answer.status,
        "body": body,
        "headers": sorted(headers.items()) if answer.status != 429 else sorted(headers),
        "etag": "etag" in answer.headers,
        "retry-after": "retry-after" in answer.headers,
        "request id": answer.headers.get("x-request-id") == "parity-1",
    }


@pytest.mark.parametrize("case", list(CASES))
def test_the_lean_path_answers_as_the_full_stack(servers: Servers, transactional_db: None, case: str) -> None:
    lean = CASES[case](servers.lean, _setup("lean"))
    full = CASES[case](servers.full, _setup("full"))

    assert _comparable(lean) == _comparable(full), case
    assert lean.status < 500, lean.body


def _metric(base: str, name: str, **labels: str) -> float:
    """One sample of the server's ``GET /metrics`` (0 when it has none yet)."""
    text = call(base, "GET", "/metrics", METRICS_TOKEN).body.decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(
        rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_the_lean_path_logs_and_counts_each_answer(servers: Servers, transactional_db: None) -> None:
    s = _setup("lean")
    labels = {"method": "PUT", "route": "/commands/v0/status/{pk}/", "status": "200"}
    before = _metric(servers.lean, "dos_http_requests_total", **labels)

    body = b'{"state": "Command Acknowledged"}'
    answer = _put(servers.lean, s, body, headers={"X-Request-ID": "lean-log-1"})

    assert (answer.status, answer.headers["x-request-id"]) == (200, "lean-log-1")
    assert _metric(servers.lean, "dos_http_requests_total", **labels) == before + 1
    line = f"[lean-log-1] PUT /commands/v0/status/{s.command.pk}/ 200 "
    wait_until(lambda: line in servers.lean_log.read_text(errors="replace"), timeout=10, what="the log line")


def test_the_router_sends_only_the_devices_requests_to_the_lean_handler() -> None:
    token = f"Bearer {WRONG}"
    put = {"REQUEST_METHOD": "PUT", "PATH_INFO": "/commands/v0/status/7/", "CONTENT_TYPE": "application/json"}
    assert serves({**put, "HTTP_AUTHORIZATION": token})
    assert serves({"REQUEST_METHOD": "GET", "PATH_INFO": "/v2/command-inbox/", "QUERY_STRING": "device_id=a"})
    assert not serves(
        {**put, "HTTP_AUTHORIZATION": f"Bearer {_token_of_kind(tokens.API_KEY_KIND)}"}
    )  # an API key
    assert not serves({**put, "HTTP_AUTHORIZATION": token, "HTTP_IDEMPOTENCY_KEY": "k"})
    assert not serves({**put, "HTTP_AUTHORIZATION": token, "CONTENT_TYPE": "text/plain"})
    assert not serves({**put, "HTTP_AUTHORIZATION": token, "QUERY_STRING": "format=api"})
    assert not serves({**put, "HTTP_AUTHORIZATION": token, "REQUEST_METHOD": "GET"})
    assert not serves({**put, "HTTP_AUTHORIZATION": token, "PATH_INFO": "/commands/v0/status/7"})
    assert not serves({"REQUEST_METHOD": "POST", "PATH_INFO": "/v2/command-inbox/"})


def test_config_wsgi_answers_the_devices_requests_by_the_lean_handler() -> None:
    """``config.wsgi.application`` (what gunicorn and granian serve): a device's inbox GET is
    answered by the :class:`~config.lean.DeviceHandler`, a POST there by the full handler
    (Django says which handler started a request), each with its usual answer."""
    from django.core.signals import request_started

    from config.lean import DeviceHandler
    from config.wsgi import application

    handlers: list[type] = []

    def started(sender: type, **_: Any) -> None:
        handlers.append(sender)

    def answer(method: str) -> str:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": "/v2/command-inbox/",
            "QUERY_STRING": "device_id=dev-x",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
        }
        status: list[str] = []
        response = application(environ, lambda line, headers: status.append(line))
        getattr(response, "close", lambda: None)()
        return status[0]

    request_started.connect(started)
    try:
        assert answer("GET") == "401 Unauthorized"  # no token: nothing looked up
        assert answer("POST") == "405 Method Not Allowed"
    finally:
        request_started.disconnect(started)

    assert handlers[0] is DeviceHandler
    assert handlers[1] is not DeviceHandler and issubclass(handlers[1], WSGIHandler)


def test_concurrent_reports_are_settled_together_each_answered_with_its_own_row(
    servers: Servers, transactional_db: None
) -> None:
    org = make_org("fleet")
    devices = add_devices(org.tenant, 24)
    for _ in range(5):  # rounds until two reports met in one batch (the first, nearly always)
        operation = dispatched_operation(org.tenant, devices)
        commands = {actor.device.device_id: command_of(operation, actor).pk for actor in devices}
        batched_before = _batched(servers.lean)
        barrier = threading.Barrier(len(devices))
        answers: dict[str, Answer] = {}

        def report(
            actor: DeviceActor, pk: int, barrier: threading.Barrier, answers: dict[str, Answer]
        ) -> None:
            barrier.wait()
            body = b'{"state": "Command Success", "reason": "done"}'
            answers[actor.device.device_id] = call(servers.lean, "PUT", _status(pk), actor.token, body)

        threads = [
            threading.Thread(target=_report, args=(servers.lean, actor, pk, barrier, answers))
            for actor, pk in zip(devices, commands.values(), strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        for device_id, pk in commands.items():
            shown = answers[device_id].json()["content"]
            assert (shown["id"], shown["device"], shown["state"]) == (str(pk), device_id, "Command Success")
        assert set(CommandStatus.objects.filter(operation=operation).values_list("state", flat=True)) == {
            CommandState.SUCCESS
        }
        stored = Operation.objects.get(pk=operation.pk)
        assert {name: getattr(stored, name) for name in counting.COUNTERS} == counting.recount(operation.pk)
        if _batched(servers.lean) > batched_before:
            return
    pytest.fail("24 concurrent reports, 5 times: never two settled in one batch")


def _report(
    base: str, actor: DeviceActor, pk: int, barrier: threading.Barrier, answers: dict[str, Answer]
) -> None:
    """A device's Success report of ``pk``, sent when every thread is ready."""
    barrier.wait()
    body = b'{"state": "Command Success", "reason": "done"}'
    answers[actor.device.device_id] = call(base, "PUT", _status(pk), actor.token, body)


def _batched(base: str) -> float:
    """Batches of more than one request settled by the server so far."""
    total = _metric(base, "dos_device_batch_size_count")
    alone = _metric(base, "dos_device_batch_size_bucket", le="1.0")
    return total - alone
