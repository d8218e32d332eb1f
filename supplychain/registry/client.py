"""A registry client (OCI distribution API v2) that pulls by digest and verifies every byte.

Every request first checks the registry host against the allowlist (before any network I/O) and
the repository/reference against distribution's grammar. Plain HTTP is used for loopback hosts
(``localhost``, 127.0.0.0/8, ``[::1]``, as Docker does) and for hosts listed as insecure; HTTPS
otherwise. Every connection goes to the address that was checked (see
:mod:`~supplychain.registry.transport`): the host is resolved once, its addresses checked, and the
connection made to that address while ``Host``, TLS SNI and certificate verification keep the name.

Redirects (registries send blob downloads to object storage) are followed by hand for reads, at
most :data:`MAX_REDIRECTS`, only to URLs :func:`check_outbound_url` allows, and only to the same
``host:port``, another allowlisted registry, or a host the operator lists in ``redirect_hosts``
(``SUPPLYCHAIN_REGISTRY_REDIRECT_HOSTS``, e.g. the registry's storage bucket host); anything else
raises :class:`NotAllowedError`. Our ``Authorization`` header goes only to the registry's own
origin. 404 on a manifest or blob raises :class:`NotFoundError`;
:meth:`RegistryClient.try_get_manifest` is the optional look-up. :meth:`RegistryClient.send` is
the one request-and-auth loop, used for writes (signature pushes) too.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from supplychain.mediatypes import ALL_MANIFEST_TYPES
from supplychain.reference import ImageReference, valid_digest, valid_repository, valid_tag
from supplychain.registry.auth import Authenticator, CredentialStore
from supplychain.registry.cache import BlobCache, check_digest
from supplychain.registry.errors import (
    AuthError,
    BlobTooLargeError,
    DigestMismatchError,
    NotAllowedError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
)
from supplychain.registry.network import (
    Resolver,
    check_outbound_url,
    is_loopback_host,
    read_limited,
    system_resolver,
)
from supplychain.registry.transport import checked_session

__all__ = ["Descriptor", "Manifest", "RegistryClient", "check_status"]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BLOB_BYTES = 8 * 1024**3
_CHUNK = 256 * 1024
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Descriptor:
    """What a reference resolves to: the manifest's media type, digest and size."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A fetched manifest: ``data`` are the exact bytes, ``digest`` their SHA-256."""

    media_type: str
    digest: str
    data: bytes


_READS = ("GET", "HEAD")


class _NoNetrc(requests.auth.AuthBase):
    """Keeps requests from adding ``~/.netrc`` credentials (they would follow redirects)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class RegistryClient:
    """Pulls manifests and blobs from allowlisted registries; see the module doc."""

    def __init__(
        self,
        allowed: frozenset[str],
        insecure: frozenset[str],
        cache: BlobCache,
        credentials: CredentialStore | None = None,
        *,
        timeout: float = 30.0,
        max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
        user_agent: str = "supplychain/0.1",
        redirect_hosts: frozenset[str] = frozenset(),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.allowed = frozenset(host.lower() for host in allowed)
        self.insecure = frozenset(host.lower() for host in insecure)
        self.redirect_hosts = frozenset(host.lower() for host in redirect_hosts)
        self.cache = cache
        self.timeout = timeout
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        plain = self.insecure | frozenset(h for h in self.allowed if is_loopback_host(h))
        self.session = checked_session(plain_http_hosts=plain, resolver=resolver)
        self.session.auth = _NoNetrc()
        self.session.headers["User-Agent"] = user_agent
        self.auth = Authenticator(
            self.session, credentials, timeout=timeout, plain_http_hosts=plain
        )

    def close(self) -> None:
        self.session.close()

    # -- public API -------------------------------------------------------------------------

    def resolve(self, ref: ImageReference) -> Descriptor:
        """Media type, digest and size of the manifest ``ref`` names (its digest, if pinned)."""
        manifest = self.get_manifest(ref.registry, ref.repository, ref.reference)
        return Descriptor(manifest.media_type, manifest.digest, len(manifest.data))

    def get_manifest(self, registry: str, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest; raise :class:`NotFoundError` on 404.

        By digest, the bytes must hash to it; a ``Docker-Content-Digest`` header must agree too.
        """
        if not (valid_digest(reference) or valid_tag(reference)):
            raise RegistryError(f"invalid manifest reference {reference[:140]!r}")
        headers = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        where = (
            f"{registry}/{repository}@{reference}"
            if valid_digest(reference)
            else f"{registry}/{repository}:{reference}"
        )
        response = self._get(registry, repository, f"manifests/{reference}", headers)
        with response:
            check_status(response, f"manifest {where}")
            data = read_limited(response, self.max_manifest_bytes, f"manifest {where}")
            content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest", "")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if valid_digest(reference) and digest != reference:
            raise DigestMismatchError(f"manifest {where}: content hashes to {digest}")
        if header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatchError(
                f"manifest {where}: Docker-Content-Digest {header_digest[:80]} != {digest}"
            )
        return Manifest(_media_type(data, content_type), digest, data)

    def try_get_manifest(self, registry: str, repository: str, reference: str) -> Manifest | None:
        """Like :meth:`get_manifest`, but None when there is none (e.g. cosign ``.sig`` tags)."""
        try:
            return self.get_manifest(registry, repository, reference)
        except NotFoundError:
            return None

    def manifest_exists(self, registry: str, repository: str, reference: str) -> bool:
        """True when the registry has a manifest under ``reference`` (one verified GET)."""
        return self.try_get_manifest(registry, repository, reference) is not None

    def get_blob(
        self,
        registry: str,
        repository: str,
        digest: str,
        size: int,
        tee: Callable[[bytes], None] | None = None,
    ) -> Path:
        """The verified blob in the cache, fetched when missing; ``size`` is the descriptor's.

        ``tee`` is handed each downloaded chunk too, in order, before the blob is verified (a
        cache hit hands it nothing): it must trust nothing until this returns."""
        self.base_url(registry)  # the allowlist applies to cache hits too
        check_digest(digest)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError(f"blob {digest}: invalid size {size!r}")
        if size > self.max_blob_bytes:
            raise BlobTooLargeError(
                f"blob {digest} of {size} bytes is over the limit of {self.max_blob_bytes}"
            )
        if self.cache.has(digest):
            path = self.cache.path(digest)
            if path.stat().st_size != size:
                raise DigestMismatchError(
                    f"blob {digest} is {path.stat().st_size} bytes, its descriptor states {size}"
                )
            return path
        where = f"blob {registry}/{repository}@{digest}"
        response = self._get(registry, repository, f"blobs/{digest}", {})
        with response:
            check_status(response, where)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != size:
                raise DigestMismatchError(
                    f"{where}: Content-Length {length}, its descriptor states {size}"
                )
            chunks: Iterable[bytes] = response.iter_content(_CHUNK)
            if tee is not None:
                chunks = _teed(chunks, tee)
            return self.cache.put_stream(digest, chunks, size)

    def head_manifest(self, registry: str, repository: str, reference: str) -> Descriptor:
        """What ``reference`` names now, by one ``HEAD`` (no body is read).

        The digest is the registry's ``Docker-Content-Digest``, unverified: whoever pulls by it
        verifies the bytes. A registry that does not send it is asked with a verified GET.
        """
        if not (valid_digest(reference) or valid_tag(reference)):
            raise RegistryError(f"invalid manifest reference {reference[:140]!r}")
        headers = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        where = f"manifest {registry}/{repository}:{reference}"
        with self.send(
            "HEAD", registry, repository, f"manifests/{reference}", headers=headers
        ) as r:
            check_status(r, where)
            digest = r.headers.get("Docker-Content-Digest", "")
            media_type = r.headers.get("Content-Type", "").split(";", 1)[0].strip()
            length = r.headers.get("Content-Length", "")
        if not valid_digest(digest) or not length.isdigit() or not media_type:
            manifest = self.get_manifest(registry, repository, reference)
            return Descriptor(manifest.media_type, manifest.digest, len(manifest.data))
        if valid_digest(reference) and digest != reference:
            raise DigestMismatchError(f"{where}: Docker-Content-Digest {digest[:80]}")
        return Descriptor(media_type, digest, int(length))

    def list_tags(self, registry: str, repository: str, *, max_pages: int = 100) -> list[str]:
        """All valid tags of ``repository``, every page
        (:func:`~supplychain.registry.listing.list_tag_pages`)."""
        from supplychain.registry.listing import list_tag_pages

        pages = list_tag_pages(self, registry, repository, max_pages=max_pages)
        return [name for page in pages for name in page.names]

    # -- requests ---------------------------------------------------------------------------

    def base_url(self, registry: str) -> str:
        """``http(s)://host`` for ``registry``; refuses hosts outside the allowlist."""
        host = registry.lower()
        if host not in self.allowed:
            raise NotAllowedError(f"registry {registry[:255]!r} is not in the allowlist")
        scheme = "http" if host in self.insecure or is_loopback_host(host) else "https"
        return f"{scheme}://{_API_HOSTS.get(host, host)}"

    def _get(
        self, registry: str, repository: str, path: str, headers: dict[str, str]
    ) -> requests.Response:
        return self.send("GET", registry, repository, path, headers=headers)

    def send(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        """One request to ``/v2/<repository>/<path>`` (or an absolute URL of the same origin).

        Answers one auth challenge (scope ``pull`` for reads, ``pull,push`` otherwise); reads
        follow checked redirects (module doc), writes follow none. The caller closes the response.
        """
        if not valid_repository(repository):
            raise RegistryError(f"invalid repository {repository[:255]!r}")
        actions = "pull" if method in _READS else "pull,push"
        where = path if "://" in path else f"{repository}/{path}"
        return self.request(
            method,
            registry,
            where,
            scope=f"repository:{repository}:{actions}",
            headers=headers,
            data=data,
            what=repository,
        )

    def request(
        self,
        method: str,
        registry: str,
        path: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        what: str | None = None,
    ) -> requests.Response:
        """One request to ``/v2/<path>`` (or an absolute URL of the registry's own origin),
        answering one auth challenge for ``scope`` (e.g. ``registry:catalog:*``); ``what``
        names it in errors (default: the path without its query).

        The caller closes the response. :meth:`send` is this for one repository.
        """
        base = self.base_url(registry)
        url = path if "://" in path else f"{base}/v2/{path}"
        if urlsplit(url)[:2] != urlsplit(base)[:2]:
            raise NotAllowedError(f"registry sent us to another origin: {urlsplit(url).netloc}")
        authorization = self.auth.cached(registry, scope)
        for attempt in range(2):
            response = self._follow(method, url, headers or {}, data, authorization)
            if (
                response.status_code != 401
                or urlsplit(response.url).netloc != urlsplit(base).netloc
            ):
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            if attempt == 1 or not challenge:
                break
            self.auth.forget(registry, scope)
            authorization = self.auth.authorize(registry, scope, challenge)
        named = what or urlsplit(path).path.removeprefix("/v2/")[:255]
        raise AuthError(f"{registry}/{named}: unauthorized")

    def _follow(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        authorization: str | None,
    ) -> requests.Response:
        origin = urlsplit(url)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            here = urlsplit(url)
            if authorization and (here.scheme, here.netloc) == (origin.scheme, origin.netloc):
                sent["Authorization"] = authorization
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=sent,
                    data=data,
                    timeout=self.timeout,
                    stream=True,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise RegistryUnavailableError(
                    f"{method} {here.netloc}{here.path} failed: {type(exc).__name__}"
                ) from None
            location = response.headers.get("Location")
            if method not in _READS or response.status_code not in _REDIRECTS or not location:
                return response
            response.close()
            url = urljoin(url, location)
            self._check_redirect(origin.netloc, url)
            log.debug("following redirect", extra={"host": urlsplit(url).netloc})
        raise RegistryError(f"too many redirects from {origin.netloc}{origin.path}")

    def _check_redirect(self, origin: str, url: str) -> None:
        """A redirect stays on ``origin`` or goes to an allowlisted registry or redirect host."""
        check_outbound_url(url, plain_http_hosts=self.insecure)
        parts = urlsplit(url)
        netloc = parts.netloc.lower()
        default = ":443" if parts.scheme == "https" else ":80"
        names = {netloc, netloc.removesuffix(default)}
        api_hosts = {_API_HOSTS.get(host, host) for host in self.allowed}
        if names & ({origin.lower()} | self.allowed | api_hosts | self.redirect_hosts):
            return
        raise NotAllowedError(
            f"refusing redirect from {origin} to {netloc[:255]}: not an allowlisted registry "
            "or redirect host"
        )


def _teed(chunks: Iterable[bytes], tee: Callable[[bytes], None]) -> Iterator[bytes]:
    for chunk in chunks:
        tee(chunk)
        yield chunk


def check_status(response: requests.Response, what: str) -> None:
    """Raise the error an answer other than 200 means (:mod:`~supplychain.registry.errors`)."""
    status = response.status_code
    if status == 200:
        return
    if status == 404:
        raise NotFoundError(f"{what}: not found")
    if status in (401, 403):
        raise AuthError(f"{what}: access denied (HTTP {status})")
    if status >= 500 or status == 429:
        wait = response.headers.get("Retry-After", "").strip()
        retry_after = float(wait) if wait.isdigit() else None
        raise RegistryUnavailableError(f"{what}: HTTP {status}", retry_after=retry_after)
    raise RegistryError(f"{what}: HTTP {status}")


def _media_type(data: bytes, content_type: str) -> str:
    """The ``mediaType`` the (hashed) document states, else the response's Content-Type."""
    try:
        document = json.loads(data)
    except ValueError:
        raise RegistryError("manifest is not JSON") from None
    stated = document.get("mediaType") if isinstance(document, dict) else None
    return stated if isinstance(stated, str) and stated else content_type
