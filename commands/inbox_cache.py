"""What the inbox remembers between polls, so an empty poll can answer 304 from the cache.

An empty answer's ETag is stored per device together with the generation it was computed
at: the tenant's inbox generation and the device's own. Anything that may put new commands
in front of devices bumps the tenant's (fan-out, windows opening, redelivery) or the one
device's (a single internal command). A poll whose ``If-None-Match`` equals the stored
ETag, at an unchanged generation, answers 304 with one cache round trip and no database
query.

A generation is read before the poll's query and stored with its answer, so a command
committed while a poll runs always makes that answer stale. (Deleting the stored answer
instead would not: a poll that queried before the commit stores it again afterwards.)
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache

#: A safety net: an empty-inbox ETag is trusted at most this long.
EMPTY_TTL_SECONDS = 300


def _gen_key(tenant_id: int) -> str:
    return f"inbox:gen:{tenant_id}"


def _device_gen_key(device_pk: int) -> str:
    return f"inbox:devgen:{device_pk}"


def _empty_key(device_pk: int) -> str:
    return f"inbox:empty:{device_pk}"


def _bump(key: str, timeout: int | None = None) -> None:
    try:
        cache.incr(key)
    except ValueError:
        cache.add(key, 1, timeout)
        cache.incr(key)


def bump_tenant(tenant_id: int) -> None:
    """Every device of the tenant must look at its commands again on its next poll."""
    _bump(_gen_key(tenant_id))


def forget_device(device_pk: int) -> None:
    """The device must look at its commands again on its next poll."""
    # A device's generation may expire (there are many devices): once every empty answer
    # stored before its first bump has expired, falling back to 0 cannot revive one.
    _bump(_device_gen_key(device_pk), 2 * EMPTY_TTL_SECONDS)


def cached_empty_etag(tenant_id: int, device_pk: int) -> tuple[str | None, str]:
    """(ETag of the device's last empty answer if still valid, current generation)."""
    keys = [_gen_key(tenant_id), _device_gen_key(device_pk), _empty_key(device_pk)]
    values = cache.get_many(keys)
    generation = f"{int(values.get(keys[0]) or 0)}.{int(values.get(keys[1]) or 0)}"
    stored = values.get(keys[2])
    if not stored:
        return None, generation
    stored_gen, etag = stored.split(":", 1)
    return (etag if stored_gen == generation else None), generation


def remember_empty(device_pk: int, generation: str) -> str:
    etag = empty_etag(device_pk, generation)
    cache.set(_empty_key(device_pk), f"{generation}:{etag}", EMPTY_TTL_SECONDS)
    return etag


def empty_etag(device_pk: int, generation: str) -> str:
    return '"' + hashlib.sha1(f"empty:{device_pk}:{generation}".encode()).hexdigest()[:20] + '"'


def content_etag(parts: list[str]) -> str:
    return '"' + hashlib.sha1("|".join(parts).encode()).hexdigest()[:20] + '"'
