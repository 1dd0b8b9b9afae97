"""Typed readers for settings that come from the environment.

Each helper fails at start-up with a message naming the variable, so a typo in a
deployment is caught when the process starts, not on the first request that needs it.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def parse_bool(raw: str) -> bool | None:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case, blank is false); None for
    anything else. One reading of a boolean for settings and query parameters alike."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    parsed = parse_bool(raw)
    if parsed is not None:
        return parsed
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean (use one of 1/0, true/false, yes/no, on/off)"
    )


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, schemes: set[str]) -> str | None:
    """A URL whose scheme must be one of ``schemes``; None when unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(f"{name}={raw!r} has scheme {parsed.scheme!r}; expected one of: {allowed}")
    # A PostgreSQL URL may name its host as libpq's `?host=/socket/dir` (the embedded server's).
    has_host = bool(parsed.hostname or parse_qs(parsed.query).get("host"))
    if parsed.scheme not in {"filesystem", "memory"} and not has_host:
        raise ImproperlyConfigured(f"{name}={raw!r} has no host")
    return raw


_TOKEN_CHARACTERS = frozenset(chr(code) for code in range(0x21, 0x7F))


def env_token(name: str, min_length: int) -> str:
    """A shared secret that callers send as ``Authorization: Bearer <value>``; "" when unset.

    Set, it must be at least ``min_length`` characters of printable ASCII without spaces (what
    a bearer token can carry), so a typo or a placeholder such as ``changeme`` stops the process
    instead of guarding something with a guessable word. The value is never echoed back."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    if not set(raw) <= _TOKEN_CHARACTERS:
        raise ImproperlyConfigured(
            f"{name} must be printable ASCII without spaces (it is sent as a bearer token)"
        )
    if len(raw) < min_length:
        raise ImproperlyConfigured(
            f"{name} is {len(raw)} characters; at least {min_length} "
            "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return raw
