"""Requests per minute per token: a fixed-window counter in the cache (INCR with an expiry).

Every API key and every device token has its own counter, keyed by the token's lookup
prefix, in a window of one minute: ``RATE_LIMIT_KEY_PER_MINUTE`` and
``RATE_LIMIT_DEVICE_PER_MINUTE`` (0 turns a limit off). Past it the caller gets **429**
with ``Retry-After`` (seconds until the window ends).

The count is taken in the same Redis round trip as the cached token lookup
(:func:`lookup_and_count`), so the device inbox's 304 answer costs no extra round trip
(docs/performance.md). Without Redis (the file cache of ``make run``) it is ``add`` then
``incr``, atomic enough for one machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

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
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        client_cache = backend._cache
        serializer: Any = client_cache._serializer  # type: ignore[attr-defined]
        keys = [backend.make_and_validate_key(name) for name in (cache_key, *also)]
        client = client_cache.get_client(keys[0], write=True)
        pipe = client.pipeline(transaction=False)
        pipe.mget(keys)
        if limit:
            rl_key = backend.make_and_validate_key(counter_key(prefix, _window(time.time())[0]))
            pipe.incr(rl_key)
        results = pipe.execute()
        values = [None if raw is None else serializer.loads(raw) for raw in results[0]]
        count = int(results[1]) if limit else None
        if count == 1:  # this request opened the window's counter
            client.expire(rl_key, WINDOW_SECONDS + 1)
        return values[0], count, values[1:]
    found = cache.get_many([cache_key, *also])
    extras = [found.get(extra) for extra in also]
    if not limit:
        return found.get(cache_key), None, extras
    counter = counter_key(prefix, _window(time.time())[0])
    cache.add(counter, 0, WINDOW_SECONDS + 1)
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr: a fresh window
        cache.add(counter, 1, WINDOW_SECONDS + 1)
        count = 1
    return found.get(cache_key), int(count), extras


def check(kind: str, count: int | None) -> None:
    """Raise :class:`RateLimited` when ``count`` is past the kind's limit."""
    if count is None:
        return
    if count > limit_for(kind):
        raise RateLimited(_window(time.time())[1])
