"""Network rules shared by the client and the token flow: which URLs may be followed, body limits.

A URL chosen by the registry (token realm, blob redirect) is followed only when it is ``https``, or
plain ``http`` to a loopback host or a host:port configured as insecure; never with user-info; and
never to a host that is, or resolves to, a link-local (cloud metadata: 169.254.0.0/16,
fd00:ec2::254, fe80::/10), unspecified, multicast or reserved address. Private networks are
allowed (internal registries have internal token servers and storage).

:func:`resolve_checked` resolves a URL's host once and checks every address; the
:mod:`~supplychain.registry.transport` then connects to that exact address, so a name cannot
resolve to an allowed address for the check and to another one for the connection (DNS
rebinding). ``resolver`` is the one name look-up (``socket.getaddrinfo`` by default).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from supplychain.registry.errors import BlobTooLargeError, NotAllowedError

__all__ = [
    "CheckedAddress",
    "Resolver",
    "check_outbound_url",
    "is_loopback_host",
    "read_limited",
    "resolve_checked",
    "split_host",
    "system_resolver",
]

Resolver = Callable[[str, int], Sequence[str]]
"""Resolves ``(host, port)`` to IP address strings (IPv6 without brackets)."""

_METADATA_HOSTS = {ipaddress.ip_address("fd00:ec2::254")}


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (``host`` may carry ``:port``/brackets)."""
    name = split_host(host)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(netloc: str) -> str:
    """The host name of ``host[:port]`` or ``[v6][:port]``, without brackets or port."""
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return False
    return (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address in _METADATA_HOSTS
    )


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from ``getaddrinfo`` (TCP), in the order the system prefers."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]).split("%", 1)[0] for info in infos]


@dataclass(frozen=True)
class CheckedAddress:
    """Where a checked URL's connection goes."""

    host: str
    """The URL's host name (for ``Host``, TLS SNI and certificate verification)."""
    port: int
    """The URL's port (its scheme's default when it names none)."""
    address: str
    """The IP address that was checked; the connection goes there and nowhere else."""


def check_outbound_url(url: str, *, plain_http_hosts: frozenset[str] = frozenset()) -> None:
    """Raise :class:`NotAllowedError` for a registry-chosen URL we must not follow (module doc)."""
    resolve_checked(url, plain_http_hosts=plain_http_hosts)


def resolve_checked(
    url: str,
    *,
    plain_http_hosts: frozenset[str] = frozenset(),
    resolver: Resolver = system_resolver,
) -> CheckedAddress:
    """Check ``url`` (module doc), resolving its host once; the address to connect to.

    Every address the name resolves to must pass, and the first is the one used.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise NotAllowedError(f"refusing URL with scheme {parts.scheme!r} or no host")
    if parts.username is not None or parts.password is not None:
        raise NotAllowedError(f"refusing URL to {host} carrying user-info")
    netloc = parts.netloc.lower()
    if parts.scheme == "http" and not (is_loopback_host(netloc) or netloc in plain_http_hosts):
        raise NotAllowedError(
            f"refusing plain-http URL to {host}: only https, loopback or insecure hosts"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise NotAllowedError(f"refusing URL to {host}: invalid port") from None
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolver(host, port)]
        except (OSError, ValueError):
            raise NotAllowedError(f"cannot resolve {host}") from None
    if not addresses:
        raise NotAllowedError(f"cannot resolve {host}")
    if any(_forbidden(address) for address in addresses):
        raise NotAllowedError(f"refusing URL to {host}: link-local, metadata or reserved address")
    return CheckedAddress(host, port, str(addresses[0]))


def read_limited(response: requests.Response, limit: int, what: str) -> bytes:
    """The body of ``response``, refusing more than ``limit`` bytes."""
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BlobTooLargeError(f"{what} is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(65536):
        total += len(chunk)
        if total > limit:
            raise BlobTooLargeError(f"{what} is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
