"""How long to wait: capped exponential backoff with jitter, ``Retry-After``, poll jitter.

Pure functions and one small class, so that they can be tested without a server. Jitter
everywhere: a fleet that lost its server all at once must not come back all at once.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Capped exponential backoff with "equal jitter": the n-th failure in a row waits a random
    time between half and all of ``min(cap, base * 2**n)``. Never zero (a tight loop against a
    server that is down helps no one), never more than ``cap``."""

    base: float = 1.0
    cap: float = 300.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 32)))
        self.failures += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (RFC 9110: delay-seconds or an HTTP-date),
    None when absent or unreadable (the caller then backs off on its own)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def jittered(seconds: float, fraction: float, rng: random.Random) -> float:
    """``seconds`` spread by +/- ``fraction`` (never below zero)."""
    return max(0.0, seconds * (1 + rng.uniform(-fraction, fraction)))


def throttled_delay(retry_after: float | None, backoff: Backoff, rng: random.Random) -> float:
    """After a 429 or 503: at least what ``Retry-After`` says, plus up to 10 % more so that the
    devices throttled in the same window do not all come back at its first second; without the
    header, the backoff's next delay."""
    if retry_after is None:
        return backoff.next_delay()
    return retry_after + rng.uniform(0, max(1.0, retry_after) * 0.1)
