"""The SQL of idempotency keys: claim a key, keep an answer, release a claim, purge.

Each step is one statement, so that two requests with one key decide between them in the
database, not in Python:

- :func:`claim` is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now()``,
  run in autocommit before the view: the first request's row is committed at once, so a
  second one sees it and answers 409 while the first runs. The ``DO UPDATE`` takes over a
  row whose time is up: a kept answer past its TTL, or the claim of a request that died.
- :func:`keep` runs inside the view's own transaction (``config.api.views``), so the answer
  and what the request did commit together or not at all. It updates the row only if this
  request still holds the claim (``claim = %s``): a request that outlived its lease and was
  taken over keeps nothing and is rolled back, so a key's work is never committed twice.
- :func:`release` deletes the claim of a request that did not answer 2xx, so it can be retried.

Times are the database's clock, the same for every process.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from django.db import connection, transaction

from config.encryption import seal, unseal
from config.idempotency.models import IdempotentRequest

TABLE = IdempotentRequest._meta.db_table

#: Expired rows deleted per statement by :func:`purge_expired`. Each batch is its own short
#: transaction, so the purge never holds many row locks or a long snapshot; a batch of 1,000
#: rows of ~1 KB took 5.7 ms (20,000 rows in 0.11 s, load 5.2: bench/idempotency.py,
#: docs/performance.md), so a day of even 100 keyed POSTs a second purges in seconds.
PURGE_BATCH_SIZE = 1000


def fingerprint(method: str, full_path: str, body: bytes) -> str:
    """What makes two requests "the same" for a key: method, path with query string, body."""
    digest = hashlib.sha256()
    digest.update(method.encode("ascii", "replace"))
    digest.update(b"\n")
    digest.update(full_path.encode("utf-8", "surrogateescape"))
    digest.update(b"\n")
    digest.update(hashlib.sha256(body).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class Claimed:
    """This request holds the key: run it, then :func:`keep` or :func:`release`."""

    row_id: int
    token: uuid.UUID


@dataclass(frozen=True)
class Running:
    """Another request with the key and the same fingerprint has not finished (409)."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used for another request (422); ``method`` and ``path`` say which."""

    method: str
    path: str


@dataclass(frozen=True)
class Kept:
    """The kept answer of the request that used the key: replay it."""

    status_code: int
    content_type: str
    body: bytes


Outcome = Claimed | Running | Mismatch | Kept


def claim(
    tenant_id: int, principal: str, key: str, print_: str, method: str, path: str, lease_seconds: int
) -> Outcome:
    """Claim ``principal``'s ``key`` for a request, or say why not. Must run outside any
    transaction, so that the claim is visible to other requests as soon as this returns.

    A key is the principal's own (``Principal.identity``): the same key sent by another API key
    or device of the tenant is another row, so it never replays, blocks or names this one."""
    token = uuid.uuid4()
    shown_path = path.replace("\x00", "\\x00")[:1000]
    # A row may vanish between the two statements (its request failed and released it):
    # then the claim is tried again. Three rounds are more than two racing requests need.
    for _ in range(3):
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {TABLE} AS kept
                    (tenant_id, principal, key, fingerprint, method, path, claim, status_code,
                     content_type, body, created_at, expires_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, '', '', now(),
                        now() + make_interval(secs => %s))
                ON CONFLICT (tenant_id, principal, key) DO UPDATE SET
                    fingerprint = EXCLUDED.fingerprint, method = EXCLUDED.method,
                    path = EXCLUDED.path, claim = EXCLUDED.claim, status_code = NULL,
                    content_type = '', body = '', created_at = EXCLUDED.created_at,
                    expires_at = EXCLUDED.expires_at
                WHERE kept.expires_at <= now()
                RETURNING id
                """,
                [tenant_id, principal, key, print_, method, shown_path, token, lease_seconds],
            )
            row = cursor.fetchone()
            if row is not None:
                return Claimed(row_id=row[0], token=token)
            cursor.execute(
                f"SELECT fingerprint, method, path, status_code, content_type, body FROM {TABLE} "
                "WHERE tenant_id = %s AND principal = %s AND key = %s",
                [tenant_id, principal, key],
            )
            found = cursor.fetchone()
        if found is None:
            continue
        kept_print, kept_method, kept_path, status_code, content_type, body = found
        if kept_print != print_:
            return Mismatch(method=kept_method, path=kept_path)
        if status_code is None:
            return Running()
        return Kept(status_code=status_code, content_type=content_type, body=unseal(body).encode())
    return Running()


def used_for(tenant_id: int, principal: str, key: str) -> Mismatch | None:
    """What a live key of the principal was used for, if it was (a PUT, PATCH or DELETE that
    carries a key one of its own POSTs holds answers 422; another principal's keys are not
    its business, and the 422 would name their method and path)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT method, path FROM {TABLE} "
            "WHERE tenant_id = %s AND principal = %s AND key = %s AND expires_at > now()",
            [tenant_id, principal, key],
        )
        found = cursor.fetchone()
    return None if found is None else Mismatch(method=found[0], path=found[1])


def keep(claimed: Claimed, status_code: int, content_type: str, body: bytes, ttl_hours: int) -> bool:
    """Keep the answer, sealed, for ``ttl_hours``; False if the claim was taken over (the
    caller must then roll its work back). Runs in the request's transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET status_code = %s, content_type = %s, body = %s, "
            "expires_at = clock_timestamp() + make_interval(hours => %s) "
            "WHERE id = %s AND claim = %s",
            [status_code, content_type[:200], seal(body.decode()), ttl_hours, claimed.row_id, claimed.token],
        )
        return cursor.rowcount == 1


def release(claimed: Claimed) -> None:
    """Forget the claim, so the key can be used again (the request did not answer 2xx)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s AND claim = %s", [claimed.row_id, claimed.token])


def purge_expired(batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete every row whose time is up (kept answers past their TTL, dead claims), in
    batches of ``batch_size``, each its own transaction; returns how many were deleted.

    Rows another transaction has locked (a request keeping its answer right now) are
    skipped, never waited for."""
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE id IN ("
                f"SELECT id FROM {TABLE} WHERE expires_at <= now() "
                "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED)",
                [batch_size],
            )
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted
