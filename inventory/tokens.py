"""Bearer tokens: how they are made, stored and checked.

A token is ``<kind>_<prefix>_<secret>``. Only the prefix (for lookup, indexed) and a
SHA-256 of the whole token are stored. The secret carries 256 bits of entropy, so a fast
hash is enough; a slow password hasher would cost milliseconds on every device poll for no
gain. The stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

API_KEY_KIND = "dok"
DEVICE_TOKEN_KIND = "ddt"
PREFIX_BYTES = 8  # 16 hex characters: collisions are negligible even for tens of millions of devices


@dataclass(frozen=True)
class IssuedToken:
    """A freshly made token: ``plain`` is shown once and never stored."""

    plain: str
    prefix: str
    hashed: str


def hash_token(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def issue(kind: str) -> IssuedToken:
    prefix = secrets.token_hex(PREFIX_BYTES)
    plain = f"{kind}_{prefix}_{secrets.token_urlsafe(32)}"
    return IssuedToken(plain=plain, prefix=prefix, hashed=hash_token(plain))


def split(plain: str) -> tuple[str, str] | None:
    """Return (kind, prefix) of a well-formed token, or None for anything else."""
    parts = plain.split("_", 2)
    if len(parts) != 3 or parts[0] not in (API_KEY_KIND, DEVICE_TOKEN_KIND):
        return None
    if len(parts[1]) != PREFIX_BYTES * 2:
        return None
    return parts[0], parts[1]


def matches(plain: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(plain), stored_hash)
