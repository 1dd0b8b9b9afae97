"""At-least-once delivery from the outbox, endpoint by endpoint, in batches.

A beat task (:func:`kick_due`, every ``WEBHOOK_POLL_SECONDS``) marks the endpoints that have
due pending deliveries and sends one task per endpoint (:func:`deliver`), on the Celery queue
``webhooks`` that workers of their own consume (``CELERY_TASK_ROUTES``), so no delivery ever
takes a worker process from fan-outs, stops and sweeps. That task claims the endpoint with a
lease (``locked_until``, taken with ``FOR UPDATE SKIP LOCKED``; a killed worker's claim simply
expires and the next kick sends everything again), reads up to ``WEBHOOK_BATCH_SIZE`` due rows,
POSTs them on one kept-alive connection, and records the attempts and what is still owed in one
transaction. A worker that dies before that transaction has recorded nothing: the events are
sent again (at least once, never lost).

The lease cannot run out under a live run (issue 23: a 60 s lease under a batch of 500 attempts
let a second worker send 133 of 162 events again). Each attempt has a deadline for the whole of
it (``WEBHOOK_TIMEOUT_SECONDS``, ``inventory.webhooks.deadline``), and before each one the run
makes sure the lease outlasts it by a margin, renewing it if not (a compare-and-swap on the
``locked_until`` it wrote, so a run that lost its lease learns it and stops). The lease is
compared and set on the database's clock, so workers' clocks cannot disagree about it.

Isolation: each endpoint is its own task with its own backoff (``next_attempt_at``), one run at a
time (the lease). A batch stops at the first sign that the endpoint is down (no answer within
the deadline, 5xx, 408, 429) and the endpoint waits for its retry, so a dead or trickling
endpoint costs one deadline per retry step. A run stops taking new attempts after half a lease
and goes to the back of the queue, so a slow but answering endpoint holds one worker process
for that long at a time while the others' tasks run on the other processes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from config import metrics
from config.encryption import Unreadable
from inventory.models import PendingDelivery, WebhookDelivery, WebhookEndpoint, WebhookEvent
from inventory.webhooks import guard, secrets, sender

logger = logging.getLogger(__name__)

ENDPOINTS = WebhookEndpoint._meta.db_table
OUTBOX = WebhookEvent._meta.db_table
PENDING = PendingDelivery._meta.db_table
DELIVERIES = WebhookDelivery._meta.db_table


def retry_delay(attempt: int) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1-based); None: give up."""
    schedule = list(settings.WEBHOOK_RETRY_SCHEDULE)
    return float(schedule[attempt - 1]) if attempt <= len(schedule) else None


# --- the beat's kick ------------------------------------------------------------------------------


def kick_due() -> list[str]:
    """Mark the endpoints that have due deliveries and are neither leased, backing off nor
    kicked lately, and return their ids (the task sends one delivery task for each).

    ``kicked_at`` keeps a slow queue from piling up tasks for one endpoint: an endpoint is
    kicked again only after a lease period, in case that message was lost.
    """
    now = timezone.now()
    lease = dt.timedelta(seconds=int(settings.WEBHOOK_LEASE_SECONDS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {ENDPOINTS} e SET kicked_at = %(now)s
            WHERE e.active
              AND (e.locked_until IS NULL OR e.locked_until < clock_timestamp())
              AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= %(now)s)
              AND (e.kicked_at IS NULL OR e.kicked_at < %(stale)s)
              AND EXISTS (SELECT 1 FROM {PENDING} p WHERE p.endpoint_id = e.id AND p.due_at <= %(now)s)
            RETURNING e.id
            """,
            {"now": now, "stale": now - lease},
        )
        return [str(row[0]) for row in cursor.fetchall()]


# --- one endpoint's run ---------------------------------------------------------------------------


@dataclass
class _Claim:
    id: Any
    tenant_id: int
    url: str
    secret: str
    failures: int
    #: ``locked_until`` as this run wrote it: renewing and releasing compare against it.
    lease: dt.datetime
    #: ``time.monotonic()`` by which the lease ends at the latest (read before it was written).
    lease_ends: float
    target: guard.Target | str = ""
    signer: Any = None


@dataclass
class _Batch:
    """What one batch did, written back in one transaction."""

    attempts: list[WebhookDelivery] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    retries: list[tuple[int, int, dt.datetime]] = field(default_factory=list)  # event, attempt, due
    given_up: list[int] = field(default_factory=list)
    backoff_until: dt.datetime | None = None
    gone: bool = False
    #: The lease could not be renewed: another run holds the endpoint now.
    lost: bool = False


def _lease_seconds() -> float:
    return float(settings.WEBHOOK_LEASE_SECONDS)


def _margin() -> float:
    """Lease an attempt must leave when it ends at its deadline: room for recording the batch
    (which first locks the endpoint row, and so shuts out a claim) and for a slow database."""
    return _lease_seconds() / 4


def _claim(endpoint_id: Any) -> _Claim | None:
    """Lease the endpoint to this run, if it is active, not leased and not backing off."""
    now = timezone.now()
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {ENDPOINTS} e
            SET locked_until = clock_timestamp() + make_interval(secs => %(lease)s), kicked_at = NULL
            WHERE e.id = (
                SELECT id FROM {ENDPOINTS} WHERE id = %(id)s AND active
                  AND (locked_until IS NULL OR locked_until < clock_timestamp())
                  AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
                FOR UPDATE SKIP LOCKED
            )
            RETURNING e.tenant_id, e.url, e.secret_sealed, e.consecutive_failures, e.locked_until
            """,
            {"id": endpoint_id, "now": now, "lease": _lease_seconds()},
        )
        row = cursor.fetchone()
    if row is None:
        return None
    try:
        secret = secrets.unseal_secret(row[2])
    except Unreadable:
        # Its key left ENCRYPTION_KEYS: nothing can be signed until the secret is rotated. Say
        # so on the endpoint (the API and the console show it) instead of failing every run.
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(
            active=False,
            locked_until=None,
            disabled_at=now,
            disabled_reason="the signing secret cannot be read (its key left ENCRYPTION_KEYS): rotate it",
        )
        logger.error("webhook endpoint %s: signing secret unreadable; disabled", endpoint_id)
        return None
    return _Claim(
        id=endpoint_id,
        tenant_id=row[0],
        url=row[1],
        secret=secret,
        failures=int(row[3]),
        lease=row[4],
        lease_ends=started + _lease_seconds(),
    )


def _hold(claim: _Claim) -> bool:
    """Make sure the lease outlasts one more attempt (its whole deadline) by the margin,
    renewing it if it might not; False when the lease is no longer this run's.

    With ``WEBHOOK_LEASE_SECONDS`` at least twice ``WEBHOOK_TIMEOUT_SECONDS`` (the settings
    hold it) a fresh lease always leaves that room, so no attempt of a live run can outlive
    its lease and no second run can claim the endpoint while the first is still sending."""
    needed = float(settings.WEBHOOK_TIMEOUT_SECONDS) + _margin()
    if claim.lease_ends - time.monotonic() >= needed:
        return True
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ENDPOINTS} SET locked_until = clock_timestamp() + make_interval(secs => %s) "
            "WHERE id = %s AND locked_until = %s RETURNING locked_until",
            [_lease_seconds(), claim.id, claim.lease],
        )
        row = cursor.fetchone()
    if row is None:
        logger.warning("webhook endpoint %s: lease lost mid-run; stopping this run", claim.id)
        return False
    claim.lease, claim.lease_ends = row[0], started + _lease_seconds()
    return True


def _work(claim: _Claim, limit: int) -> list[tuple[WebhookEvent, int]]:
    """The endpoint's due deliveries, oldest first, each with the attempt number it carries.
    A pending row whose event was purged meanwhile is dropped."""
    due = list(
        PendingDelivery.objects.filter(endpoint_id=claim.id, due_at__lte=timezone.now())
        .order_by("due_at", "id")
        .values_list("event_id", "attempt")[:limit]
    )
    by_id = WebhookEvent.objects.in_bulk([event_id for event_id, _ in due])
    missing = [event_id for event_id, _ in due if event_id not in by_id]
    if missing:
        PendingDelivery.objects.filter(endpoint_id=claim.id, event_id__in=missing).delete()
    return [(by_id[event_id], attempt) for event_id, attempt in due if event_id in by_id]


def _body(event: WebhookEvent) -> str:
    return json.dumps(event.body(), separators=(",", ":"), sort_keys=False)


def _attempt(claim: _Claim, batch: _Batch, event: WebhookEvent, attempt: int) -> bool:
    """Send one event, note the outcome in ``batch``; False when the batch must stop."""
    outcome = sender.send(claim.target, claim.signer, event.webhook_id, _body(event))
    metrics.WEBHOOK_ATTEMPTS.labels(outcome.reason).inc()
    now = timezone.now()
    record = WebhookDelivery(
        endpoint_id=claim.id,
        event_id=event.pk,
        event_type=event.type,
        attempt=attempt,
        status_code=outcome.status_code,
        error=outcome.error[:500],
        duration_ms=outcome.duration_ms,
        created_at=now,
    )
    batch.attempts.append(record)
    if outcome.delivered:
        batch.delivered.append(event.pk)
        return True
    if outcome.status_code == 410:
        batch.gone = True
        batch.given_up.append(event.pk)
        return False
    delay = retry_delay(attempt)
    if delay is None:
        batch.given_up.append(event.pk)
        record.error = (record.error or f"HTTP {outcome.status_code}") + "; retries exhausted"
    else:
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, 86_400.0))
        due = now + dt.timedelta(seconds=delay)
        record.next_retry_at = due
        batch.retries.append((event.pk, attempt + 1, due))
        if outcome.endpoint_down:
            batch.backoff_until = due
            return False
    return True


def _save(claim: _Claim, batch: _Batch) -> None:
    """The batch's outcome in one transaction: attempts, what is still owed, backoff, lease.

    It first locks the endpoint row, so no claim (``SKIP LOCKED``) can take the endpoint while
    the outcome is being written, and releases the lease only if it is still this run's."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT locked_until = %s FROM {ENDPOINTS} WHERE id = %s FOR UPDATE",
                [claim.lease, claim.id],
            )
            row = cursor.fetchone()
        ours = bool(row and row[0])
        WebhookDelivery.objects.bulk_create(batch.attempts)
        done = batch.delivered + batch.given_up
        if done:
            PendingDelivery.objects.filter(endpoint_id=claim.id, event_id__in=done).delete()
        if batch.retries:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {PENDING} p SET attempt = r.attempt, due_at = r.due_at "
                    "FROM unnest(%s::bigint[], %s::int[], %s::timestamptz[]) AS r(event_id, attempt, due_at) "
                    "WHERE p.endpoint_id = %s AND p.event_id = r.event_id",
                    [
                        [event_id for event_id, _, _ in batch.retries],
                        [attempt for _, attempt, _ in batch.retries],
                        [due for _, _, due in batch.retries],
                        claim.id,
                    ],
                )
        fields: dict[str, Any] = {"locked_until": None} if ours else {}
        if batch.backoff_until is not None:
            fields["next_attempt_at"] = batch.backoff_until
            fields["consecutive_failures"] = claim.failures + 1
        elif batch.delivered:
            fields["next_attempt_at"] = None
            fields["consecutive_failures"] = 0
        if batch.gone:
            # Gone for good: nothing more is owed to it (the attempts stay on record).
            PendingDelivery.objects.filter(endpoint_id=claim.id).delete()
            fields.update(active=False, disabled_at=now, disabled_reason="the endpoint answered 410 Gone")
            logger.warning("webhook endpoint %s answered 410 Gone: disabled", claim.id)
        WebhookEndpoint.objects.filter(pk=claim.id).update(**fields)
    if batch.given_up:
        metrics.WEBHOOK_GIVEN_UP.inc(len(batch.given_up))


def _run_batch(claim: _Claim, limit: int, budget: float) -> tuple[_Batch, bool]:
    """One batch, stopped early when the run's time (``budget``, monotonic) is spent or its
    lease is lost; returns it and whether more work may be waiting."""
    work = _work(claim, limit)
    batch = _Batch()
    if work:
        claim.target = sender.resolve(claim.url)
        claim.signer = sender.signer(claim.secret)
    for done, (event, attempt) in enumerate(work):
        if done and time.monotonic() >= budget:
            return batch, True
        if not _hold(claim):
            batch.lost = True
            return batch, False
        if not _attempt(claim, batch, event, attempt):
            return batch, False
    return batch, len(work) >= limit


def deliver(endpoint_id: Any) -> int:
    """Deliver what the endpoint is owed, batch after batch, taking new attempts for at most
    half a lease; then the worker process is free for other endpoints (and the beat kicks this
    one again if more is owed).

    Returns how many attempts were made; 0 when another worker holds the endpoint or it is
    backing off.
    """
    claim = _claim(endpoint_id)
    if claim is None:
        return 0
    limit = int(settings.WEBHOOK_BATCH_SIZE)
    budget = time.monotonic() + _lease_seconds() / 2
    made = 0
    while claim is not None:
        batch, more = _run_batch(claim, limit, budget)
        made += len(batch.attempts)
        _save(claim, batch)
        claim = _claim(endpoint_id) if more and time.monotonic() < budget else None
    return made


# --- retention ------------------------------------------------------------------------------------


def purge(now: dt.datetime | None = None) -> tuple[int, int]:
    """Delete attempts and delivered events older than ``WEBHOOK_EVENT_RETENTION_DAYS``, in
    batches of ``WEBHOOK_PURGE_BATCH_SIZE`` (short transactions, short locks). An event still
    owed to an endpoint (a pending delivery) is kept."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=int(settings.WEBHOOK_EVENT_RETENTION_DAYS))
    size = int(settings.WEBHOOK_PURGE_BATCH_SIZE)
    attempts = events = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"DELETE FROM {DELIVERIES} WHERE id IN (SELECT id FROM {DELIVERIES} WHERE created_at < %s "
                "ORDER BY created_at LIMIT %s)",
                [cutoff, size],
            )
            attempts += cursor.rowcount
            if cursor.rowcount < size:
                break
        while True:
            cursor.execute(
                f"""
                DELETE FROM {OUTBOX} WHERE id IN (
                    SELECT ev.id FROM {OUTBOX} ev WHERE ev.created_at < %s
                      AND NOT EXISTS (SELECT 1 FROM {PENDING} p WHERE p.event_id = ev.id)
                    ORDER BY ev.created_at LIMIT %s
                )
                """,
                [cutoff, size],
            )
            events += cursor.rowcount
            if cursor.rowcount < size:
                break
    return attempts, events
