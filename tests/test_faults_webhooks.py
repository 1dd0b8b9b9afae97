"""Webhook delivery under faults, with real worker and beat processes and real receivers on
127.0.0.1.

A Celery worker killed in the middle of a webhook batch loses nothing: the killed worker's
lease on the endpoint expires (``WEBHOOK_LEASE_SECONDS``), the beat kicks the endpoint again,
and a new worker sends every event that was not recorded as delivered: each event arrives at
least once, under its one ``webhook-id``.

A slowloris receiver (issue 23), one byte a second, holds one delivery process of the
``webhooks`` queue and nothing else: fan-outs and stops on the default queue's worker, and
another tenant's endpoint, are served meanwhile; and the attempt is cut at its deadline.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from commands.choices import CommandState
from commands.models import CommandStatus
from inventory.models import PendingDelivery, WebhookDelivery, WebhookEndpoint, WebhookEvent
from inventory.webhooks.services import create_endpoint
from operations.choices import OperationState
from operations.models import Operation
from tests.conftest import CeleryProcesses, add_device, make_org, wait_until
from tests.helpers import content
from tests.webhook_receiver import receiver, slowloris

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

EVENTS = 20


def test_a_worker_killed_mid_batch_loses_no_event(
    celery_processes: CeleryProcesses, monkeypatch: Any, settings: Any
) -> None:
    # Short lease and small batches, so the kill lands inside a batch and the retry comes soon.
    for name, value in {
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
        "WEBHOOK_LEASE_SECONDS": "4",
        "WEBHOOK_TIMEOUT_SECONDS": "2",  # the lease must be at least twice the attempt's deadline
        "WEBHOOK_BATCH_SIZE": "5",
        "WEBHOOK_POLL_SECONDS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    org = make_org("acme")

    with receiver(delay=0.3) as hook:
        create_endpoint(org.tenant.pk, hook.url, ["device.created"])
        for i in range(EVENTS):
            add_device(org.tenant, f"dev-{i:02d}")
        expected = {event.webhook_id for event in WebhookEvent.objects.all()}
        assert len(expected) == EVENTS

        celery_processes.worker(concurrency=1)
        celery_processes.beat()
        wait_until(lambda: hook.count() >= 3, timeout=60, interval=0.05, what="the first deliveries")
        celery_processes.kill("worker", signal.SIGKILL)
        at_kill = hook.count()
        assert at_kill < EVENTS, "the kill came too late to land inside the deliveries"
        assert PendingDelivery.objects.count() > 0

        celery_processes.worker(concurrency=1, name="worker-2")
        wait_until(lambda: set(hook.ids()) >= expected, timeout=90, what="every event to arrive")
        wait_until(lambda: not PendingDelivery.objects.exists(), timeout=30, what="nothing owed")

    assert set(hook.ids()) == expected  # every event, nothing else
    delivered = set(
        WebhookDelivery.objects.filter(status_code=200).values_list("event_id", flat=True).distinct()
    )
    assert {f"evt_{pk}" for pk in delivered} == expected


OPS = "/v0/operations/"


def _environment(monkeypatch: Any, settings: Any, **values: str) -> None:
    for name, value in {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1", "WEBHOOK_POLL_SECONDS": "1", **values}.items():
        monkeypatch.setenv(name, value)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


def _production_layout(procs: CeleryProcesses) -> None:
    """As the README runs them: a worker of the default queue (one process, the harshest case),
    a worker of the ``webhooks`` queue (two processes), beat."""
    procs.worker(concurrency=1, name="default", queues="celery")
    procs.worker(concurrency=2, name="hooks", queues="webhooks")
    procs.beat()


def test_a_slowloris_receiver_stalls_no_fan_out_no_stop_and_no_other_tenant(
    celery_processes: CeleryProcesses, monkeypatch: Any, settings: Any
) -> None:
    """Issue 23: with deliveries on the one queue, a receiver trickling a byte a second held the
    workers: a 1-device operation was not DISPATCHED 200 s after its creation, a TIMEOUT stop
    stayed in_progress 28 s. Here the attempt's deadline is two minutes, so the trickle lasts the
    whole test, and everything else is asserted while the receiver is still being sent to."""
    _environment(
        monkeypatch,
        settings,
        WEBHOOK_TIMEOUT_SECONDS="120",
        WEBHOOK_LEASE_SECONDS="240",
        SWEEP_SECONDS="1",
    )
    slow_org, org = make_org("slowco"), make_org("acme")
    with slowloris(part="body", interval=1.0, limit=100_000) as slow, receiver() as fine:
        create_endpoint(slow_org.tenant.pk, slow.url, ["*"])
        create_endpoint(org.tenant.pk, fine.url, ["*"])
        add_device(slow_org.tenant, "slow-1")  # device.created: owed to the slow receiver
        add_device(org.tenant, "dev-1")
        _production_layout(celery_processes)

        wait_until(slow.busy, timeout=60, what="a delivery to the slow receiver to be under way")

        # A 1-device fan-out reaches DISPATCHED on the default queue's worker.
        created = org.admin.post(OPS, {"operation_type": "REBOOT", "operation_device_query": {"all": True}})
        operation_id = content(created, 201)["id"]
        wait_until(
            lambda: Operation.objects.filter(pk=operation_id, state=OperationState.DISPATCHED).exists(),
            timeout=60,
            what=f"the 1-device operation to be DISPATCHED\n{celery_processes.log('default')[-3000:]}",
        )
        assert slow.busy(), "the slow delivery ended: nothing was asserted while it ran"

        # A TIMEOUT stop moves the operation at once and its command on the worker.
        stopped = content(org.admin.put(f"{OPS}{operation_id}/", {"state": "TIMEOUT", "reason": "faults"}))
        assert stopped["state"] == "TIMEOUT"

        def stop_done() -> bool:
            return content(org.admin.get(f"{OPS}{operation_id}/"))["commands_stop"] == "done"

        wait_until(stop_done, timeout=60, what="the TIMEOUT stop to finish")
        assert set(
            CommandStatus.objects.filter(operation_id=operation_id).values_list("state", flat=True)
        ) == {CommandState.TIMEOUT}
        assert slow.busy()

        # The other tenant's endpoint gets its events from the other delivery process.
        expected = {event.webhook_id for event in WebhookEvent.objects.filter(tenant=org.tenant)}
        wait_until(lambda: set(fine.ids()) >= expected, timeout=60, what="the other tenant's events")
        types = [json.loads(request.body)["type"] for request in fine.requests]
        assert "device.created" in types and "operation.created" in types
        assert "operation.state_changed" in types
        assert slow.busy() and slow.count() == 1  # still the first attempt, still held


def test_a_trickling_receiver_is_cut_at_the_deadline_by_a_real_worker(
    celery_processes: CeleryProcesses, monkeypatch: Any, settings: Any
) -> None:
    """The deadline in a Celery pool process (the watchdog thread is made again after the fork):
    a body trickled a byte every 0.5 s is cut at 2 s, the attempt fails as timed out, the
    endpoint backs off."""
    _environment(
        monkeypatch,
        settings,
        WEBHOOK_TIMEOUT_SECONDS="2",
        WEBHOOK_LEASE_SECONDS="4",
        WEBHOOK_RETRY_SCHEDULE="300",
    )
    org = make_org("slowco")
    with slowloris(part="body", interval=0.5, limit=100_000) as slow:
        endpoint, _ = create_endpoint(org.tenant.pk, slow.url, ["device.created"])
        add_device(org.tenant, "slow-1")
        _production_layout(celery_processes)

        attempt = wait_until(
            lambda: WebhookDelivery.objects.filter(endpoint=endpoint).first(),
            timeout=60,
            what=f"the attempt to be recorded\n{celery_processes.log('hooks')[-3000:]}",
        )
        wait_until(lambda: slow.cuts() == 1, timeout=30, what="the receiver to see the worker hang up")

    assert attempt.status_code is None
    assert attempt.error == "timed out: no whole answer within 2 s (WEBHOOK_TIMEOUT_SECONDS)"
    endpoint = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert endpoint.next_attempt_at is not None and endpoint.consecutive_failures == 1
    assert PendingDelivery.objects.filter(endpoint=endpoint).count() == 1  # owed, for the retry
    assert slow.count() == 1
