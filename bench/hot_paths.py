"""The device's hot paths in one process, through the whole WSGI application, with no HTTP:
where a request's time goes, beside a bare Django view through the same middleware.

    .venv/bin/python bench/hot_paths.py [--devices 2000] [--requests 2000] [--rounds 3]
        [--profile 304] [--top 35] [--database-url ...] [--redis-url ...]

It creates the database, migrates it, imports the devices, and calls ``config.wsgi``'s
application directly with a WSGI environ per request (``bench.settings``, which only adds
``/bench/bare/``), in rounds that interleave the paths so drift hits them alike:

- ``bare``: ``GET /bench/bare/``, the ceiling;
- ``304``: an empty poll with the ETag of the device's last empty answer;
- ``200``: an empty poll without an ETag (the hand-out query runs and finds nothing);
- ``handout``: a poll that hands out one command (``INBOX_BATCH=1``);
- ``put``: ``PUT /commands/v0/status/{id}/`` Initiated -> Acknowledged, each a new command.

With ``--rollout`` the operations are fanned out with a rollout (one wave, a rate, abort rules,
retries), so the hand-outs go through the rollout's gate and rate window.

It prints µs per request (median of the rounds' means) and each path's cost above ``bare``.
``--profile PATH`` runs that path once more under cProfile and prints the functions that
take the most time, own (tottime) and with callees (cumtime). The server's own HTTP layer
(gunicorn) is not in these figures: ``bench/inbox_load.py`` measures it served for real.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.inbox_load import ROLLOUT  # scenario 3b's: the gate and the rate window on every hand-out
from bench.support import Database, machine, manage, project_env

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_paths"
DEFAULT_REDIS = "redis://127.0.0.1:6379/4"
PATHS = ("bare", "304", "200", "handout", "put")


def environ(
    method: str, path: str, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for one request."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/json"
    for name, value in (headers or {}).items():
        env[f"HTTP_{name.upper()}"] = value
    return env


class Paths:
    """Makes each path's next request; every request of ``handout`` and ``put`` finds work."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.db = Database(options.database_url)
        self.env = project_env(
            self.db.url, options.redis_url, DJANGO_SETTINGS_MODULE="bench.settings", INBOX_BATCH="1"
        )
        self.devices: list[tuple[str, str, int]] = []  # with commands: hand-outs and PUTs
        self.idle: list[tuple[str, str, int]] = []  # imported after the fan-outs: empty inboxes
        self.etags: list[str] = []  # the idle devices' empty-answer ETags
        self.tenant_id = 0

    def setup(self) -> None:
        self.db.recreate()
        redis.Redis.from_url(self.options.redis_url).flushdb()
        manage(self.env, "migrate", "--noinput", "-v0")
        manage(self.env, "create_tenant", "bench")
        os.environ.update(self.env)
        import django

        django.setup()
        from inventory.models import Tenant

        self.tenant_id = Tenant.objects.get(slug="bench").pk
        self.devices = self.import_devices("dev")

    def import_devices(self, prefix: str) -> list[tuple[str, str, int]]:
        from inventory.authentication import resolve_token
        from inventory.models import Device
        from inventory.services import bulk_import_devices

        rows = [{"device_id": f"{prefix}_{i:05d}", "os": "android"} for i in range(self.options.devices)]
        created = bulk_import_devices(self.tenant_id, rows).created
        pks = dict(Device.objects.filter(tenant_id=self.tenant_id).values_list("device_id", "pk"))
        for _, token in created:
            assert resolve_token(token) is not None  # cached as a poll leaves it
        return [(device_id, token, pks[device_id]) for device_id, token in created]

    def prime_idle(self) -> None:
        """Devices without commands, and the ETags of their last (empty) answers."""
        from commands import inbox_cache

        self.idle = self.import_devices("idle")
        for _, _, pk in self.idle:
            generation = inbox_cache.generations(self.tenant_id, pk)
            self.etags.append(inbox_cache.empty_etag(self.tenant_id, pk, generation))

    def fan_out(self, count: int) -> None:
        from operations import fanout, services

        query = {"all": True}
        rollout = ROLLOUT if self.options.rollout else None
        for _ in range(count):
            operation = services.create_operation(
                self.tenant_id,
                {"operation_type": "REBOOT", "operation_device_query": query, "rollout": rollout},
                "bench",
            )
            fanout.fan_out(operation.pk)
        redis.Redis.from_url(self.options.redis_url).delete("celery")

    def initiated(self) -> list[tuple[int, str]]:
        from commands.models import CommandStatus

        token_of = {pk: token for _, token, pk in self.devices}
        rows = CommandStatus.objects.filter(state=2).order_by("id").values_list("id", "device_id")
        return [(command_id, token_of[device_pk]) for command_id, device_pk in rows]

    def requests(self, path: str) -> Iterator[tuple[dict[str, Any], int]]:
        """Endless (environ, expected status) of ``path``."""
        devices = self.idle if path in ("304", "200") else self.devices
        n = len(devices)
        i = 0
        while True:
            device_id, token, _ = devices[i % n]
            auth = {"AUTHORIZATION": f"Bearer {token}"}
            query = f"device_id={device_id}"
            if path == "bare":
                yield environ("GET", "/bench/bare/"), 200
            elif path == "304":
                etag = self.etags[i % n]
                yield (
                    environ("GET", "/v2/command-inbox/", query, headers={**auth, "IF_NONE_MATCH": etag}),
                    304,
                )
            elif path in ("200", "handout"):
                yield environ("GET", "/v2/command-inbox/", query, headers=auth), 200
            i += 1


def run(application: Any, requests: list[tuple[dict[str, Any], int]]) -> float:
    """Seconds for the requests, each answered as ``expected`` (checked, not timed apart)."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    started = time.perf_counter()
    for env, _ in requests:
        body = application(env, start_response)
        for _ in body:
            pass
        if hasattr(body, "close"):
            body.close()
    spent = time.perf_counter() - started
    wrong = [(s, e) for s, (_, e) in zip(statuses, requests, strict=True) if not s.startswith(str(e))]
    if wrong:
        raise SystemExit(f"unexpected answers, e.g. {wrong[0][0]} instead of {wrong[0][1]}")
    return spent


def put_requests(rows: list[tuple[int, str]]) -> list[tuple[dict[str, Any], int]]:
    body = b'{"state": "Command Acknowledged"}'
    return [
        (
            environ(
                "PUT", f"/commands/v0/status/{cid}/", body=body, headers={"AUTHORIZATION": f"Bearer {token}"}
            ),
            200,
        )
        for cid, token in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=2000, help="per path per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=PATHS, action="append", default=[])
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--rollout", action="store_true", help="the operations have a rollout")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    options = parser.parse_args()
    paths = Paths(options)
    print(f"machine: {machine(paths.db.admin_url)}")
    paths.setup()
    try:
        from config.wsgi import application

        k = options.requests
        # Commands for every round's hand-outs and PUTs (and the profiles'), each device in turn.
        need = (options.rounds + len(options.profile) + 1) * k
        paths.fan_out(-(-2 * need // len(paths.devices)))
        paths.prime_idle()
        spent: dict[str, list[float]] = {path: [] for path in PATHS}
        generators = {path: paths.requests(path) for path in ("bare", "304", "200", "handout")}

        def batch(path: str) -> list[tuple[dict[str, Any], int]]:
            if path == "put":
                return put_requests(paths.initiated()[:k])
            return [next(generators[path]) for _ in range(k)]

        # Warm-up: every path once through (imports, connections, prepared statements).
        for path in PATHS:
            run(application, batch(path)[:50])
        for _ in range(options.rounds):
            for path in PATHS:
                spent[path].append(run(application, batch(path)) / k)
        bare = statistics.median(spent["bare"])
        print(f"\n{options.rounds} rounds of {k:,} requests per path, µs per request (median of rounds)")
        print("| path | µs | above bare | ratio of bare's rate |")
        print("|---|---:|---:|---:|")
        for path in PATHS:
            us = statistics.median(spent[path]) * 1e6
            print(f"| {path} | {us:.0f} | {us - bare * 1e6:.0f} | {bare * 1e6 / us:.2f} |")
        for path in options.profile:
            if path == "put":  # commands to acknowledge: handed out first, not profiled
                run(application, batch("handout"))
            requests = batch(path)
            profile = cProfile.Profile()
            profile.enable()
            run(application, requests)
            profile.disable()
            for order in ("tottime", "cumtime"):
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats(order).print_stats(options.top)
                print(f"\n--- {path}: by {order}, {k:,} requests ---")
                print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])
    finally:
        from django.db import connections

        connections.close_all()
        paths.db.drop()


if __name__ == "__main__":
    main()
