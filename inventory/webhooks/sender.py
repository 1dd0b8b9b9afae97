"""One HTTP POST of one event, signed as Standard Webhooks says.

urllib3 rather than requests: a connection pool can be told to connect to the address the
guard vetted while sending ``Host`` and checking the TLS certificate for the URL's name, so
no second DNS lookup happens between the check and the connection. Pools are kept per
(host, port, address) in the worker process, so a batch to one endpoint reuses one kept-alive
connection. Redirects are never followed.

The whole attempt (connect, TLS, request, headers and body) has ``WEBHOOK_TIMEOUT_SECONDS``,
held by :class:`inventory.webhooks.deadline.Deadline`: urllib3's own ``total`` timeout is
given afresh to each read of the socket, so a receiver trickling a byte a second would hold an
attempt (and the worker) for as long as it liked.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import urllib3
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from inventory.webhooks import deadline, guard

USER_AGENT = "device-operations-server-webhooks/1"
#: Pools kept by this process; bounded so that endpoints changing their URLs cannot grow it forever.
_POOLS: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
_MAX_POOLS = 256


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: a status code, or an error (timeout, refused, blocked)."""

    status_code: int | None
    error: str
    duration_ms: int
    retry_after: float | None = None
    #: Why no status came back: ``refused`` (the guard), ``timeout``, ``connection``.
    failure: str = ""

    @property
    def reason(self) -> str:
        """The attempt's class for ``dos_webhook_attempts_total``: ``2xx`` (delivered), the
        status class of any other answer, or why there was none."""
        if self.status_code is not None:
            return f"{self.status_code // 100}xx"
        return self.failure or "connection"

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def endpoint_down(self) -> bool:
        """No answer, or an answer that says "not now": stop the batch and back off."""
        return self.status_code is None or self.status_code >= 500 or self.status_code in (408, 429)


def signature_headers(
    signer: Webhook, msg_id: str, body: str, now: dt.datetime | None = None
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64>``), made by
    the ``standardwebhooks`` library so that it verifies them with the secret as given."""
    now = now or dt.datetime.now(dt.UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(msg_id, now, body),
    }


def signer(secret: str) -> Webhook:
    """The signing key of an endpoint, decoded once for a whole batch."""
    return Webhook(secret)


def resolve(url: str) -> guard.Target | str:
    """The URL's vetted target, or why it may not be called; checked once per batch, so a
    batch goes to the addresses checked at its start (never re-resolved in between)."""
    try:
        return guard.resolve(url)
    except guard.Refused as refused:
        return f"refused: url {refused}"


def _pool(target: guard.Target, address: str) -> urllib3.HTTPConnectionPool:
    key = (target.scheme, target.host, target.port, address)
    pool = _POOLS.get(key)
    if pool is None:
        if len(_POOLS) >= _MAX_POOLS:
            for old in _POOLS.values():
                old.close()
            _POOLS.clear()
        timeout = urllib3.Timeout(total=float(settings.WEBHOOK_TIMEOUT_SECONDS))
        if target.scheme == "https":
            pool = deadline.HTTPSPool(
                address,
                target.port,
                timeout=timeout,
                retries=False,
                maxsize=1,
                server_hostname=target.host,
                assert_hostname=target.host,
            )
        else:
            pool = deadline.HTTPPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
        _POOLS[key] = pool
    return pool


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def send(target: guard.Target | str, key: Webhook, msg_id: str, body: str) -> Outcome:
    """POST ``body`` to ``target`` (from :func:`resolve`; a string is a refusal) signed with
    ``key``; never raises for what the network or the receiver does."""
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    if isinstance(target, str):
        return Outcome(None, target, took(), failure="refused")
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    if ":" in target.host and target.port not in (80, 443):
        host_header = f"[{target.host}]:{target.port}"
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": host_header,
        **signature_headers(key, msg_id, body),
    }
    seconds = int(settings.WEBHOOK_TIMEOUT_SECONDS)
    timed_out = f"timed out: no whole answer within {seconds} s (WEBHOOK_TIMEOUT_SECONDS)"
    with deadline.Deadline(seconds) as limit:
        try:
            response = _pool(target, target.addresses[0]).urlopen(
                "POST",
                target.path,
                body=body.encode(),
                headers=headers,
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=True,  # the body too is read under the deadline
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if limit.expired or isinstance(error, urllib3.exceptions.TimeoutError):
                return Outcome(None, timed_out, took(), failure="timeout")
            return Outcome(None, f"{type(error).__name__}: {error}"[:500], took(), failure="connection")
    if limit.expired:
        # Cut at the deadline, http.client may take the end of the socket for the end of the
        # head or of a body without a length, and return a truncated answer as if whole.
        return Outcome(None, timed_out, took(), failure="timeout")
    return Outcome(response.status, "", took(), _retry_after(response.headers.get("retry-after")))
