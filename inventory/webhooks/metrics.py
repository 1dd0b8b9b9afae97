"""What the webhooks still owe, for ``GET /metrics``, read from the database at scrape time.

The delivery counters (``dos_webhook_attempts_total``, ``dos_webhook_given_up_total``) are
counted by the deliverer as it works; what is owed is a state, not an event, so it is read
when Prometheus asks: one aggregate over the pending deliveries of active endpoints (an
inactive endpoint's backlog waits for an operator, not for the deliverer, and would keep an
alert firing). Registered in ``config.metrics.scrape_collectors`` by ``InventoryConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from config.metrics import PREFIX
from inventory.models import PendingDelivery


def webhook_backlog() -> Iterable[Metric]:
    """``dos_webhook_events_owed`` and ``dos_webhook_oldest_owed_age_seconds`` (0 when
    nothing is owed): a backlog that only grows, or an age past the retry schedule, means the
    deliveries are not getting through (docs/observability.md has the alerts)."""
    owed = PendingDelivery.objects.filter(endpoint__active=True).aggregate(
        n=Count("id"), oldest=Min("event__created_at")
    )
    count = GaugeMetricFamily(
        f"{PREFIX}_webhook_events_owed",
        "Webhook deliveries still owed to active endpoints (new, waiting for a retry, or asked again).",
    )
    count.add_metric([], owed["n"])
    age = GaugeMetricFamily(
        f"{PREFIX}_webhook_oldest_owed_age_seconds",
        "Age of the oldest event still owed to an active endpoint (0: nothing owed).",
    )
    oldest = owed["oldest"]
    age.add_metric([], max((timezone.now() - oldest).total_seconds(), 0.0) if oldest else 0.0)
    return [count, age]
