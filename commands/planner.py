"""The planner's statistics of the command table, refreshed after a big write.

Right after a fan-out writes a million rows the statistics still describe the table before
it, until autovacuum gets round to it: the planner then takes an operation's million
commands for a handful and picks plans that read every row (issue 17: 2.9 s for a first
page). An ``ANALYZE`` of the table samples a fixed number of rows (30,000 at the default
statistics target), so it costs about the same at a million rows as at ten million.

Outside a transaction it is a ``VACUUM (ANALYZE)``: the vacuum marks the new pages
all-visible, so a deep page's keys and a count are read from the index alone (an
index-only scan) instead of visiting a million heap rows: the page at offset 999,980 of a
fresh million-row operation took 314 ms with ANALYZE alone (bench/lists.py,
docs/performance.md has the figure after). It
reads only pages not yet all-visible, about what the fan-out wrote, and the indexes not at
all when nothing was deleted.
"""

from __future__ import annotations

import logging

from django.db import connection

from commands.models import CommandStatus

logger = logging.getLogger(__name__)


def refresh_statistics() -> None:
    """``VACUUM (ANALYZE)`` the command table (``ANALYZE`` inside a transaction, where VACUUM
    cannot run); best effort: a failure leaves it to autovacuum."""
    table = CommandStatus._meta.db_table
    statement = f"ANALYZE {table}" if connection.in_atomic_block else f"VACUUM (ANALYZE) {table}"
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    except Exception:
        logger.warning("ANALYZE of the command table failed; autovacuum will do it", exc_info=True)
