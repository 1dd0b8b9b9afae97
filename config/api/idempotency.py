"""Idempotency keys on the API's POSTs (CONTRACT §11, docs/idempotency.md), for the base view.

:func:`begin` runs in ``ApiViewMixin.initial``, after authentication and the role check, so
a refused request never touches a key. For a POST with an ``Idempotency-Key`` it claims the
key (``config.idempotency.store.claim``, committed at once) and opens a transaction around the
view; :meth:`Guard.finish` keeps a 2xx answer in that same transaction and commits, or rolls
back and releases the key for anything else. Either the request's work and its kept answer
are both committed, or neither is: a key's work is never done twice, even when the process
dies between the two. A key seen before answers from the store instead of the view:
the kept answer (``Idempotent-Replayed: true``), 409 while its first request runs, 422 when
it was used for another request.

It is generic on purpose: every POST of every view derived from the base view honours the
header, endpoints added later included, without a line of their own.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpResponse
from rest_framework import exceptions, status
from rest_framework.request import Request

from config.api.principal import Principal
from config.encryption import Unreadable
from config.idempotency import store
from config.metrics import IDEMPOTENCY_OUTCOMES

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: ``HEADER`` as Django's ``request.META`` names it.
META_KEY = "HTTP_IDEMPOTENCY_KEY"
#: 1 to 255 printable ASCII characters, space included (CONTRACT §11).
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")
#: Writes that are idempotent by their nature: a key is only checked against what it was used for.
_CHECKED_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


class KeyInUse(exceptions.APIException):
    """409: the first request with this key is still running (or lost its claim)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_use"

    def __init__(self, reason: str) -> None:
        super().__init__({HEADER: [reason]})
        self.wait = 1  # Retry-After, set by config.api.exceptions


class KeyMismatch(exceptions.APIException):
    """422: the key was used for another request (method, path or body)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"

    def __init__(self, reason: str) -> None:
        super().__init__({HEADER: [reason]})


class ReplayedResponse(HttpResponse):
    """The kept answer, sent again byte for byte. ``data`` is its JSON, for the response
    observers (the audit log reads the created object's id from it)."""

    data: Any = None


class Replay(Exception):
    """Raised by :func:`begin` to answer from the store; the base view returns ``response``."""

    def __init__(self, response: ReplayedResponse) -> None:
        super().__init__("replayed")
        self.response = response


def header_value(request: Request) -> str | None:
    """The request's key, checked; None without the header. 400 naming it when malformed."""
    raw = request.META.get(META_KEY)
    if raw is None:
        return None
    if not isinstance(raw, str) or not _KEY_RE.fullmatch(raw):
        raise exceptions.ValidationError(
            {HEADER: ["must be 1 to 255 printable ASCII characters (space to ~)"]}
        )
    return raw


class Guard:
    """One POST holding a key: the transaction around its view, and the claim to settle."""

    def __init__(self, claimed: store.Claimed) -> None:
        self.claimed = claimed
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self._open = True

    def finish(self, response: Any) -> bool:
        """Keep a 2xx answer and commit with the view's work; roll back and release the key
        otherwise. True when ``response`` may go out; False when a 2xx could not be kept
        because another request took the claim over (its lease had passed): the work was
        rolled back and the base view answers 409 instead."""
        kept = False
        try:
            if 200 <= response.status_code < 300:
                if callable(getattr(response, "render", None)):
                    response.render()  # the exact bytes the client gets, kept as they are
                kept = store.keep(
                    self.claimed,
                    response.status_code,
                    response.get("Content-Type", ""),
                    bytes(response.content),
                    settings.IDEMPOTENCY_TTL_HOURS,
                )
                if not kept:
                    transaction.set_rollback(True)
            else:
                transaction.set_rollback(True)
        except BaseException as error:
            self.abort(error)
            raise
        self._open = False
        try:
            self._atomic.__exit__(None, None, None)  # the commit (or the rollback asked for above)
        except BaseException:
            self._release()  # the commit failed: nothing was done, the key is free again
            raise
        if kept:
            return True
        self._release()
        return not 200 <= response.status_code < 300

    def abort(self, error: BaseException | None = None) -> None:
        """Roll back and release the key: the view raised past the exception handler."""
        if not self._open:
            return
        self._open = False
        transaction.set_rollback(True)
        self._atomic.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
        self._release()

    def _release(self) -> None:
        # If the database went away (the answer is a 503), the claim ends with its lease.
        with contextlib.suppress(DatabaseError):
            store.release(self.claimed)


def begin(request: Request, principal: Principal) -> Guard | None:
    """For a POST with a key: claim it (a :class:`Guard`), or raise :class:`Replay`,
    :class:`KeyInUse` or :class:`KeyMismatch`. For a PUT, PATCH or DELETE with a key: 422 if
    a POST of the same principal holds that key, else nothing. None when there is nothing to do.

    Keys are the principal's (CONTRACT §11): another API key or device of the tenant sending
    the same key makes a request of its own and never sees this one's answer."""
    method = request.method or ""
    if method != "POST" and method not in _CHECKED_METHODS:
        return None
    key = header_value(request)
    if key is None:
        return None
    if method != "POST":
        used = store.used_for(principal.tenant_id, principal.identity, key)
        if used is not None:
            raise KeyMismatch(_mismatch(used))
        return None
    full_path = request.get_full_path()
    try:
        outcome = store.claim(
            principal.tenant_id,
            principal.identity,
            key,
            store.fingerprint(method, full_path, request._request.body),
            method,
            full_path,
            settings.IDEMPOTENCY_LEASE_SECONDS,
        )
    except Unreadable:
        raise KeyMismatch(
            "the answer kept for this key can no longer be read (its encryption key was dropped); "
            "use a new key"
        ) from None
    if isinstance(outcome, store.Claimed):
        IDEMPOTENCY_OUTCOMES.labels("claimed").inc()
        return Guard(outcome)
    if isinstance(outcome, store.Mismatch):
        IDEMPOTENCY_OUTCOMES.labels("mismatch").inc()
        raise KeyMismatch(_mismatch(outcome))
    if isinstance(outcome, store.Running):
        IDEMPOTENCY_OUTCOMES.labels("running").inc()
        raise KeyInUse("a request with this key is still running; retry after it has answered")
    IDEMPOTENCY_OUTCOMES.labels("replayed").inc()
    raise Replay(_replayed(outcome))


def _mismatch(used: store.Mismatch) -> str:
    return (
        f"this key was used for another request ({used.method} {used.path[:200]}, with another "
        "method, path or body); use a new key for a new request"
    )


def _replayed(kept: store.Kept) -> ReplayedResponse:
    response = ReplayedResponse(kept.body, status=kept.status_code, content_type=kept.content_type or None)
    response[REPLAYED_HEADER] = "true"
    if kept.content_type.startswith("application/json"):
        try:
            response.data = json.loads(kept.body)
        except ValueError:
            response.data = None
    return response


def claim_lost() -> KeyInUse:
    return KeyInUse(
        "this request outlived its claim on the key (IDEMPOTENCY_LEASE_SECONDS) and another request "
        "took it over; nothing was done"
    )
