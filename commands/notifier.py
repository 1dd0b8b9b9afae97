"""The push outbox's publisher, database side: take the devices that must hear a ``notify``,
make each one's message, and forget them once the broker has them (contract section 14).

The bridge (``commands.bridge``) runs :func:`publish_round` in a loop with a callable that
publishes the messages at QoS 1 and returns once the broker acknowledged every one (or raises).
The outbox rows are taken ``FOR UPDATE SKIP LOCKED`` and deleted in that same transaction after
the acknowledgements, so several bridges share the outbox, and a publisher that dies before its
commit leaves the rows for the next round: at least once, never lost (``commands.push``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from commands import inbox_cache, push
from commands.services import waiting
from config import timestamps
from inventory.device_topics import notify as notify_topic
from inventory.models import Device, DeviceState, Tenant

#: Outbox rows per round: one transaction holds them while their PUBACKs come back (a local
#: broker acknowledges 2,000 QoS-1 messages in tens of milliseconds; the bridge's in-flight
#: window, ``config.mosquitto.MAX_INFLIGHT_MESSAGES``, holds a round). Fewer, larger rounds:
#: a fan-out to 10,000 devices is notified in 5 rounds, not 20.
ROUND_SIZE = 2000


class Notify(NamedTuple):
    """One message of the publisher: where it goes and what it says."""

    device_pk: int
    topic: str
    payload: dict[str, Any]


def claim(limit: int) -> tuple[list[int], list[Notify]]:
    """Take up to ``limit`` outbox rows (inside the caller's transaction) and make their
    messages: the keys of every row taken, and a notify for each device that has commands
    waiting. A row of a device deleted, deactivated, or with nothing waiting any more (it polled
    over HTTP meanwhile) is taken without a message: there is nothing to tell it."""
    with connection.cursor() as cursor:
        cursor.execute(
            # By key (the primary key's index): no sort of a million rows after a big fan-out.
            f"SELECT n.device_pk FROM {push.TABLE} n ORDER BY n.device_pk LIMIT %s FOR UPDATE SKIP LOCKED",
            [limit],
        )
        taken = [int(row[0]) for row in cursor.fetchall()]
        if not taken:
            return [], []
        cursor.execute(
            f"SELECT d.id, d.device_id, t.slug FROM {Device._meta.db_table} d "
            f"JOIN {Tenant._meta.db_table} t ON t.id = d.tenant_id "
            "WHERE d.id = ANY(%s) AND d.state = %s",
            [taken, DeviceState.ACTIVE.value],
        )
        devices = {int(pk): (device_id, slug) for pk, device_id, slug in cursor.fetchall()}
    now = timestamps.format(timezone.now())
    messages = []
    for device_pk, (count, first) in sorted(waiting(sorted(devices), settings.INBOX_BATCH).items()):
        if count <= 0 or device_pk not in devices:
            continue
        device_id, slug = devices[device_pk]
        # The ETag a poll of the HTTP inbox would answer now (the commands it would hand out).
        payload = {"pending": count, "etag": inbox_cache.content_etag(first), "timestamp": now}
        messages.append(Notify(device_pk, notify_topic(slug, device_id), payload))
    return taken, messages


def publish_round(publish: Callable[[list[Notify]], None], limit: int = ROUND_SIZE) -> tuple[int, int]:
    """One round: claim, ``publish`` (returns once the broker acknowledged every message, or
    raises: then nothing is deleted and the next round sends them again), delete. Returns how
    many outbox rows were taken and how many messages sent."""
    with transaction.atomic():
        taken, messages = claim(limit)
        if messages:
            publish(messages)
        if taken:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {push.TABLE} WHERE device_pk = ANY(%s)", [taken])
    return len(taken), len(messages)


def backlog() -> int:
    """How many devices wait for a notify (the metrics)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {push.TABLE}")
        return int(cursor.fetchone()[0])
