"""A fleet's figures for the console: its size, by state and by OS.

Counting a million devices exactly reads every row: two such scans (by state, by OS) were 280 ms
of the console dashboard's 390 ms at a million devices (issue 26, ``bench/console_scale.py``).
So the figures are exact up to ``COUNT_ESTIMATE_THRESHOLD`` devices (100,000), the threshold of
the lists' counts (whether there are more is counted, up to one past it), and estimated beyond
it, flagged so that the page says "about": the total is the planner's estimate (as a list's
count is), and the split by state and OS the proportions of a sample of the table's pages
(``TABLESAMPLE SYSTEM``, a fixed seed, so that a reload shows the same figures while nothing
changes). An operation's own counters stay exact: they are kept by the writes, not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from config.api.pagination import estimated_rows
from inventory.models import Device

TABLE = Device._meta.db_table
#: Rows a sample aims at: enough for the split of a fleet into states and OSes to be right to
#: about a percent of it; reading them costs a few milliseconds.
SAMPLE_ROWS = 20_000


@dataclass(frozen=True)
class FleetFigures:
    total: int
    by_state: list[tuple[str, int]]  # by state name
    by_os: list[tuple[str, int]]  # largest first; "" is a device without an OS
    estimated: bool  # True: the total is the planner's estimate and the split a sample's


def figures(tenant_id: int | None) -> FleetFigures:
    """The figures of one tenant's devices, or of every tenant's when ``tenant_id`` is None."""
    devices = Device.objects.all() if tenant_id is None else Device.objects.filter(tenant_id=tenant_id)
    threshold = int(settings.COUNT_ESTIMATE_THRESHOLD)
    # Counted up to one past the threshold (at most that many index entries, 10-20 ms at a
    # million devices), not estimated: the planner may take a small tenant of a big table for a
    # big one, and below the threshold the figures are exact.
    counted = devices.order_by()[: threshold + 1].count()
    if counted <= threshold:
        # Exact: one scan of at most the threshold's rows, for both splits.
        split = Counter({(state, os): n for state, os, n in _grouped(tenant_id, "")})
        return _figures(split, sum(split.values()), estimated=False)
    estimate = max(estimated_rows(devices), counted)
    sampled = Counter({(state, os): n for state, os, n in _grouped(tenant_id, _sample_clause())})
    seen = sum(sampled.values())
    if not seen:  # a sample that missed every row of the tenant: the planner's total alone
        return FleetFigures(estimate, [], [], estimated=True)
    scaled = Counter({key: round(n * estimate / seen) for key, n in sampled.items()})
    return _figures(scaled, estimate, estimated=True)


def _sample_clause() -> str:
    """``TABLESAMPLE SYSTEM (p)`` reading about ``SAMPLE_ROWS`` rows of the whole table."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [TABLE])
        row = cursor.fetchone()
    rows = max(float(row[0]) if row else 0.0, 1.0)
    percent = min(100.0, 100.0 * SAMPLE_ROWS / rows)
    return f"TABLESAMPLE SYSTEM ({percent:.6f}) REPEATABLE (0)"


def _grouped(tenant_id: int | None, sample: str) -> list[tuple[str, str, int]]:
    where = "" if tenant_id is None else "WHERE tenant_id = %(tenant)s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT state, os, count(*) FROM {TABLE} {sample} {where} GROUP BY state, os",
            {"tenant": tenant_id},
        )
        return [(state, os, int(n)) for state, os, n in cursor.fetchall()]


def _figures(split: Counter[tuple[str, str]], total: int, estimated: bool) -> FleetFigures:
    by_state: Counter[str] = Counter()
    by_os: Counter[str] = Counter()
    for (state, os), n in split.items():
        by_state[state] += n
        by_os[os] += n
    return FleetFigures(
        total=total,
        by_state=sorted(by_state.items()),
        by_os=sorted(by_os.items(), key=lambda pair: (-pair[1], pair[0])),
        estimated=estimated,
    )
