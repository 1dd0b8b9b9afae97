"""What the inbox remembers between polls, so an empty poll can answer 304 from the cache.

An empty answer's ETag is stored per device together with the tenant's inbox generation.
Anything that may put new commands in front of devices bumps the generation (fan-out,
windows opening, redelivery) or forgets one device (a single internal command). A poll
whose ``If-None-Match`` equals the stored ETag, at an unchanged generation, answers 304
with two cache reads (one round trip) and no database query.
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache

#: A safety net: an empty-inbox ETag is trusted at most this long.
EMPTY_TTL_SECONDS = 300


def _gen_key(tenant_id: int) -> str:
    return f"inbox:gen:{tenant_id}"


def _empty_key(device_pk: int) -> str:
    return f"inbox:empty:{device_pk}"


def bump_tenant(tenant_id: int) -> None:
    """Every device of the tenant must look at its commands again on its next poll."""
    try:
        cache.incr(_gen_key(tenant_id))
    except ValueError:
        cache.add(_gen_key(tenant_id), 1, None)
        cache.incr(_gen_key(tenant_id))


def forget_device(device_pk: int) -> None:
    cache.delete(_empty_key(device_pk))


def cached_empty_etag(tenant_id: int, device_pk: int) -> tuple[str | None, int]:
    """(ETag of the device's last empty answer if still valid, current generation)."""
    values = cache.get_many([_gen_key(tenant_id), _empty_key(device_pk)])
    generation = int(values.get(_gen_key(tenant_id)) or 0)
    stored = values.get(_empty_key(device_pk))
    if not stored:
        return None, generation
    stored_gen, etag = stored.split(":", 1)
    return (etag if int(stored_gen) == generation else None), generation


def remember_empty(device_pk: int, generation: int) -> str:
    etag = empty_etag(device_pk, generation)
    cache.set(_empty_key(device_pk), f"{generation}:{etag}", EMPTY_TTL_SECONDS)
    return etag


def empty_etag(device_pk: int, generation: int) -> str:
    return '"' + hashlib.sha1(f"empty:{device_pk}:{generation}".encode()).hexdigest()[:20] + '"'


def content_etag(parts: list[str]) -> str:
    return '"' + hashlib.sha1("|".join(parts).encode()).hexdigest()[:20] + '"'
