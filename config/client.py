"""The client's address, read one way everywhere: the console login's lockout (django-axes,
``AXES_CLIENT_IP_CALLABLE``), the per-address limit of failed token checks
(``inventory.ratelimit``) and the audit log.

``X-Forwarded-For`` can be sent by anyone, so it is believed only as far as the operator says
proxies in front of the server write it: ``TRUSTED_PROXY_COUNT`` (README, "Configuration").
With 0, the default, the address is the connection's peer (``REMOTE_ADDR``) and the header is
ignored; with N, it is the N-th address from the right of ``X-Forwarded-For``: each trusted
proxy appends the address it received the request from, so the N-th from the right is the
one the outermost trusted proxy saw, and whatever a client wrote further left is ignored.
(DRF's ``NUM_PROXIES`` rule, read here from the project's setting.)
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address; the peer's when the forwarded one is missing or not an IP
    address (a request that bypassed the proxies); None without either."""
    peer = request.META.get("REMOTE_ADDR") or None
    proxies = int(settings.TRUSTED_PROXY_COUNT)
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        candidate = hops[-min(proxies, len(hops))]
        if _is_ip(candidate):
            return candidate
    return peer if peer and _is_ip(peer) else None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
