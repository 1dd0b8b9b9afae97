"""The server's Prometheus metrics: the metric objects, the request middleware, the scrape.

Plumbing: the apps import the metric objects from here and count where their work happens
(the inbox its polls, ``commands.services`` its state changes, ``operations.fanout`` its
rows); what must be read at scrape time from an app's tables is registered by that app in
its ``AppConfig.ready()`` (:data:`scrape_collectors`), so this module imports no app.
``GET /metrics`` (``config.api.metrics``) serves :func:`exposition`.

Counting is cheap on purpose: an increment in memory (or, in multi-process mode, in a
memory-mapped file), no I/O. The inbox's 304 stays one Redis round trip.

Multi-process mode. gunicorn runs several processes, each with its own counters. Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty folder, the same for every process of the machine,
*before* they start: each process then writes its values to files there, and a scrape of any
web process adds up every process's files, the Celery workers' included when they run on the
same machine with the same folder. Empty the folder when the processes start afresh
(docs/observability.md).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from config.health import REDIS_SCHEMES, broker_redis

logger = logging.getLogger(__name__)

PREFIX = "dos"  # device operations server

# No ``*_created`` series next to every counter and histogram (multi-process mode has none
# either): the same families whether one process serves or many.
disable_created_metrics()

#: Fast answers (an inbox 304 is about a millisecond) up to the bulk import's seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests answered, by method, URL route (the pattern, not the path) and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and URL route.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
INBOX_POLLS = Counter(
    f"{PREFIX}_inbox_polls",
    "Device inbox polls that reached the inbox, by outcome: not_modified (304), empty, handed_out.",
    ["outcome"],
)
#: Children made once: the inbox's increment is then a plain ``inc()``, no label lookup.
INBOX_NOT_MODIFIED = INBOX_POLLS.labels("not_modified")
INBOX_EMPTY = INBOX_POLLS.labels("empty")
INBOX_HANDED_OUT = INBOX_POLLS.labels("handed_out")

COMMAND_STATE_CHANGES = Counter(
    f"{PREFIX}_command_state_changes",
    "Command state changes written by commands.services (report, set moves, hand-out), by target state.",
    ["state"],
)
FANOUT_ROWS = Counter(
    f"{PREFIX}_fanout_rows",
    "Command status rows written by operations' fan-outs.",
)
FANOUT_DURATION = Histogram(
    f"{PREFIX}_fanout_duration_seconds",
    "Time of one fan-out run of an operation, by outcome (ok, error).",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)

WEBHOOK_ATTEMPTS = Counter(
    f"{PREFIX}_webhook_attempts",
    "Webhook delivery attempts, by result: 2xx (delivered), the status class of any other answer "
    "(4xx, 5xx, 3xx: redirects are not followed), or why there was no answer: timeout, "
    "connection, refused (the SSRF guard). Failures are every result but 2xx.",
    ["result"],
)
WEBHOOK_GIVEN_UP = Counter(
    f"{PREFIX}_webhook_given_up",
    "Webhook events no longer owed to an endpoint without being delivered: retries exhausted, "
    "or the endpoint answered 410 Gone (disabled).",
)

# --- the MQTT bridge (``manage.py mqtt_bridge``, commands.bridge; docs/mqtt-bridge.md). Its process
# writes these to PROMETHEUS_MULTIPROC_DIR as a worker does, so /metrics adds them up.
MQTT_CONNECTED_DEVICES = Gauge(
    f"{PREFIX}_mqtt_connected_clients",
    "Clients connected to the MQTT broker, as the broker says ($SYS/broker/clients/connected): the "
    "devices with a live session, plus the bridges.",
    multiprocess_mode="mostrecent",
)
MQTT_NOTIFIES = Counter(
    f"{PREFIX}_mqtt_notifies",
    "notify messages published to devices and acknowledged by the broker (QoS 1).",
)
MQTT_MESSAGES = Counter(
    f"{PREFIX}_mqtt_messages",
    "Device messages the bridge settled, by kind: inbox_get, update.",
    ["kind"],
)
MQTT_BATCH_SIZE = Histogram(
    f"{PREFIX}_mqtt_batch_size",
    "Device messages settled in one batch (one transaction) by the bridge.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
MQTT_SETTLE_DURATION = Histogram(
    f"{PREFIX}_mqtt_settle_duration_seconds",
    "Time to settle one batch of device messages, its commit included.",
    buckets=LATENCY_BUCKETS,
)
DEVICE_BATCH_SIZE = Histogram(
    f"{PREFIX}_device_batch_size",
    "HTTP device requests (status reports and inbox hand-outs) of one web process settled together "
    "in one transaction (commands.coalesce): 1 while requests come one at a time.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MQTT_REJECTED = Counter(
    f"{PREFIX}_mqtt_rejected_updates",
    "Device updates answered on .../update/rejected, by error_code (docs/errors.md).",
    ["code"],
)
MQTT_DROPPED = Counter(
    f"{PREFIX}_mqtt_dropped_messages",
    "Device messages dropped without an answer, by reason: unknown_device (no such active device), "
    "bad_topic, malformed (an inbox/get that is not a JSON object), server_error (a defect while "
    "settling: logged, its messages acknowledged so that they do not come back forever).",
    ["reason"],
)

IDEMPOTENCY_OUTCOMES = Counter(
    f"{PREFIX}_idempotency_keys",
    "POSTs with an Idempotency-Key, by outcome: claimed (it ran), replayed (the kept answer), "
    "running (409), mismatch (422).",
    ["outcome"],
)

CACHE_UNAVAILABLE = Counter(
    f"{PREFIX}_cache_unavailable",
    "Uses of the cache (Redis) that went on without it while it could not be reached, by use: "
    "token_lookup (looked up in PostgreSQL, requests per minute not counted), "
    "failure_count (a failed token check not counted per address), inbox_304 (a poll answered "
    "from the database), presence (sightings kept in the process), rollout_rate (a rollout's "
    "rate-limited commands held back), rollout_rate_read, generation_bump and token_forget "
    "(redone once the cache is back), key_last_used.",
    ["use"],
)

#: Functions called at every scrape, each returning metric families read then (one query
#: each, at most). Apps append to it in their ``AppConfig.ready()``. One that raises is
#: left out of that scrape (and logged): the others, and the counters, are still served.
ScrapeCollector = Callable[[], Iterable[Metric]]
scrape_collectors: list[ScrapeCollector] = []


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def reset_multiprocess_dir(folder: Path) -> None:
    """Make ``folder`` an empty multi-process folder before the processes sharing it start
    (``make run``'s runstack): a previous run's files would count its dead processes' values
    again. Only prometheus_client's own files (``*.db``) are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


class RequestMetricsMiddleware:
    """Counts every answer and its time by route (the URL pattern, so the labels stay few).

    First in ``MIDDLEWARE``: static files and early refusals are counted too. Requests no
    route matched are ``route="unmatched"``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = request.resolver_match
        route = route_label(match.route) if match is not None else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_DURATION.labels(method, route).observe(elapsed)
        return response


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@functools.lru_cache(maxsize=1024)
def route_label(route: str) -> str:
    """A route as one reads it: ``^commands/v0/status/(?P<pk>[0-9]+)/$`` (DRF's routers) and
    ``v0/x/<str:pk>/`` both become ``/commands/v0/status/{pk}/``. Made once per route."""
    route = route.removeprefix("^").removesuffix("$")
    return "/" + _CONVERTER.sub(r"{\1}", _REGEX_GROUP.sub(r"{\1}", route))


def celery_queue_length() -> Iterable[Metric]:
    """Messages waiting in each Celery queue the workers consume (``WORKER_QUEUES``: ``celery``
    and ``webhooks``), read from the broker at scrape time. A ``webhooks`` queue that only
    grows means no worker consumes it (``-Q webhooks``).

    Redis: ``LLEN`` of the queue's list and of its priority lists (kombu keeps a message with
    a priority in ``celery\\x06\\x16<n>``), one pipelined round trip. The filesystem broker of
    ``make run``: the queue's files in its folder. Other brokers (AMQP) are not read: their
    own management tools show queue depths.
    """
    url = str(settings.CELERY_BROKER_URL)
    queues = list(settings.WORKER_QUEUES)
    if url.startswith(REDIS_SCHEMES):
        pipe = broker_redis(url).pipeline(transaction=False)
        for queue in queues:
            for key in (queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))):
                pipe.llen(key)
        lengths = [int(n) for n in pipe.execute()]
        depths = {queue: sum(lengths[4 * i : 4 * i + 4]) for i, queue in enumerate(queues)}
    elif url.startswith("filesystem://"):
        folder = str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        with os.scandir(folder) as entries:
            names = [entry.name.partition(".")[2] for entry in entries]
        depths = {queue: names.count(f"{queue}.msg") for queue in queues}
    else:
        return []
    family = GaugeMetricFamily(
        f"{PREFIX}_celery_queue_length", "Messages waiting in a Celery queue of the broker.", labels=["queue"]
    )
    for queue, depth in depths.items():
        family.add_metric([queue], depth)
    return [family]


class _ScrapeTime:
    """The scrape-time collectors as one prometheus_client collector."""

    def collect(self) -> Iterable[Metric]:
        for collect in (celery_queue_length, *scrape_collectors):
            try:
                yield from list(collect())
            except Exception:
                logger.warning("metrics: %s failed; left out of this scrape", collect.__name__, exc_info=True)


def registry() -> CollectorRegistry:
    """What one scrape reads: this process's metrics (or, in multi-process mode, every
    process's, from their files) and the scrape-time collectors."""
    scrape = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape.register(REGISTRY)  # type: ignore[arg-type]  # a registry is a collector too
    scrape.register(_ScrapeTime())  # type: ignore[arg-type]
    return scrape


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format of :func:`registry`, and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
