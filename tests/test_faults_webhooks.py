"""A Celery worker killed in the middle of a webhook batch loses nothing: real worker and beat
processes, a real receiver on 127.0.0.1, SIGKILL while the batch is being sent.

The killed worker's lease on the endpoint expires (``WEBHOOK_LEASE_SECONDS``), the beat kicks
the endpoint again, and a new worker sends every event that was not recorded as delivered:
each event arrives at least once, under its one ``webhook-id``.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from inventory.models import PendingDelivery, WebhookDelivery, WebhookEvent
from inventory.webhooks.services import create_endpoint
from tests.conftest import CeleryProcesses, add_device, make_org, wait_until
from tests.webhook_receiver import receiver

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
