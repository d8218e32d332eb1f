"""Listing a registry: its repositories (``GET /v2/_catalog``) and a repository's tags
(``GET /v2/<name>/tags/list``), page by page as the OCI distribution spec describes: ``n`` asks
for a page size, and a ``Link: <…>; rel="next"`` header names the next page.

The registry chooses the next page's URL, so it is followed only when it stays on the registry's
own origin (scheme, host and port) and on the same endpoint path; anything else raises
:class:`~supplychain.registry.errors.NotAllowedError` and is never fetched (SSRF). A page URL seen
twice, or more than ``max_pages`` pages, is an error too, not a silent end. Names that do not
match distribution's grammar are skipped and counted, never used.

Every request goes through :meth:`RegistryClient.request` (allowlist, checked addresses, auth)
through a :class:`Pacer`: at most ``rate`` requests a second, and a 429 or 503 answer's
``Retry-After`` (up to ``max_wait`` seconds) honoured by waiting and asking again.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urljoin, urlsplit

from supplychain.reference import valid_repository, valid_tag
from supplychain.registry.client import check_status
from supplychain.registry.errors import NotAllowedError, RegistryError, RegistryUnavailableError
from supplychain.registry.network import read_limited

if TYPE_CHECKING:
    from supplychain.registry.client import RegistryClient

__all__ = ["CATALOG_SCOPE", "Pacer", "Page", "list_repositories", "list_tag_pages"]

CATALOG_SCOPE = "registry:catalog:*"
"""The token scope distribution's catalog asks for."""
MAX_PAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_PAGES = 10_000


@dataclass(frozen=True)
class Page:
    """One page of a listing."""

    names: tuple[str, ...]
    """Repository names or tags that match distribution's grammar, in the registry's order."""
    skipped: int
    """Entries refused: not strings, or not valid names."""


T = TypeVar("T")


class Pacer:
    """Spaces calls to at most ``rate`` a second (0: no limit) and retries an answer that asked
    to be retried later (429/503 with ``Retry-After`` of at most ``max_wait`` s), ``retries``
    times. Waits end early when ``stop`` is set; the call then raises the last error."""

    def __init__(
        self,
        rate: float,
        *,
        retries: int = 2,
        max_wait: float = 60.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.retries = retries
        self.max_wait = max_wait
        self.stop = stop or threading.Event()
        self.calls = 0
        """Calls made (retries included)."""
        self._next = 0.0

    def call(self, request: Callable[[], T]) -> T:
        """``request()`` in its turn, retried as the class doc says."""
        attempt = 0
        while True:
            self._wait(self._next - time.monotonic())
            self._next = max(self._next, time.monotonic()) + self.interval
            self.calls += 1
            try:
                return request()
            except RegistryUnavailableError as exc:
                later = exc.retry_after
                if later is None or later > self.max_wait or attempt >= self.retries:
                    raise
                attempt += 1
                if self._wait(later):
                    raise

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped; True when stopped."""
        return self.stop.wait(seconds) if seconds > 0 else self.stop.is_set()


def list_repositories(
    client: RegistryClient,
    registry: str,
    *,
    page_size: int | None = None,
    pacer: Pacer | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[Page]:
    """The registry's repositories, a page at a time (``n=page_size`` when given; no pacing
    without a ``pacer``)."""
    yield from _pages(
        client, registry, "_catalog", "repositories", CATALOG_SCOPE, valid_repository,
        page_size=page_size, pacer=pacer, max_pages=max_pages,
    )  # fmt: skip


def list_tag_pages(
    client: RegistryClient,
    registry: str,
    repository: str,
    *,
    page_size: int | None = None,
    pacer: Pacer | None = None,
    max_pages: int = DEFAULT_MAX_PAGES,
) -> Iterator[Page]:
    """The tags of ``repository``, a page at a time."""
    if not valid_repository(repository):
        raise RegistryError(f"invalid repository {repository[:255]!r}")
    yield from _pages(
        client, registry, f"{repository}/tags/list", "tags", f"repository:{repository}:pull",
        valid_tag, page_size=page_size, pacer=pacer, max_pages=max_pages,
    )  # fmt: skip


def _pages(
    client: RegistryClient,
    registry: str,
    endpoint: str,
    key: str,
    scope: str,
    valid: Callable[[str], bool],
    *,
    page_size: int | None,
    pacer: Pacer | None,
    max_pages: int,
) -> Iterator[Page]:
    base = client.base_url(registry)
    what = f"{registry}/v2/{endpoint}"
    url: str | None = f"{base}/v2/{endpoint}" + (f"?n={page_size}" if page_size else "")
    seen: set[str] = set()
    pacer = pacer or Pacer(0)

    def fetch(url: str) -> tuple[bytes, str | None]:
        headers = {"Accept": "application/json"}
        with client.request("GET", registry, url, scope=scope, headers=headers, what=what) as r:
            check_status(r, what)
            return read_limited(r, MAX_PAGE_BYTES, what), r.links.get("next", {}).get("url")

    while url is not None:
        if url in seen or len(seen) >= max_pages:
            raise RegistryError(f"{what}: pagination does not end (page {len(seen) + 1})")
        seen.add(url)
        body, link = pacer.call(functools.partial(fetch, url))
        yield _page(body, key, valid, what)
        url = _next_url(base, endpoint, url, link) if link else None


def _page(body: bytes, key: str, valid: Callable[[str], bool], what: str) -> Page:
    try:
        document = json.loads(body)
    except ValueError:
        raise RegistryError(f"{what}: answer is not JSON") from None
    entries = document.get(key) if isinstance(document, dict) else None
    if entries is None:
        entries = []  # distribution answers "tags": null for a repository without tags
    if not isinstance(entries, list):
        raise RegistryError(f"{what}: {key!r} is not a list")
    names = tuple(e for e in entries if isinstance(e, str) and valid(e))
    return Page(names, len(entries) - len(names))


def _origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) with the scheme's default port made explicit."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


def _next_url(base: str, endpoint: str, current: str, link: str) -> str:
    """The next page's absolute URL: only on ``base``'s origin and ``endpoint``'s path."""
    url = urljoin(current, link)
    parts = urlsplit(url)
    if _origin(url) != _origin(base) or parts.username or parts.password:
        raise NotAllowedError(
            f"{urlsplit(base).netloc}: refusing a Link to another origin ({parts.netloc[:255]!a})"
        )
    if parts.path != f"/v2/{endpoint}" or parts.fragment:
        raise NotAllowedError(
            f"{urlsplit(base).netloc}: refusing a Link to another path ({parts.path[:255]!a})"
        )
    return f"{base}{parts.path}" + (f"?{parts.query}" if parts.query else "")
