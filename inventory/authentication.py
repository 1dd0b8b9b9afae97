"""Bearer authentication for API keys and device tokens.

A token is found by its prefix and checked against a SHA-256 in constant time. What a
lookup finds is cached for ``AUTH_CACHE_SECONDS`` so the device inbox, polled by every
device, usually authenticates without touching the database; revoking or rotating a
token deletes its cache entry at once (:func:`forget_token`).

While the cache (Redis) cannot be reached, a token is looked up in PostgreSQL, the truth the
cache only copies, so the API stays up (issue 23, docs/reliability.md): its requests per
minute and its address's failures cannot be counted then, and are not (the limits fail
open, counted in ``dos_cache_unavailable_total`` and logged once per outage). A revocation
meanwhile takes effect at once, since every lookup reads the database; dropping its cached
entry is redone when Redis is back. ``CACHE_OUTAGE_SERVES_DEVICES=0`` makes device tokens
answer 503 instead, so that a large fleet's polls do not all fall on PostgreSQL
(docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from config.api.principal import Principal
from config.cache import best_effort, degraded
from config.client import client_address
from config.errors import CacheUnavailable
from inventory import ratelimit, tokens

_NOT_FOUND = "__none__"


def _cache_key(prefix: str) -> str:
    return f"auth:{prefix}"


#: The placeholders a caller's ``per_caller`` key templates may hold (:func:`resolve_token_reading`).
CALLER_FIELDS = ("tenant", "device")


@functools.cache
def _positional(per_caller: tuple[str, ...]) -> tuple[str, ...]:
    """``per_caller``'s templates with ``{tenant}`` and ``{device}`` as the cache's ``{0}`` and
    ``{1}`` (the identity keys' order). Made once per tuple: every device poll passes the same."""
    positions = {field: f"{{{i}}}" for i, field in enumerate(CALLER_FIELDS)}
    return tuple(template.format(**positions) for template in per_caller)


def _identity_keys(prefix: str) -> list[str]:
    """Where the cached lookup of a device token keeps its tenant and device keys as plain
    numbers, beside the entry itself, so that keys named after them (the inbox's generations)
    are read in the lookup's own round trip."""
    return [f"auth:{field}:{prefix}" for field in CALLER_FIELDS]


def forget_token(prefix: str) -> None:
    """Drop a cached lookup; call after revoking, rotating or deleting a token. With the cache
    down the revocation stands (lookups read the database meanwhile) and the drop is redone
    once Redis answers, before which a Redis that kept its data could serve the old entry."""
    keys = [_cache_key(prefix), *_identity_keys(prefix)]
    best_effort("token_forget", f"auth:forget:{prefix}", lambda: cache.delete_many(keys))


def _load(kind: str, prefix: str) -> dict[str, Any] | None:
    from inventory.models import ApiKey, Device

    if kind == tokens.API_KEY_KIND:
        key = (
            ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .values("id", "tenant_id", "role", "name", "key_hash", "expires_at")
            .first()
        )
        if key is None:
            return None
        return {
            "hash": key["key_hash"],
            "expires": key["expires_at"].timestamp() if key["expires_at"] else None,
            "principal": {
                "tenant_id": key["tenant_id"],
                "kind": "key",
                "role": key["role"],
                "label": key["name"] or f"key:{prefix}",
                "key_id": str(key["id"]),
            },
        }
    device = (
        Device.objects.filter(token_prefix=prefix, token_revoked=False)
        .values("id", "tenant_id", "device_id", "token_hash")
        .first()
    )
    if device is None:
        return None
    return {
        "hash": device["token_hash"],
        "expires": None,
        "principal": {
            "tenant_id": device["tenant_id"],
            "kind": "device",
            "role": "device",
            "label": f"device:{device['device_id']}",
            "device_pk": device["id"],
            "device_id": device["device_id"],
        },
    }


def resolve_token(plain: str, client: str | None = None) -> Principal | None:
    """The principal a bearer token stands for, or None if it is unknown, revoked or expired.

    Raises :class:`~inventory.ratelimit.RateLimited` when the token spent this minute's
    requests, or when it fails and its ``client`` address failed too often this minute.
    """
    return resolve_token_reading(plain, client=client)[0]


def resolve_token_reading(
    plain: str, per_caller: Sequence[str] = (), client: str | None = None
) -> tuple[Principal | None, list[Any] | None]:
    """:func:`resolve_token`, also reading, in the same round trip, the cache keys named by the
    templates ``per_caller`` once ``{tenant}`` and ``{device}`` are the caller's: their values,
    or None when they could not be read with the lookup (a key, or a lookup not cached yet)."""
    parsed = tokens.split(plain)
    if parsed is None:  # not a token at all: nothing looked up, nothing to count
        return None, None
    kind, prefix = parsed
    digest = tokens.hash_token(plain)
    templates = _positional(tuple(per_caller))
    # One cache round trip: the cached lookup, the presented token's request count, the
    # caller's keys.
    try:
        entry, count, extras = ratelimit.lookup_and_count(
            _cache_key(prefix), kind, prefix, digest, _identity_keys(prefix) if templates else (), templates
        )
        cached = True
    except CacheUnavailable:
        if kind == tokens.DEVICE_TOKEN_KIND and not settings.CACHE_OUTAGE_SERVES_DEVICES:
            raise  # 503: the fleet waits for Redis rather than falling on PostgreSQL
        degraded(
            "token_lookup",
            "tokens are looked up in PostgreSQL and their requests per minute are not counted",
        )
        entry, count, extras, cached = None, None, None, False
    if entry is None:
        entry = _load(kind, prefix) or _NOT_FOUND
        # Misses are cached briefly too, so a flood of bad tokens cannot hammer the database.
        timeout = settings.AUTH_CACHE_SECONDS if entry != _NOT_FOUND else min(settings.AUTH_CACHE_SECONDS, 5)
        if timeout and cached:
            # Gone since the lookup: the next request reads the database again.
            with contextlib.suppress(CacheUnavailable):
                cache.set_many({_cache_key(prefix): entry, **_identity(prefix, entry)}, timeout)
    if (
        entry == _NOT_FOUND
        or not tokens.same_hash(digest, entry["hash"])
        or (entry["expires"] is not None and entry["expires"] <= timezone.now().timestamp())
    ):
        ratelimit.count_failure(client)  # 401, or 429 past the address's failures
        return None, None
    ratelimit.check(kind, count)  # a verified token's own requests only
    principal = Principal(**entry["principal"])
    if principal.key_id is not None:
        _touch_key(principal.key_id)
    if extras is None:
        return principal, None
    named_after, found = extras
    # Read after the identity keys, which are written and dropped with the entry: used only
    # when they name this principal (an entry and its keys could part in an eviction).
    if named_after != [principal.tenant_id, principal.device_pk]:
        return principal, None
    return principal, found


def _identity(prefix: str, entry: Any) -> dict[str, int]:
    """The identity keys of a device token's cached lookup (none for a key or a miss)."""
    if entry == _NOT_FOUND or entry["principal"].get("device_pk") is None:
        return {}
    principal = entry["principal"]
    return dict(zip(_identity_keys(prefix), (principal["tenant_id"], principal["device_pk"]), strict=True))


def _touch_key(key_id: str) -> None:
    """Record last use at most once per API_KEY_LAST_USED_RESOLUTION seconds per key."""
    from inventory.models import ApiKey

    try:
        due = cache.add(f"auth:used:{key_id}", 1, settings.API_KEY_LAST_USED_RESOLUTION)
    except CacheUnavailable:
        # Not a write per request on the database meanwhile: last use may lag by the outage.
        degraded("key_last_used", "API keys' last_used_at is not updated")
        return
    if due:
        ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>`` with an API key or a device token."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Principal, Principal] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        try:
            plain = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        try:
            principal = resolve_token(plain, client_address(request))
        except ratelimit.RateLimited as limited:
            # The limiter's own words (which limit, when to retry), as the device views say them;
            # ``wait`` set apart, or DRF would add its own sentence (the handler's Retry-After).
            throttled = Throttled(detail=str(limited))
            throttled.wait = limited.retry_after  # type: ignore[attr-defined]  # read by the handler
            raise throttled from None
        if principal is None:
            raise AuthenticationFailed("Invalid, revoked or expired token.")
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
