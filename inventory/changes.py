"""Which devices changed since when: a watermark over device changes, for the floors above.

A floor above (``operations``: continuous operations) must learn within seconds that devices
came to match a query (created, imported, a field changed, put into a group), exactly once and
whatever crashes happen, without a query per device. Two pieces, both here because the
tables are this floor's:

- **Data.** Each device row and each group membership row carries ``change_xid``: the id of the
  transaction that last changed what a device query can select (a column default on insert, a
  trigger on update of the selectable columns, migration 0011). A reader keeps a watermark
  ``W`` and asks for the devices changed at or after it (:func:`changed_since`); before reading it
  takes :func:`horizon`, the oldest transaction still running: every transaction below it has
  ended, so its changes are visible to the reader, and the next watermark is that horizon.
  Transactions that commit late (a sequence number or ``updated_at`` would skip them: they
  were taken before the watermark moved but committed after) are never below the horizon
  while they run. A change seen twice costs a no-op (the writer above writes with
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

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

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


def horizon() -> int:
    """The oldest transaction id still running (or the next one, if none runs): every change
    made by a transaction below it is committed or gone, so is visible to statements run
    from now on. The watermark a reader stores once it has read the changes at or after its
    previous one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(cursor.fetchone()[0])


def changed_keys(watermark: int, limit: int) -> list[int] | None:
    """The keys of the devices changed at or after ``watermark`` (the row, or a membership
    added), if there are at most ``limit`` of them; ``None`` for more (then read them in key
    chunks with :func:`changed_since`). A reader's common case is a handful of devices: given as
    a list, the planner looks each up by key, whatever its statistics say of the fleet (just after a
    bulk import they may still count the table empty, and the join over a subquery scanned the
    whole tenant: 220 ms instead of a few)."""
    table = Device._meta.db_table
    through = Device.groups.through._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE {COLUMN} >= %s "
            f"UNION SELECT device_id FROM {through} WHERE {COLUMN} >= %s LIMIT %s",
            [watermark, watermark, limit + 1],
        )
        keys = sorted(int(key) for (key,) in cursor.fetchall())
    return keys if len(keys) <= limit else None


def changed_since(
    devices: QuerySet[Device], watermark: int, low: int | None = None, high: int | None = None
) -> QuerySet[Device]:
    """``devices`` narrowed to those changed at or after ``watermark``: the row itself, or a
    group membership added; with ``low``/``high``, to device keys in ``[low, high)``, inside the
    change scan too, so a reader that goes through a large change in key chunks reads each
    change once. Two index range scans (``inventory_device_change``,
    ``inventory_device_groups_change``), whatever the fleet's size."""
    table = Device._meta.db_table
    through = Device.groups.through._meta.db_table
    device_range, member_range, params = "", "", []
    if low is not None and high is not None:
        device_range, member_range = " AND id >= %s AND id < %s", " AND device_id >= %s AND device_id < %s"
        params = [low, high]
        devices = devices.filter(pk__gte=low, pk__lt=high)
    changed_pks = RawSQL(
        f"SELECT id FROM {table} WHERE {COLUMN} >= %s{device_range} "
        f"UNION SELECT device_id FROM {through} WHERE {COLUMN} >= %s{member_range}",
        [watermark, *params, watermark, *params],
    )
    return devices.filter(pk__in=changed_pks)
