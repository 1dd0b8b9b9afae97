"""The one way to emit an event: an outbox row written in the caller's transaction.

Every floor calls :func:`emit` (or puts :func:`outbox_cte` into its own statement) from the
one writer of its state machine, inside the transaction that makes the change, so a change
that rolls back emits nothing and a change that commits cannot lose its event. Workers send
the rows later (``inventory.webhooks.delivery``).

The event row, and one pending delivery per subscribing endpoint, are written only when an
active endpoint of the tenant subscribes to the type, and that is decided inside the same
statement (``INSERT ... SELECT ... WHERE tenant IN (subscribers)``): a tenant without webhooks
pays no extra round trip, not even on the command report's one statement.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from config.timestamps import format_sql
from inventory.models import Device, PendingDelivery, WebhookEndpoint, WebhookEvent
from inventory.models.webhooks import WILDCARD, WILDCARD_TYPES, EventType

ENDPOINTS = WebhookEndpoint._meta.db_table
OUTBOX = WebhookEvent._meta.db_table
PENDING = PendingDelivery._meta.db_table


def _subscribes(alias: str, event_type: EventType) -> str:
    """SQL: the endpoint ``alias`` is active and takes ``event_type`` (by name, or by ``"*"``
    for the types the wildcard covers)."""
    wildcard = f" OR jsonb_exists({alias}.events, '{WILDCARD}')" if event_type.value in WILDCARD_TYPES else ""
    return f"{alias}.active AND (jsonb_exists({alias}.events, '{event_type.value}'){wildcard})"


def subscribed_sql(tenant_expr: str, event_type: EventType) -> str:
    """An SQL condition: an active endpoint of the tenant ``tenant_expr`` subscribes to
    ``event_type``. Written as ``IN (SELECT ...)`` so that PostgreSQL hashes the few
    subscribing tenants once for a set of a million rows, instead of probing for every row."""
    return f"{tenant_expr} IN (SELECT e.tenant_id FROM {ENDPOINTS} e WHERE {_subscribes('e', event_type)})"


def outbox_cte(name: str, event_type: EventType, select: str) -> str:
    """CTEs for a caller's own statement (``{name}_event AS (...), {name} AS (...)``):
    ``select`` gives rows of ``(tenant_id, data jsonb, created_at)``; the rows of tenants that
    subscribe are written to the outbox, with one pending delivery per subscribing endpoint.
    The caller's change and its events are one statement, one round trip."""
    return (
        f"{name}_event AS (INSERT INTO {OUTBOX} (tenant_id, type, data, created_at) "
        f"SELECT t.tenant_id, '{event_type.value}', t.data, t.created_at FROM ({select}) t "
        f"WHERE {subscribed_sql('t.tenant_id', event_type)} RETURNING id, tenant_id, created_at), "
        f"{name} AS (INSERT INTO {PENDING} (endpoint_id, event_id, attempt, due_at) "
        f"SELECT e.id, ev.id, 1, ev.created_at FROM {name}_event ev "
        f"JOIN {ENDPOINTS} e ON e.tenant_id = ev.tenant_id AND {_subscribes('e', event_type)})"
    )


def emit(tenant_id: int, event_type: EventType, data: dict[str, Any], endpoint_id: Any = None) -> None:
    """Record one event in the caller's transaction (one statement; nothing without a subscriber).

    ``endpoint_id``: an event for that endpoint alone (``webhook.ping``), written whatever
    it subscribes to.
    """
    payload = json.dumps(data, cls=DjangoJSONEncoder)
    with connection.cursor() as cursor:
        if endpoint_id is not None:
            cursor.execute(
                f"WITH ev AS (INSERT INTO {OUTBOX} (tenant_id, type, data, created_at, endpoint_id) "
                "VALUES (%s, %s, %s::jsonb, now(), %s) RETURNING id, created_at) "
                f"INSERT INTO {PENDING} (endpoint_id, event_id, attempt, due_at) "
                "SELECT %s, id, 1, created_at FROM ev",
                [tenant_id, event_type.value, payload, endpoint_id, endpoint_id],
            )
            return
        select = "SELECT %s::bigint AS tenant_id, %s::jsonb AS data, now() AS created_at"
        cursor.execute(f"WITH {outbox_cte('written', event_type, select)} SELECT 1", [tenant_id, payload])


def any_subscriber(tenant_id: int, event_type: EventType) -> bool:
    """Whether anything would be written for this type; for emitters that must read extra rows
    to build the event (a set move's objects), so that tenants without webhooks do not pay."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {subscribed_sql('%s', event_type)}", [tenant_id])
        row = cursor.fetchone()
    return bool(row and row[0])


def device_data_sql(alias: str) -> str:
    """A device as ``/v0/devices/`` shows it (groups as ids), as a jsonb expression of ``alias``."""
    through = Device.groups.through._meta.db_table
    return (
        f"jsonb_build_object('id', {alias}.device_id, 'name', {alias}.name, 'serial', {alias}.serial, "
        f"'model', {alias}.model, 'os', {alias}.os, 'os_version', {alias}.os_version, "
        f"'state', {alias}.state, 'timezone', {alias}.timezone, 'tags', {alias}.tags, "
        f"'groups', COALESCE((SELECT jsonb_agg(g.group_id::text ORDER BY g.group_id) FROM {through} g "
        f"WHERE g.device_id = {alias}.id), '[]'::jsonb), "
        f"'last_seen', {format_sql(f'{alias}.last_seen')}, "
        f"'created_at', {format_sql(f'{alias}.created_at')}, "
        f"'updated_at', {format_sql(f'{alias}.updated_at')})"
    )


def emit_devices(
    tenant_id: int,
    event_type: EventType,
    *,
    pks: list[int] | None = None,
    device_ids: list[str] | None = None,
) -> None:
    """``device.created``/``device.deleted`` for devices of the tenant, by primary keys or public
    ids (a bulk import's 100,000), as one INSERT ... SELECT. A tenant without a subscriber pays
    one cheap query instead of building the rows. For a deletion, call it before the rows go."""
    if not any_subscriber(tenant_id, event_type):
        return
    table = Device._meta.db_table
    column, values = ("id", pks) if pks is not None else ("device_id", device_ids)
    select = (
        f"SELECT d.tenant_id, {device_data_sql('d')} AS data, now() AS created_at FROM {table} d "
        f"WHERE d.tenant_id = %s AND d.{column} = ANY(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {outbox_cte('written', event_type, select)} SELECT 1", [tenant_id, values])
