"""Sealing secrets the server must keep readable: webhook signing secrets, kept idempotent
answers that carry a token or a key.

A hash would do for secrets that are only compared (API keys, device tokens); these are
needed again in clear (to sign a webhook, to replay an answer), so they are encrypted at
rest with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``). ``ENCRYPTION_KEYS``
lists keys, newest first: the first seals, every one unseals, so a key is rotated by putting
a new one in front and dropping the old one once nothing sealed with it is kept
(:func:`reseal` moves a value to the newest key). Without the setting the
key is derived from ``SECRET_KEY``, so a development set-up needs nothing; rotating
``SECRET_KEY`` then makes what was sealed unreadable, which README's "Production" warns about.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

#: What a sealed value starts with, so a column can tell sealed text from plain text.
PREFIX = "fernet:"


class Unreadable(Exception):
    """A sealed value no configured key opens (the key was dropped or the value altered)."""


def derived_key(secret_key: str) -> bytes:
    """A Fernet key derived from ``SECRET_KEY``, for set-ups that configure no key."""
    digest = hashlib.sha256(b"device-operations-server/encryption/v1:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@cache
def _box() -> MultiFernet:
    keys = list(getattr(settings, "ENCRYPTION_KEYS", []) or []) or [derived_key(settings.SECRET_KEY).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        ) from error


def seal(plain: str) -> str:
    """Encrypt ``plain`` with the newest key; the result is ASCII and starts with :data:`PREFIX`."""
    return PREFIX + _box().encrypt(plain.encode()).decode("ascii")


def unseal(sealed: str) -> str:
    """Decrypt what :func:`seal` made, with any configured key; :class:`Unreadable` otherwise."""
    if not sealed.startswith(PREFIX):
        raise Unreadable("not a sealed value")
    try:
        return _box().decrypt(sealed.removeprefix(PREFIX).encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as error:
        raise Unreadable("no configured key opens this value") from error


def reseal(sealed: str) -> str:
    """The same value sealed with the newest key (after a key was put in front)."""
    return PREFIX + _box().rotate(sealed.removeprefix(PREFIX).encode("ascii")).decode("ascii")


def forget_keys() -> None:
    """Drop the cached keys (tests that change ``ENCRYPTION_KEYS`` or ``SECRET_KEY``)."""
    _box.cache_clear()
