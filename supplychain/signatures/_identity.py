"""Signer identity checks, following cosign's ``--certificate-*`` flags.

A Fulcio certificate names the signer in its Subject Alternative Name (an e-mail address, a URI
such as a CI workflow, or Sigstore's ``OtherName`` username) and the OIDC issuer that vouched
for it in extension 1.3.6.1.4.1.57264.1.8 (DER UTF8String) or, on older certificates,
1.3.6.1.4.1.57264.1.1.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier
from sigstore.errors import VerificationError

_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
_OTHERNAME_USERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


@dataclass(frozen=True)
class IdentityPolicy:
    """Who must have signed, like cosign's ``--certificate-identity(-regexp)`` and
    ``--certificate-oidc-issuer(-regexp)``.

    At least one of ``identity``/``identity_regexp`` and one of ``issuer``/``issuer_regexp``
    is required (else ``ValueError``, as for a malformed regular expression). Regular
    expressions must match the whole value (``re.fullmatch``), which is stricter than
    cosign's unanchored Go ``regexp.MatchString``: a pattern cannot be satisfied by a longer,
    attacker-chosen identity.
    """

    identity: str | None = None
    """Exact expected SAN (e-mail, URI or Sigstore username)."""
    identity_regexp: str | None = None
    """Regular expression the SAN must fully match."""
    issuer: str | None = None
    """Exact expected OIDC issuer URL."""
    issuer_regexp: str | None = None
    """Regular expression the OIDC issuer must fully match."""

    def __post_init__(self) -> None:
        if self.identity is None and self.identity_regexp is None:
            raise ValueError("IdentityPolicy needs identity or identity_regexp")
        if self.issuer is None and self.issuer_regexp is None:
            raise ValueError("IdentityPolicy needs issuer or issuer_regexp")
        for pattern in (self.identity_regexp, self.issuer_regexp):
            try:
                re.compile(pattern or "")
            except re.error as exc:
                raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc

    @classmethod
    def from_flags(
        cls,
        identity: str | None,
        identity_regexp: str | None,
        issuer: str | None,
        issuer_regexp: str | None,
    ) -> tuple[IdentityPolicy, ...]:
        """The policy cosign's four flags describe; none when no identity is given."""
        if not identity and not identity_regexp:
            return ()
        return (
            cls(identity or None, identity_regexp or None, issuer or None, issuer_regexp or None),
        )


def _der_utf8(value: bytes) -> str | None:
    """Decode a DER UTF8String (tag 0x0C, short or long definite length)."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if len(value) != offset + length:
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def certificate_issuer(cert: x509.Certificate) -> str | None:
    """The OIDC issuer recorded in a Fulcio certificate, or None."""
    try:
        ext = cert.extensions.get_extension_for_oid(_ISSUER_V2).value
        if isinstance(ext, x509.UnrecognizedExtension):
            return _der_utf8(ext.value)
    except x509.ExtensionNotFound:
        pass
    try:
        ext = cert.extensions.get_extension_for_oid(_ISSUER_V1).value
    except x509.ExtensionNotFound:
        return None
    if isinstance(ext, x509.UnrecognizedExtension):
        try:
            return ext.value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def certificate_identities(cert: x509.Certificate) -> list[str]:
    """All signer identities in the certificate's SAN (e-mails, URIs, Sigstore usernames)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.get_values_for_type(x509.RFC822Name))
    names += san.get_values_for_type(x509.UniformResourceIdentifier)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _OTHERNAME_USERNAME:
            decoded = _der_utf8(other.value)
            if decoded is not None:
                names.append(decoded)
    return names


def _matches(value: str, exact: str | None, pattern: str | None) -> bool:
    if exact is not None and not hmac.compare_digest(value.encode(), exact.encode()):
        return False
    return pattern is None or re.fullmatch(pattern, value) is not None


class CertificateIdentityPolicy:
    """A sigstore-python ``VerificationPolicy`` enforcing an :class:`IdentityPolicy`."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self._policy = policy

    def verify(self, cert: x509.Certificate) -> None:
        """Raise ``VerificationError`` unless the certificate's issuer and identity match."""
        signer_identity(cert, self._policy)


def signer_identity(cert: x509.Certificate, policy: IdentityPolicy) -> str:
    """Return ``"identity (issuer)"`` when the certificate matches, else raise.

    Raises ``sigstore.errors.VerificationError`` naming what did not match.
    """
    issuer = certificate_issuer(cert)
    if issuer is None:
        raise VerificationError("certificate has no OIDC issuer extension")
    if not _matches(issuer, policy.issuer, policy.issuer_regexp):
        raise VerificationError(f"issuer mismatch: certificate issuer is {issuer!r}")
    identities = certificate_identities(cert)
    for identity in identities:
        if _matches(identity, policy.identity, policy.identity_regexp):
            return f"{identity} ({issuer})"
    raise VerificationError(f"identity mismatch: certificate identities are {identities!r}")
