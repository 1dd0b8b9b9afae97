"""The SSRF guard: a webhook URL may only reach the public internet.

A tenant chooses the URL and the server POSTs to it, so without a guard an API key could make
the server call its own database, the cloud's metadata service (169.254.169.254) or any host
of the private network. The host is resolved and every address it resolves to must be a
global one; the sender then connects to an address vetted here, never resolving again, so a
DNS answer that changes between the check and the connection (DNS rebinding) cannot slip
through. ``WEBHOOK_ALLOW_PRIVATE_NETWORKS=1`` lifts the address check (tests, single-host
set-ups); the scheme check stays.

An IPv6 address may carry an IPv4 one that a host, a relay or a translator turns it into
(IPv4-mapped, 6to4, Teredo, NAT64, IPv4-compatible): such an address is judged by its IPv4
address too, so ``[2002:7f00:1::]`` (6to4 of 127.0.0.1) or ``[2002:a9fe:a9fe::]`` (of
169.254.169.254) is refused as those are. Site-local ``fec0::/10`` (deprecated, still routed
inside some networks) is refused with the private ranges.

A URL with whitespace or a control character anywhere (raw, or a control character
percent-encoded) is refused before anything else, whatever the settings: ``urlsplit`` drops a
raw CR, LF or tab without a word, so the URL checked would not be the URL stored and shown, and
a receiver that decodes its path could be handed a line break to log or forward.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

SCHEMES = ("http", "https")

#: NAT64 prefixes whose low 32 bits are the IPv4 destination: the well-known one (RFC 6052)
#: and the local-use one (RFC 8215).
NAT64_NETWORKS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
#: Deprecated site-local addresses (RFC 3879), which Python's ``is_global`` still calls global.
SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
#: IPv4-compatible addresses (``::a.b.c.d``, deprecated by RFC 4291): ``::/96`` less ``::`` and ``::1``.
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
#: A percent-encoded control character: ``%00`` to ``%1F`` and ``%7F`` (``%20``, a space, is
#: how a URL writes one, and stays allowed).
_ENCODED_CONTROL = re.compile(r"%(?:[01][0-9a-fA-F]|7[fF])")
_NAMED_CHARACTERS = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\t": "a tab", " ": "a space"}


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


def unsendable(url: str) -> str | None:
    """Why ``url`` cannot be sent as it is written, or None: whitespace or a control (or
    format) character anywhere in it, or a control character percent-encoded."""
    for position, character in enumerate(url):
        if character.isspace() or unicodedata.category(character)[0] == "C":
            name = _NAMED_CHARACTERS.get(character, f"the character U+{ord(character):04X}")
            return f"must not contain whitespace or control characters: {name} at position {position}"
    encoded = _ENCODED_CONTROL.search(url)
    if encoded:
        return (
            f"must not contain percent-encoded control characters: {encoded.group()} at position "
            f"{encoded.start()}"
        )
    return None


def parse(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and path-with-query of an ``http``/``https`` URL, or :class:`Refused`."""
    reason = unsendable(url)
    if reason is not None:
        raise Refused(reason)
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


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the mechanism that carries it:
    IPv4-mapped, 6to4, Teredo (its server and its client), NAT64, IPv4-compatible."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        found.append(("IPv4-mapped", ip.ipv4_mapped))
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [("Teredo server", server), ("Teredo client", client)]
    if any(ip in network for network in NAT64_NETWORKS):
        found.append(("NAT64", low32))
    if ip in IPV4_COMPATIBLE and int(ip) > 1:
        found.append(("IPv4-compatible", low32))
    return found


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def refusal(address: str) -> str | None:
    """Why an address is not on the public internet (loopback, private, link-local, site-local,
    multicast, reserved or unspecified, itself or the IPv4 address it carries), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return None if _public(ip) else str(ip)
    carried = embedded_ipv4(ip)
    for how, ipv4 in carried:
        if not _public(ipv4):
            return f"{ip} ({how} of {ipv4})"
    if ip.ipv4_mapped is not None:
        return None  # a socket sends it to the IPv4 address itself, judged above
    if ip in SITE_LOCAL:
        return f"{ip} (site-local)"
    # NAT64 and IPv4-compatible prefixes are reserved ranges: refused whatever they carry (said
    # here rather than left to each Python version's table of reserved networks).
    translated = ip in IPV4_COMPATIBLE or any(ip in network for network in NAT64_NETWORKS)
    if translated or not _public(ip):
        return f"{ip} ({', '.join(f'{how} of {ipv4}' for how, ipv4 in carried)})" if carried else str(ip)
    return None


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
        blocked = [why for why in map(refusal, addresses) if why is not None]
        if blocked:
            raise Refused(
                f"host {host!r} resolves to {blocked[0]}, a loopback, private, link-local, site-local, "
                "multicast or reserved address; webhooks go to public addresses only (an installation "
                "whose receivers are on its own network sets WEBHOOK_ALLOW_PRIVATE_NETWORKS=1: "
                "docs/events.md)"
            )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
