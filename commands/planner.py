"""The planner's statistics of the command table, refreshed after a big write.

Right after a fan-out writes a million rows the statistics still describe the table before
it, until autovacuum gets round to it: the planner then takes an operation's million
commands for a handful and picks plans that read every row (issue 17: 2.9 s for a first
page). An ``ANALYZE`` of the table samples a fixed number of rows (30,000 at the default
statistics target), so it costs about the same at a million rows as at ten million.
"""

from __future__ import annotations

import logging

from django.db import connection

from commands.models import CommandStatus

logger = logging.getLogger(__name__)


def refresh_statistics() -> None:
    """``ANALYZE`` the command table; best effort (a failure leaves it to autovacuum)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {CommandStatus._meta.db_table}")
    except Exception:
        logger.warning("ANALYZE of the command table failed; autovacuum will do it", exc_info=True)
