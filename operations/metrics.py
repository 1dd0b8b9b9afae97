"""Operations by state for ``GET /metrics``, read from the database at scrape time.

One ``GROUP BY`` over every tenant's operations; every state is shown, 0 included, so a
dashboard's series do not come and go. Registered in ``config.metrics.scrape_collectors``
by ``OperationsConfig.ready``.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from config.metrics import PREFIX
from operations.choices import OperationState
from operations.models import Operation


def operations_by_state() -> Iterable[Metric]:
    rows = Operation.objects.order_by().values_list("state").annotate(n=Count("pk"))
    counts = dict(rows)
    family = GaugeMetricFamily(
        f"{PREFIX}_operations", "Operations in the database, by state (all tenants).", labels=["state"]
    )
    for state in OperationState:
        family.add_metric([state.name.lower()], counts.get(state.value, 0))
    return [family]
