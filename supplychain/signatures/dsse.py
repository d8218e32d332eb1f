"""DSSE envelopes (secure-systems-lab/dsse ``envelope.md``, ``protocol.md``).

A signature covers the pre-authentication encoding (PAE) of the payload and its type, never the
JSON around it: ``"DSSEv1" SP len(type) SP type SP len(body) SP body`` with lengths in ASCII
decimal. The envelope is ``{"payload": b64, "payloadType": str, "signatures": [{"keyid", "sig"}]}``
(standard base64; URL-safe is accepted when reading, as the spec asks).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from supplychain.signatures.keys import PublicKey, verify_bytes
from supplychain.signatures.signer import Signer

__all__ = ["DsseError", "Envelope", "VerifiedEnvelope", "pae", "sign_envelope", "verify_envelope"]

MAX_ENVELOPE = 16 * 1024 * 1024
MAX_SIGNATURES = 16


class DsseError(Exception):
    """An envelope is malformed or no signature on it verifies."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of ``payload`` of type ``payload_type``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope."""

    payload_type: str
    """``payloadType``, e.g. ``application/vnd.in-toto+json``."""
    payload: bytes
    """The decoded payload: the exact bytes that were signed."""
    signatures: tuple[tuple[str, bytes], ...]
    """``(keyid, signature)`` pairs, as stated (the keyid is only a hint)."""

    def to_json(self) -> bytes:
        """The envelope as JSON (standard base64, as cosign writes it)."""
        return json.dumps(
            {
                "payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode(),
                "signatures": [
                    {"keyid": keyid, "sig": base64.b64encode(sig).decode()}
                    for keyid, sig in self.signatures
                ],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | Mapping[str, object]) -> Envelope:
        """Parse an envelope (bytes, or an already parsed mapping such as a bundle's)."""
        if isinstance(data, bytes | bytearray):
            if len(data) > MAX_ENVELOPE:
                raise DsseError("envelope too large")
            try:
                data = json.loads(data)
            except ValueError:
                raise DsseError("envelope is not JSON") from None
        if not isinstance(data, Mapping):
            raise DsseError("envelope is not a JSON object")
        payload_type, payload, signatures = (
            data.get("payloadType"),
            data.get("payload"),
            data.get("signatures"),
        )
        if not isinstance(payload_type, str) or not isinstance(payload, str):
            raise DsseError("envelope lacks payloadType or payload")
        if not isinstance(signatures, list) or not 0 < len(signatures) <= MAX_SIGNATURES:
            raise DsseError("envelope has no (or too many) signatures")
        pairs: list[tuple[str, bytes]] = []
        for entry in signatures:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("sig"), str):
                raise DsseError("envelope signature entry lacks sig")
            keyid = entry.get("keyid")
            pairs.append((keyid if isinstance(keyid, str) else "", _b64(entry["sig"])))
        return cls(payload_type, _b64(payload), tuple(pairs))


@dataclass(frozen=True)
class VerifiedEnvelope:
    """What a verified envelope says, and who signed it."""

    payload_type: str
    """``payloadType`` (covered by the signature)."""
    payload: bytes
    """The signed payload."""
    signer: str
    """Key id of the trusted key that verified a signature."""


def sign_envelope(signer: Signer, payload_type: str, payload: bytes) -> Envelope:
    """An envelope over ``payload`` signed by ``signer``."""
    signature = signer.sign(pae(payload_type, payload))
    return Envelope(payload_type, payload, ((signer.key_id, signature),))


def verify_envelope(envelope: Envelope, keys: Mapping[str, PublicKey]) -> VerifiedEnvelope:
    """Check ``envelope`` against trusted ``keys`` (key id → key); raise :class:`DsseError`.

    Every key is tried against every signature: keyids are unauthenticated hints.
    """
    message = pae(envelope.payload_type, envelope.payload)
    for _, signature in envelope.signatures:
        for key_id, key in keys.items():
            if verify_bytes(key, signature, message):
                return VerifiedEnvelope(envelope.payload_type, envelope.payload, key_id)
    raise DsseError("no signature verifies with a trusted key")


def _b64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise DsseError("invalid base64 in envelope") from None
