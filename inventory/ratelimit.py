"""Requests per minute per token: a fixed-window counter in the cache (INCR with an expiry).

Every API key and every device token has its own counter, keyed by the token's lookup
prefix, in a window of one minute: ``RATE_LIMIT_KEY_PER_MINUTE`` and
``RATE_LIMIT_DEVICE_PER_MINUTE`` (0 turns a limit off). Past it the caller gets **429**
with ``Retry-After`` (seconds until the window ends).

The count is taken in the same Redis round trip as the cached token lookup
(:func:`lookup_and_count`), so the device inbox's 304 answer costs no extra round trip
(docs/performance.md); how, is the cache backend's (``config.cache``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache

from inventory import tokens

WINDOW_SECONDS = 60


class RateLimited(Exception):
    """The caller spent its requests of this window; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded; retry in {retry_after} s.")
        self.retry_after = retry_after


def limit_for(kind: str) -> int:
    if kind == tokens.DEVICE_TOKEN_KIND:
        return int(settings.RATE_LIMIT_DEVICE_PER_MINUTE)
    return int(settings.RATE_LIMIT_KEY_PER_MINUTE)


def _window(now: float) -> tuple[int, int]:
    """(this window's number, seconds until it ends, at least 1)."""
    number = int(now // WINDOW_SECONDS)
    return number, max(1, (number + 1) * WINDOW_SECONDS - int(now))


def counter_key(prefix: str, window: int) -> str:
    return f"rl:{prefix}:{window}"


def lookup_and_count(
    cache_key: str, kind: str, prefix: str, also: Sequence[str] = ()
) -> tuple[Any, int | None, list[Any]]:
    """The cached value at ``cache_key`` (None if absent), the token's request count in
    this window, counting this request (None when its kind has no limit), and the cached
    values of the keys ``also`` (the inbox reads its generations here).

    With Redis all are one pipeline of two commands, MGET and INCR (plus, once per window,
    an EXPIRE after the INCR that made the counter): on the inbox's 304 path each command
    costs about as much as the round trip.
    """
    limit = limit_for(kind)
    counter = counter_key(prefix, _window(time.time())[0]) if limit else None
    values, count = cache.read_and_count([cache_key, *also], counter, WINDOW_SECONDS + 1)  # type: ignore[attr-defined]
    return values[0], count, values[1:]


def check(kind: str, count: int | None) -> None:
    """Raise :class:`RateLimited` when ``count`` is past the kind's limit."""
    if count is None:
        return
    if count > limit_for(kind):
        raise RateLimited(_window(time.time())[1])
