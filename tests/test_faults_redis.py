"""Redis faults (issue 23): the cache and broker of a real gunicorn killed for 10 s under
traffic, then started again (empty: it keeps nothing on disk).

The test runs its own Redis (tests/faults.py), never the shared one; the database is the test
run's. Threads act as devices and operators: idle devices polling the inbox with their ETag
(304s), busy devices taking commands and reporting them, a device reading its command list,
a viewer listing devices, an operator creating operations and cancelling them (POST, PUT
CANCELLED), a scraper of ``/metrics``. No answer may be a 500: each is its path's normal
answer or a 503 with ``Retry-After`` and a JSON envelope; the write paths go on while Redis
is down; once it is back the same web processes answer as before (304s again).

Run both ways of ``CACHE_OUTAGE_SERVES_DEVICES``: devices served from PostgreSQL meanwhile
(the default), or answered 503 until Redis is back (a large fleet's choice, docs/scaling.md).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import override_settings

from commands.services import issue_internal_command
from config.cache import RETRY_SECONDS
from inventory.services import create_api_key, get_or_create_tenant
from tests.command_factories import dispatched_operation
from tests.conftest import DeviceActor, add_device, add_devices, wait_until
from tests.faults import Processes, RedisServer, free_port, wait_port
from tests.test_metrics import METRICS_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

TIMEOUT = 10.0  # seconds; a request that takes longer counts as a hang
OUTAGE_SECONDS = 10.0
AFTER_RECOVERY = 15  # answers of every kind after the recovery, all of which must be normal
#: Commands queued for each busy device before the traffic starts, more than it can report:
#: of operations (their reports settle counters) and internal commands (quick to write).
OPERATIONS = 20
INTERNAL = 600

#: Each kind of request, with the statuses it answers when nothing is down.
NORMAL = {
    "inbox, idle device": {200, 304},
    "inbox, busy device": {200},
    "report": {200},
    "device's command list": {200},
    "device list": {200},
    "POST operation": {201},
    "PUT CANCELLED": {200},
    "metrics": {200},
}
DEVICE_KINDS = {"inbox, idle device", "inbox, busy device", "report", "device's command list"}


@dataclass
class Answer:
    started: float
    kind: str
    status: int
    seconds: float
    body: Any
    headers: dict[str, str]


@dataclass
class Traffic:
    """Threads requesting in loops, recording every answer (and every failure to get one)."""

    base: str
    answers: list[Answer] = field(default_factory=list)
    errors: list[tuple[float, str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def request(
        self, session: requests.Session, kind: str, method: str, path: str, token: str, **kwargs: Any
    ) -> Answer | None:
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        try:
            resp = session.request(method, self.base + path, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            self.errors.append((started, kind, repr(exc)))
            return None
        try:
            body: Any = resp.json() if resp.content and kind != "metrics" else resp.text[:200]
        except ValueError:
            body = resp.text[:500]
        answer = Answer(started, kind, resp.status_code, time.monotonic() - started, body, dict(resp.headers))
        self.answers.append(answer)
        return answer

    def loop(self, step: Callable[[requests.Session], None]) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            step(session)
            time.sleep(0.02)

    def start(self, *steps: Callable[[requests.Session], None]) -> None:
        self.threads = [threading.Thread(target=self.loop, args=(step,), daemon=True) for step in steps]
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(TIMEOUT + 5)

    def since(self, moment: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.started >= moment]


def idle_device(traffic: Traffic, actor: DeviceActor) -> Callable[[requests.Session], None]:
    """A device with nothing to do: it sends back the ETag of its last empty answer."""
    etag: list[str] = []
    path = f"/v2/command-inbox/?device_id={actor.device.device_id}"

    def step(session: requests.Session) -> None:
        headers = {"If-None-Match": etag[0]} if etag else {}
        answer = traffic.request(session, "inbox, idle device", "GET", path, actor.token, headers=headers)
        if answer is not None and answer.status == 200:
            etag[:] = [answer.headers["ETag"]] if "ETag" in answer.headers else []

    return step


def busy_device(traffic: Traffic, actor: DeviceActor) -> Callable[[requests.Session], None]:
    """A device with commands queued: each poll takes some; it reports one step per loop."""
    steps: list[tuple[int, str]] = []
    path = f"/v2/command-inbox/?device_id={actor.device.device_id}"

    def step(session: requests.Session) -> None:
        if not steps:
            answer = traffic.request(session, "inbox, busy device", "GET", path, actor.token)
            if answer is not None and answer.status == 200:
                for command in answer.body["content"]["results"]:
                    steps.extend(
                        [(command["id"], "Command Acknowledged"), (command["id"], "Command Success")]
                    )
            return
        command_id, state = steps[0]
        answer = traffic.request(
            session, "report", "PUT", f"/commands/v0/status/{command_id}/", actor.token, json={"state": state}
        )
        if answer is not None and answer.status == 200:
            steps.pop(0)

    return step


def reader(traffic: Traffic, kind: str, path: str, token: str) -> Callable[[requests.Session], None]:
    def step(session: requests.Session) -> None:
        traffic.request(session, kind, "GET", path, token)

    return step


def operator(traffic: Traffic, token: str) -> Callable[[requests.Session], None]:
    """Creates an operation (no worker runs: it stays CREATED), then cancels it."""
    created: list[str] = []

    def step(session: requests.Session) -> None:
        if not created:
            body = {"operation_type": "REBOOT", "operation_device_query": {"all": True}}
            answer = traffic.request(session, "POST operation", "POST", "/v0/operations/", token, json=body)
            if answer is not None and answer.status == 201:
                created.append(answer.body["content"]["id"])
            return
        cancel = {"state": "CANCELLED", "reason": "issue 23"}
        path = f"/v0/operations/{created[0]}/"
        answer = traffic.request(session, "PUT CANCELLED", "PUT", path, token, json=cancel)
        if answer is not None and answer.status != 503:
            created.clear()

    return step


@dataclass
class Stack:
    base: str
    redis: RedisServer
    procs: Processes
    web: Any
    admin_key: str
    viewer_key: str
    idle: list[DeviceActor]
    busy: list[DeviceActor]


@pytest.fixture(params=["serve", "refuse"], ids=["devices-served-from-postgresql", "devices-refused-503"])
def stack(request: Any, transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    serve_devices = request.param == "serve"
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    own = {"default": {**settings.CACHES["default"], "LOCATION": redis_server.url(0)}}
    procs: Processes | None = None
    try:
        with override_settings(CACHES=own):  # the in-process fan-out bumps the server's generations
            tenant, _ = get_or_create_tenant("acme")
            admin_key = create_api_key(tenant, "admin", "admin")[1]
            viewer_key = create_api_key(tenant, "viewer", "viewer")[1]
            idle = add_devices(tenant, 3)
            busy = [add_device(tenant, f"busy-{i}") for i in range(2)]
            for _ in range(OPERATIONS):
                dispatched_operation(tenant, busy)
            for actor in busy:
                for n in range(INTERNAL):
                    issue_internal_command(tenant.pk, actor.device.pk, "noop", {}, f"stock-{n}")
            procs = Processes(
                tmp_path,
                {
                    "REDIS_URL": redis_server.url(0),
                    "CELERY_BROKER_URL": redis_server.url(0),  # one Redis for both, the default
                    "DB_CONN_MAX_AGE": "60",  # persistent connections, as in production
                    "INBOX_BATCH": "2",
                    "RATE_LIMIT_KEY_PER_MINUTE": "0",  # the threads are the load, not abuse
                    "RATE_LIMIT_DEVICE_PER_MINUTE": "0",
                    "CACHE_OUTAGE_SERVES_DEVICES": "1" if serve_devices else "0",
                    "METRICS_TOKEN": METRICS_TOKEN,
                },
            )
            port = free_port()
            web = procs.start(
                "web",
                "-m",
                "gunicorn",
                "config.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "-k",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "30",
            )
            wait_port(port)
            yield Stack(
                f"http://127.0.0.1:{port}", redis_server, procs, web, admin_key, viewer_key, idle, busy
            )
    finally:
        if procs is not None:
            procs.stop_all()
        redis_server.stop()


def _summary(answers: list[Answer]) -> dict[str, dict[int, int]]:
    counts: dict[str, Counter[int]] = {}
    for a in answers:
        counts.setdefault(a.kind, Counter())[a.status] += 1
    return {kind: dict(sorted(c.items())) for kind, c in sorted(counts.items())}


def _normal_since(traffic: Traffic, moment: float, kinds: set[str]) -> bool:
    return {a.kind for a in traffic.since(moment) if a.status in NORMAL[a.kind]} >= kinds


def test_a_redis_outage_under_traffic_answers_no_500_and_recovers(stack: Stack) -> None:
    serve_devices = stack.procs.env["CACHE_OUTAGE_SERVES_DEVICES"] == "1"
    traffic = Traffic(stack.base)
    traffic.start(
        *(idle_device(traffic, actor) for actor in stack.idle),
        *(busy_device(traffic, actor) for actor in stack.busy),
        reader(
            traffic,
            "device's command list",
            f"/commands/v0/status/?device={stack.idle[0].device.device_id}",
            stack.idle[0].token,
        ),
        reader(traffic, "device list", "/v0/devices/", stack.viewer_key),
        reader(traffic, "metrics", "/metrics", METRICS_TOKEN),  # the installation's, as Prometheus
        operator(traffic, stack.admin_key),
    )
    kinds = set(NORMAL)
    try:
        wait_until(
            lambda: _normal_since(traffic, 0, kinds), timeout=60, what="every kind answered before the fault"
        )
        wait_until(
            lambda: any(a.status == 304 for a in traffic.answers), timeout=30, what="a 304 before the fault"
        )

        down = time.monotonic()
        stack.redis.stop(signal.SIGKILL)
        time.sleep(OUTAGE_SECONDS)  # the outage itself: traffic goes on meanwhile
        up = time.monotonic()
        stack.redis.start()
        listening = time.monotonic()  # every process tries Redis again within RETRY_SECONDS
        during = [a for a in traffic.since(down) if a.started < up]
        # Recovered: 304s again (they need the cache), and every kind answering normally.
        recovered = wait_until(
            lambda: next((a.started for a in traffic.since(up) if a.status == 304), None),
            timeout=30,
            interval=0.05,
            what="a 304 again after Redis started",
        )
        wait_until(
            lambda: _normal_since(traffic, recovered, kinds),
            timeout=30,
            what="every kind normal after the outage",
        )
        settled = max(time.monotonic(), listening + RETRY_SECONDS)
        wait_until(lambda: time.monotonic() >= settled, timeout=5, interval=0.05, what="the last retry")
        wait_until(
            lambda: (
                min(Counter(a.kind for a in traffic.since(settled)).get(k, 0) for k in kinds)
                >= AFTER_RECOVERY
            ),
            timeout=60,
            what=f"{AFTER_RECOVERY} answers of every kind after the recovery",
        )
    finally:
        traffic.finish()

    answers = traffic.answers
    statuses = Counter(a.status for a in answers)
    slowest = {k: round(max(a.seconds for a in during if a.kind == k), 2) for k in {a.kind for a in during}}
    first_normal = {
        kind: round(
            min(a.started for a in traffic.since(listening) if a.kind == kind and a.status in NORMAL[kind])
            - listening,
            2,
        )
        for kind in sorted(kinds)
    }
    print(
        f"\n{'served' if serve_devices else 'refused'} devices: {len(answers)} requests {dict(statuses)};"
        f" during the {up - down:.1f} s outage {len(during)}: {_summary(during)};"
        f" slowest answer during it by kind {slowest};"
        f" after Redis listened again: first 304 {recovered - listening:.2f} s,"
        f" first normal answer by kind {first_normal}"
    )
    assert stack.web.poll() is None, "the web server died"
    assert not traffic.errors, traffic.errors[:5]  # no hang, no dropped connection
    assert statuses[500] == 0, [(a.kind, a.body) for a in answers if a.status == 500][:5]
    for a in answers:
        if a.status in NORMAL[a.kind]:
            continue
        assert a.status == 503, (a.kind, a.status, a.body)
        assert a.headers.get("Retry-After") == "5", (a.kind, a.headers)
        assert a.headers.get("Content-Type", "").startswith("application/json"), (a.kind, a.headers)
        assert isinstance(a.body, dict) and a.body["code"] == 503 and a.body["errors"] == {}, (a.kind, a.body)
        assert a.body["error_code"] == "cache_unavailable", (a.kind, a.body)
    # The write paths and the operators' reads went on while Redis was down.
    went_on = {a.kind for a in during if a.status in NORMAL[a.kind]}
    operators = kinds - DEVICE_KINDS
    assert went_on >= (kinds if serve_devices else operators), _summary(during)
    if not serve_devices:  # the devices waited for Redis (a busy one polling, or retrying a report)
        refused = {a.kind for a in during if a.status == 503}
        assert refused >= {"inbox, idle device", "device's command list"}, _summary(during)
        assert refused & {"inbox, busy device", "report"}, _summary(during)
    assert all(a.status in NORMAL[a.kind] for a in traffic.since(settled)), _summary(traffic.since(settled))
    log = stack.procs.log("web")
    assert "Internal Server Error" not in log and "unhandled error" not in log, log[-3000:]
