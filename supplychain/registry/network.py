"""Network rules shared by the client and the token flow: which URLs may be followed, body limits.

A URL chosen by the registry (token realm, blob redirect) is followed only when it is ``https``, or
plain ``http`` to a loopback host or a host:port configured as insecure; never with user-info; and
never to a host that is, or resolves to, a link-local (cloud metadata: 169.254.0.0/16,
fd00:ec2::254, fe80::/10), unspecified, multicast or reserved address. Private networks are
allowed (internal registries have internal token servers and storage).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import requests

from supplychain.registry.errors import BlobTooLargeError, NotAllowedError

__all__ = ["check_outbound_url", "is_loopback_host", "read_limited", "split_host"]

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


def check_outbound_url(url: str, *, plain_http_hosts: frozenset[str] = frozenset()) -> None:
    """Raise :class:`NotAllowedError` for a registry-chosen URL we must not follow (module doc)."""
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
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            raise NotAllowedError(f"cannot resolve {host}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if any(_forbidden(address) for address in addresses):
        raise NotAllowedError(f"refusing URL to {host}: link-local, metadata or reserved address")


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
