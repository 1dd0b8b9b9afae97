"""Which devices changed since when: a watermark over device changes, for the floors above.

A floor above (``operations``: continuous operations) must learn within seconds that devices
came to match a query (created, imported, a field changed, put into a group), exactly once and
whatever crashes happen, without a query per device. Two pieces, both here because the
tables are this floor's:

- **Data.** Each device row and each group membership row carries ``change_xid``: the id of the
  transaction that last changed what a device query can select (a column default on insert, a
  trigger on update of the selectable columns, migration 0011). A reader keeps a **mark**, the
  snapshot it took before its last read (:func:`horizon`), and asks for the devices whose change
  that snapshot did not see as ended (:func:`changed_keys`): every change below the snapshot's
  ``xmin`` was seen; from ``xmin`` on, each row's transaction is checked against it. A sequence
  number or ``updated_at`` would skip the writes of a transaction that took its number before
  the watermark moved and committed after; a snapshot sees such a transaction as running, so
  the next read takes it. A change seen twice costs a no-op (the writer above writes with
  ``ON CONFLICT DO NOTHING``); none is missed.
- **A nudge.** The services call :func:`changed` in their transaction; after commit each
  registered listener (``operations`` registers one in its ``AppConfig.ready``, as
  ``commands.followers`` does) is told the tenant, so it can look now instead of at its next
  sweep. A listener that fails (a broker down) never fails the write: the sweep catches up.

``last_seen`` is not a change here: it moves on every poll of every device (flushed every few
seconds), and a query over it would re-read the whole fleet each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from inventory.models import Device

logger = logging.getLogger(__name__)

#: The column, on the device table and on the group membership table.
COLUMN = "change_xid"
Listener = Callable[[int], None]
listeners: list[Listener] = []


def register(listener: Listener) -> None:
    """Call ``listener(tenant_id)`` after every commit that changed devices of the tenant."""
    if listener not in listeners:
        listeners.append(listener)


def changed(tenant_id: int) -> None:
    """Devices of the tenant changed in this transaction: tell the listeners after commit."""
    if listeners:
        transaction.on_commit(lambda: _tell(tenant_id))


def _tell(tenant_id: int) -> None:
    for listener in list(listeners):
        try:
            listener(tenant_id)
        except Exception:  # the change is committed; the listener's sweep will see it
            logger.warning(
                "device change listener %r failed for tenant %s", listener, tenant_id, exc_info=True
            )


def horizon() -> str:
    """The mark a reader stores once it has read the changes after its previous one: this
    moment's snapshot (``pg_current_snapshot()``, as text). Every transaction it sees as ended
    has its changes visible to what the reader reads from now on; those it sees running (or not
    begun) are read next time, by :func:`changed_keys`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        return str(cursor.fetchone()[0])


def _changed_after(mark: str) -> tuple[str, list[Any]]:
    """The condition on ``change_xid`` of a change the reader holding ``mark`` has not seen: one
    by a transaction its snapshot did not see as ended. The range below the snapshot's ``xmin``
    (all ended, all seen) is left out by the index; from ``xmin`` on, each row's transaction is
    checked against the snapshot, so a long transaction still running elsewhere does not make
    every later look read again all that was seen after it began."""
    if not mark:
        return f"{COLUMN} >= 0", []
    xmin = int(mark.split(":", 1)[0])
    return f"{COLUMN} >= %s AND NOT pg_visible_in_snapshot({COLUMN}::text::xid8, %s::pg_snapshot)", [
        xmin,
        mark,
    ]


def changed_keys(
    mark: str, limit: int | None = None, low: int | None = None, high: int | None = None
) -> list[int] | None:
    """The keys of the devices changed since ``mark`` (:func:`horizon`; ``""``: ever): the row,
    or a membership added; in order; with ``low``/``high`` only those in ``[low, high)``;
    ``None`` if there are more than ``limit``. Two index range scans (``inventory_device_change``,
    ``inventory_device_groups_change``), whatever the fleet's size."""
    table = Device._meta.db_table
    through = Device.groups.through._meta.db_table
    after, params = _changed_after(mark)
    device_range, member_range, bounds = "", "", []
    if low is not None and high is not None:
        device_range, member_range = " AND id >= %s AND id < %s", " AND device_id >= %s AND device_id < %s"
        bounds = [low, high]
    cut = "" if limit is None else f" LIMIT {int(limit) + 1}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE {after}{device_range} "
            f"UNION SELECT device_id FROM {through} WHERE {after}{member_range}{cut}",
            [*params, *bounds, *params, *bounds],
        )
        keys = sorted(int(key) for (key,) in cursor.fetchall())
    return None if limit is not None and len(keys) > limit else keys


def changed_span(mark: str) -> tuple[int, int] | None:
    """The lowest and highest key of the devices changed since ``mark``; ``None`` if none did.
    A reader goes through a large change in key chunks between them."""
    table = Device._meta.db_table
    through = Device.groups.through._meta.db_table
    after, params = _changed_after(mark)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(k), max(k) FROM (SELECT id AS k FROM {table} WHERE {after} "
            f"UNION ALL SELECT device_id FROM {through} WHERE {after}) AS changed",
            [*params, *params],
        )
        low, high = cursor.fetchone()
    return None if low is None else (int(low), int(high))


def with_keys(devices: QuerySet[Device], keys: list[int]) -> QuerySet[Device]:
    """``devices`` narrowed to ``keys``, given as one array (``id = ANY(%s::bigint[])``).

    Not ``pk__in=keys`` (a parameter per key: 50,000 of them for a chunk), nor a subquery over
    the change: just after a bulk import the statistics may still count the device table empty,
    and the planner then joined a chunk's 50,000 devices to the subquery by nested loop,
    rescanning it for each (minutes). An array's length is known to the planner: each device
    is looked up by key, or the chunk read once. The cast matters: psycopg sends a list of ints
    as the smallest array type that holds them, and ``bigint = ANY(int4[])`` is compared element
    by element for every row (7 s for 10,000 keys against 50,000 rows); ``bigint[]`` is hashed
    once (0.11 s)."""
    return devices.extra(where=[f"{Device._meta.db_table}.id = ANY(%s::bigint[])"], params=[keys])
