"""Requests per minute per token, and failed token checks per minute per client address:
fixed-window counters in the cache (INCR with an expiry).

Every API key and every device token has its own counter in a window of one minute:
``RATE_LIMIT_KEY_PER_MINUTE`` and ``RATE_LIMIT_DEVICE_PER_MINUTE`` (0 turns a limit off). Past
it the caller gets **429** with ``Retry-After`` (seconds until the window ends). The counter is
keyed by a digest of the whole token as presented, not by its lookup prefix alone: the prefix
is no secret (it shows in logs and in the console), and requests with a real prefix and a
wrong secret must not spend the real token's requests (issue 12, item 6). Such a request
counts on a counter of its own that nothing reads, and hears 401.

The count is taken in the same Redis round trip as the cached token lookup
(:func:`lookup_and_count`), so the device inbox's 304 answer costs no extra round trip
(docs/performance.md); how, is the cache backend's (``config.cache``).

Failures (a token of the right shape that is unknown, revoked, expired or has a wrong secret)
are counted per client address (``config.client``), ``RATE_LIMIT_AUTH_FAILURES_PER_MINUTE``:
past it, that address's failures hear 429 instead of 401 (:func:`count_failure`, one more round
trip, on the failure path only). A verified token is never refused for its address's failures,
so a device behind the same NAT as a guesser keeps working.

While the cache cannot be reached nothing can be counted, and nothing is refused for it
(``inventory.authentication``: the limits fail open, counted and logged; issue 23).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache

from config.cache import degraded
from config.errors import CacheUnavailable
from inventory import tokens

WINDOW_SECONDS = 60


class RateLimited(Exception):
    """The caller spent its requests of this window; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, what: str = "Rate limit exceeded") -> None:
        super().__init__(f"{what}; retry in {retry_after} s.")
        self.retry_after = retry_after


def limit_for(kind: str) -> int:
    """Requests per minute of a token of ``kind``; 0: no limit."""
    if kind == tokens.DEVICE_TOKEN_KIND:
        return int(settings.RATE_LIMIT_DEVICE_PER_MINUTE)
    return int(settings.RATE_LIMIT_KEY_PER_MINUTE)


def _window(now: float) -> tuple[int, int]:
    """(this window's number, seconds until it ends, at least 1)."""
    number = int(now // WINDOW_SECONDS)
    return number, max(1, (number + 1) * WINDOW_SECONDS - int(now))


def seconds_left_in_window() -> int:
    """Seconds until this window ends (at least 1): what a 429's ``Retry-After`` says."""
    return _window(time.time())[1]


def counter_key(prefix: str, digest: str, window: int) -> str:
    """The counter of the token whose SHA-256 is ``digest``: half of it tells tokens apart
    beyond any guessing, and the prefix keeps the key readable."""
    return f"rl:{prefix}:{digest[:32]}:{window}"


def failure_key(address: str, window: int) -> str:
    return f"rlf:{address}:{window}"


def lookup_and_count(
    cache_key: str,
    kind: str,
    prefix: str,
    digest: str,
    by: Sequence[str] = (),
    derived: Sequence[str] = (),
) -> tuple[Any, int | None, tuple[list[Any], list[Any]] | None]:
    """The cached value at ``cache_key`` (None if absent), the presented token's request count
    in this window, counting this request (None when its kind has no limit), and the values of
    the keys ``by`` with the cached values of the keys named by the templates ``derived`` from
    them (None if one of ``by`` is absent; the inbox reads its generations here). ``digest`` is the presented
    token's SHA-256 (``tokens.hash_token``).

    With Redis all are one Lua script (``config.cache``): on the inbox's 304 path each round
    trip costs about as much as the work.
    """
    limit = limit_for(kind)
    counter = counter_key(prefix, digest, _window(time.time())[0]) if limit else None
    values, count, found = cache.read_count_and_derive(  # type: ignore[attr-defined]
        [cache_key], counter, WINDOW_SECONDS + 1, by, derived
    )
    return values[0], count, found


def check(kind: str, count: int | None) -> None:
    """Raise :class:`RateLimited` when ``count`` is past the kind's limit."""
    if count is None:
        return
    if count > limit_for(kind):
        raise RateLimited(seconds_left_in_window())


def count_failure(address: str | None) -> None:
    """Count a failed token check of ``address``; raise :class:`RateLimited` past
    ``RATE_LIMIT_AUTH_FAILURES_PER_MINUTE`` (0: no limit; no address: not counted)."""
    limit = int(settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE)
    if not limit or not address:
        return
    number, retry_after = _window(time.time())
    try:
        failures = cache.count(failure_key(address, number), WINDOW_SECONDS + 1)  # type: ignore[attr-defined]
    except CacheUnavailable:
        degraded("failure_count", "failed token checks are not counted per address (they answer 401)")
        return
    if failures > limit:
        raise RateLimited(retry_after, "Too many failed token checks from this address")
