"""What the cache's outage guard costs while Redis answers (issue 23): the token lookup's script
(``read_count_and_derive``, the inbox 304's one round trip) and a ``get``, through the guard
and without it (``__wrapped__``), interleaved, in one process, against a real Redis; and the
guard alone, around a method that does nothing (no I/O, so not lost in the round trip's noise).

    REDIS_URL=redis://127.0.0.1:6379/11 SECRET_KEY=x .venv/bin/python bench/cache_guard.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

CALLS = 5000
ROUNDS = 5


def per_call(work: Callable[[], Any]) -> float:
    """Microseconds per call of ``work``, over ``CALLS`` calls."""
    started = time.perf_counter()
    for _ in range(CALLS):
        work()
    return (time.perf_counter() - started) / CALLS * 1e6


def main() -> None:
    import django

    django.setup()
    from django.conf import settings

    from config.cache import ReusingRedisCache, ReusingRedisCacheClient, _guarded, _outage_of

    class Idle:
        _outage = _outage_of(["bench"])

        def nothing(self) -> None:
            return None

        guarded_nothing = _guarded(nothing)

    idle = Idle()

    assert settings.REDIS_URL, "REDIS_URL: a real Redis"
    cache = ReusingRedisCache(settings.REDIS_URL, {"KEY_PREFIX": "bench-guard"})
    cache.set_many({"auth:x": {"principal": 1}, "tenant:x": 1, "device:x": 2, "gen:1": 5, "devgen:2": 3})
    lookup = ("auth:x",), "rl:x", 61, ("tenant:x", "device:x"), ("gen:{0}", "devgen:{1}")
    raw_lookup = ReusingRedisCache.read_count_and_derive.__wrapped__  # type: ignore[attr-defined]
    raw_get = ReusingRedisCacheClient.get.__wrapped__  # type: ignore[attr-defined]
    client = cache._cache
    key = cache.make_and_validate_key("auth:x")
    variants: dict[str, Callable[[], Any]] = {
        "lookup, guarded": lambda: cache.read_count_and_derive(*lookup),
        "lookup, unguarded": lambda: raw_lookup(cache, *lookup),
        "get, guarded": lambda: client.get(key, None),
        "get, unguarded": lambda: raw_get(client, key, None),
        "nothing, guarded": idle.guarded_nothing,
        "nothing, unguarded": idle.nothing,
    }
    for work in variants.values():  # warm: the script is loaded, the connection open
        per_call(work)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, work in variants.items():
            results[name].append(per_call(work))
    for name, values in results.items():
        print(f"{name:20} median {statistics.median(values):7.2f} µs  rounds {[round(v, 2) for v in values]}")
    cache.delete_many(["auth:x", "tenant:x", "device:x", "gen:1", "devgen:2", "rl:x"])


if __name__ == "__main__":
    main()
