"""What lets an empty poll answer 304 from the cache, in one Redis round trip.

Two generation counters say when a device must look at its commands again: its tenant's
(bumped by a fan-out, windows opening, redelivery) and its own (bumped by a single
internal command). An empty answer's ETag carries the tenant, the device, both
generations as read *before* the answer's query, and the minute it was made. A poll that
sends it back as ``If-None-Match`` gets a 304 when both generations are unchanged: the
generations are read in the same round trip as the token lookup, so the 304 costs one round
trip and no database query. A command committed while a poll runs always makes that
poll's ETag stale, because its generation was read before the query.

An ETag is trusted for ``EMPTY_TTL_SECONDS`` at most, and a generation made again (expired,
or lost with a Redis that restarted empty) starts above any value it had (:func:`_bump`), so
neither can revive an old ETag.

While the cache cannot be reached no generation can be read, so the inbox answers from the
database with no empty ETag (and no 304), and a bump (which follows committed work) is
redone once Redis answers (``config.cache.best_effort``): until then a device holding an
ETag of before the outage could hear 304 from a Redis that kept its data, for at most
``EMPTY_TTL_SECONDS``, and only if this process exits before Redis is back.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from config.cache import best_effort

EMPTY_TTL_SECONDS = 300


@dataclass(frozen=True)
class EmptyTag:
    tenant_id: int
    device_pk: int
    generations: tuple[int, int]
    minute: int


#: The generation keys of a tenant and a device, as templates; read with a device token's
#: lookup, in its round trip (``inventory.authentication.resolve_token_reading``).
GENERATION_TEMPLATES = ("inbox:gen:{tenant}", "inbox:devgen:{device}")


def generation_keys(tenant_id: int, device_pk: int) -> list[str]:
    return [template.format(tenant=tenant_id, device=device_pk) for template in GENERATION_TEMPLATES]


def _bump(key: str, timeout: int | None = None) -> None:
    """Add one to a generation; one that is not there (never made, expired, or lost with a
    Redis that restarted empty) starts at the clock in microseconds, above anything an earlier
    life of it reached (one bump per microsecond, forever), so no ETag of before names it."""
    try:
        cache.incr(key)
    except ValueError:
        cache.add(key, time.time_ns() // 1000, timeout)
        cache.incr(key)


def bump_tenant(tenant_id: int) -> None:
    """Every device of the tenant must look at its commands again on its next poll."""
    key = generation_keys(tenant_id, 0)[0]
    best_effort("generation_bump", key, lambda: _bump(key))


def forget_device(device_pk: int) -> None:
    """The device must look at its commands again on its next poll."""
    key = generation_keys(0, device_pk)[1]
    best_effort("generation_bump", key, lambda: _bump(key, 2 * EMPTY_TTL_SECONDS))


def as_generations(values: list[object]) -> tuple[int, int]:
    tenant, device = (int(value or 0) for value in values)  # type: ignore[call-overload]
    return tenant, device


def generations(tenant_id: int, device_pk: int) -> tuple[int, int]:
    return generations_many([(tenant_id, device_pk)])[(tenant_id, device_pk)]


def generations_many(devices: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[int, int]]:
    """:func:`generations` of many ``(tenant, device)`` pairs in one round trip (the MQTT
    bridge's batch of ``inbox/get``)."""
    keys = {pair: generation_keys(*pair) for pair in devices}
    values = cache.get_many([key for pair_keys in keys.values() for key in pair_keys])
    return {pair: as_generations([values.get(key) for key in pair_keys]) for pair, pair_keys in keys.items()}


def _checksum(body: str) -> str:
    return hashlib.sha256(f"{settings.SECRET_KEY}:{body}".encode()).hexdigest()[:12]


def empty_etag(tenant_id: int, device_pk: int, generation: tuple[int, int]) -> str:
    body = f"{tenant_id}.{device_pk}.{generation[0]}.{generation[1]}.{int(time.time() // 60)}"
    return f'"{body}.{_checksum(body)}"'


def parse_empty_etag(header: str) -> EmptyTag | None:
    """The empty-answer ETag in ``If-None-Match``, if it is one of ours and still fresh."""
    text = header.strip().removeprefix("W/").strip('"')
    parts = text.split(".")
    if len(parts) != 6 or not all(part.isdigit() for part in parts[:5]):
        return None
    body = ".".join(parts[:5])
    if parts[5] != _checksum(body):
        return None
    tenant, device, tenant_gen, device_gen, minute = (int(part) for part in parts[:5])
    if time.time() // 60 - minute > EMPTY_TTL_SECONDS // 60:
        return None
    return EmptyTag(tenant, device, (tenant_gen, device_gen), minute)


def content_etag(parts: list[str]) -> str:
    return '"' + hashlib.sha1("|".join(parts).encode()).hexdigest()[:20] + '"'
