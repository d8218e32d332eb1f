"""Outbound HTTP that connects only to the address that was checked.

:class:`CheckedAdapter` is a ``requests`` transport adapter: when ``requests`` picks the
connection pool for a request, the adapter resolves the URL's host once through
:func:`~supplychain.registry.network.resolve_checked` (scheme, user-info and address rules) and
hands urllib3 a pool for that exact IP address. The name stays what the server sees and what TLS
checks: ``Host`` is the URL's ``host[:port]``, and for ``https`` the pool sends the name as SNI
(``server_hostname``) and verifies the certificate against it (``assert_hostname``), with the
session's usual CA verification. A name that resolves to an allowed address for the check cannot
resolve to another one for the connection (DNS rebinding): there is no second look-up.

Pools are keyed by (scheme, address, port, name), so keep-alive connections are reused only for
the same checked address. With an HTTP proxy configured in the environment, ``https`` goes through
the proxy's ``CONNECT`` to the checked address; plain ``http`` through a proxy lets the proxy
resolve the name, as any proxied request does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from supplychain.registry.network import Resolver, resolve_checked, system_resolver

__all__ = ["CheckedAdapter", "checked_session"]


class CheckedAdapter(HTTPAdapter):
    """Connects each request to the address :func:`resolve_checked` allowed (module doc)."""

    def __init__(
        self,
        *,
        plain_http_hosts: frozenset[str] = frozenset(),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.plain_http_hosts = plain_http_hosts
        self.resolver = resolver
        super().__init__()

    def build_connection_pool_key_attributes(  # type: ignore[override]  # stubs' TypedDicts
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        params, kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params: dict[str, Any] = dict(params)
        pool_kwargs: dict[str, Any] = dict(kwargs)
        checked = resolve_checked(
            str(request.url), plain_http_hosts=self.plain_http_hosts, resolver=self.resolver
        )
        address = checked.address
        host_params["host"] = f"[{address}]" if ":" in address else address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = checked.host
            pool_kwargs["assert_hostname"] = checked.host
        return host_params, pool_kwargs

    def add_headers(self, request: requests.PreparedRequest, **kwargs: Any) -> None:
        """``Host`` names the URL's host (the pool's host is the checked IP address)."""
        request.headers["Host"] = urlsplit(str(request.url)).netloc


def checked_session(
    *, plain_http_hosts: frozenset[str] = frozenset(), resolver: Resolver = system_resolver
) -> requests.Session:
    """A session whose every ``http``/``https`` request goes through a :class:`CheckedAdapter`."""
    session = requests.Session()
    adapter = CheckedAdapter(plain_http_hosts=plain_http_hosts, resolver=resolver)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
