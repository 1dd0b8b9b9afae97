"""Bearer tokens: how they are made, stored and checked.

A token is ``<kind>_<prefix>_<secret>``. Only the prefix (for lookup, indexed) and a
SHA-256 of the whole token are stored. The secret carries 256 bits of entropy, so a fast
hash is enough; a slow password hasher would cost milliseconds on every device poll for no
gain. The stored hash is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

API_KEY_KIND = "dok"
DEVICE_TOKEN_KIND = "ddt"
PREFIX_BYTES = 8  # 16 hex characters: collisions are negligible even for tens of millions of devices
SECRET_BYTES = 32


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
    plain = f"{kind}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return IssuedToken(plain=plain, prefix=prefix, hashed=hash_token(plain))


def issue_many(kind: str, count: int) -> Iterator[tuple[str, str, str]]:
    """``count`` tokens like :func:`issue`, as (plain, prefix, hashed), for bulk imports.

    One read of the system's random source for all of them and no object per token:
    0.47 s instead of 0.78 s for 100,000 tokens, measured on the benchmark machine.
    """
    size = PREFIX_BYTES + SECRET_BYTES
    pool = secrets.token_bytes(size * count)
    encode, sha256 = base64.urlsafe_b64encode, hashlib.sha256
    for start in range(0, size * count, size):
        prefix = pool[start : start + PREFIX_BYTES].hex()
        secret = encode(pool[start + PREFIX_BYTES : start + size]).rstrip(b"=").decode()
        plain = f"{kind}_{prefix}_{secret}"
        yield plain, prefix, sha256(plain.encode()).hexdigest()


#: What :func:`issue` makes, and nothing else: a kind, a lowercase hex prefix, a URL-safe base64
#: secret. A NUL, another control character or any other character outside that alphabet is
#: refused here, before any lookup: a NUL in the prefix reached PostgreSQL (``DataError``, a 500)
#: when no proxy in front refused the header first.
_WELL_FORMED = re.compile(
    rf"(?P<kind>{API_KEY_KIND}|{DEVICE_TOKEN_KIND})_(?P<prefix>[0-9a-f]{{{PREFIX_BYTES * 2}}})_[A-Za-z0-9_-]+"
)


def split(plain: str) -> tuple[str, str] | None:
    """Return (kind, prefix) of a well-formed token, or None for anything else."""
    match = _WELL_FORMED.fullmatch(plain)
    if match is None:
        return None
    return match["kind"], match["prefix"]


def same_hash(digest: str, stored_hash: str) -> bool:
    """Whether a presented token's :func:`hash_token` is the stored one, in constant time."""
    return hmac.compare_digest(digest, stored_hash)
