"""The SSRF guard: a webhook URL may only reach the public internet.

A tenant chooses the URL and the server POSTs to it, so without a guard an API key could make
the server call its own database, the cloud's metadata service (169.254.169.254) or any host
of the private network. The host is resolved and every address it resolves to must be a
global one; the sender then connects to an address vetted here, never resolving again, so a
DNS answer that changes between the check and the connection (DNS rebinding) cannot slip
through. ``WEBHOOK_ALLOW_PRIVATE_NETWORKS=1`` lifts the address check (tests, single-host
set-ups); the scheme check stays.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

SCHEMES = ("http", "https")


class Refused(ValueError):
    """The URL may not be called; the message says why (shown as the 400 of ``url``)."""


@dataclass(frozen=True)
class Target:
    """Where a URL leads: its parts, and the vetted addresses to connect to."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def parse(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and path-with-query of an ``http``/``https`` URL, or :class:`Refused`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"is not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise Refused("must be an http or https URL")
    if not parts.hostname:
        raise Refused("has no host")
    if parts.username or parts.password:
        raise Refused("must not carry a user name or password")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def is_public(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local,
    multicast, reserved or unspecified (an IPv4 address mapped into IPv6 is judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def resolve(url: str, allow_private: bool | None = None) -> Target:
    """Check ``url`` and resolve its host; :class:`Refused` when it may not be called."""
    scheme, host, port, path = parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Refused(f"host {host!r} does not resolve ({error})") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Refused(f"host {host!r} does not resolve")
    if allow_private is None:
        allow_private = bool(settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS)
    if not allow_private:
        blocked = [address for address in addresses if not is_public(address)]
        if blocked:
            raise Refused(
                f"host {host!r} resolves to {blocked[0]}, a loopback, private, link-local, multicast "
                "or reserved address; webhooks go to public addresses only"
            )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
