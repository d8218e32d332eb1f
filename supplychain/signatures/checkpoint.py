"""Transparency-log checkpoints as signed notes (C2SP ``tlog-checkpoint`` and ``signed-note``).

A checkpoint's text is three lines: the log's origin, the tree size in decimal and the base64
root hash. The signed note appends a blank line and one line per signature,
``— <key name> <base64(key ID || signature)>``. Key IDs follow ``signed-note``: for Ed25519
(type ``0x01``) the first four bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``; for ECDSA
(type ``0x02``, as transparency-dev/witness implements it) the first four bytes of the SHA-256 of
the DER SubjectPublicKeyInfo, the signature being ASN.1 DER over SHA-256 of the note text. The
key name is the origin. Only these two key types can sign a note; RSA cannot.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from supplychain.signatures.keys import PublicKey, verify_bytes
from supplychain.signatures.signer import Signer, SignerError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "note_key_id",
    "parse_checkpoint",
    "sign_checkpoint",
    "sign_note",
]

DASH = "\u2014"
ORIGIN = re.compile(r"[^\s\u2014][^\s]{0,254}")
SIGNATURE_LINE = re.compile(rf"{DASH} (\S+) ([A-Za-z0-9+/=]+)")
MAX_NOTE = 64 * 1024


class CheckpointError(Exception):
    """A checkpoint could not be made, read or verified."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head."""

    origin: str
    """The log's unique name (also the signing key's name)."""
    size: int
    """How many leaves the tree has."""
    root: bytes
    """The RFC 6962 root hash of those leaves."""
    note: str
    """The whole signed note, as stored and exported."""

    @property
    def text(self) -> str:
        """The signed text: origin, size and root lines."""
        return body(self.origin, self.size, self.root)


def body(origin: str, size: int, root: bytes) -> str:
    """The checkpoint text (what is signed)."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def _type_and_key(key: PublicKey) -> tuple[int, bytes]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return 0x01, raw
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return 0x02, der
    raise CheckpointError("a checkpoint is signed with an Ed25519 or ECDSA P-256 key")


def note_key_id(name: str, key: PublicKey) -> bytes:
    """The 4-byte signed-note key ID of ``key`` under ``name``."""
    kind, encoded = _type_and_key(key)
    if kind == 0x01:
        return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + encoded).digest()[:4]
    return hashlib.sha256(encoded).digest()[:4]


def sign_note(text: str, name: str, signer: Signer) -> str:
    """The signed note of ``text`` (ending in a newline) signed by ``signer`` as key ``name``."""
    key_id = note_key_id(name, signer.public_key)
    try:
        signature = signer.sign(text.encode())
    except SignerError as exc:
        raise CheckpointError(f"could not sign the note: {exc}") from None
    line = base64.b64encode(key_id + signature).decode()
    return f"{text}\n{DASH} {name} {line}\n"


def sign_checkpoint(origin: str, size: int, root: bytes, signer: Signer) -> Checkpoint:
    """Sign a checkpoint of ``size`` leaves with root ``root``."""
    if ORIGIN.fullmatch(origin) is None:
        raise CheckpointError("the origin is one word of printable characters (a URL-like name)")
    return Checkpoint(origin, size, root, sign_note(body(origin, size, root), origin, signer))


def parse_checkpoint(note: str, key: PublicKey, origin: str | None = None) -> Checkpoint:
    """Read ``note`` and check its signature by ``key``; CheckpointError unless it verifies.

    Signatures by other keys are ignored (signed-note); one by this key must verify.
    """
    if len(note) > MAX_NOTE or not note.endswith("\n"):
        raise CheckpointError("not a signed note (too long or no final newline)")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("a signed note has no control characters but newlines")
    text, sep, signatures = note.rpartition("\n\n")
    if not sep:
        raise CheckpointError("no blank line before the signatures")
    text += "\n"
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has an origin, a size and a root line")
    name, size_line, root_line = lines[0], lines[1], lines[2]
    if origin is not None and name != origin:
        raise CheckpointError(f"the checkpoint is of log {name!r}, not {origin!r}")
    if re.fullmatch(r"0|[1-9][0-9]{0,19}", size_line) is None:
        raise CheckpointError("the tree size is not a decimal number")
    try:
        root = base64.b64decode(root_line, validate=True)
    except binascii.Error:
        raise CheckpointError("the root hash is not base64") from None
    if len(root) != 32:
        raise CheckpointError("the root hash is not 32 bytes")
    wanted = note_key_id(name, key)
    verified = False
    for line in signatures.split("\n")[:-1]:
        match = SIGNATURE_LINE.fullmatch(line)
        if match is None:
            raise CheckpointError("a signature line is malformed")
        try:
            blob = base64.b64decode(match.group(2), validate=True)
        except binascii.Error:
            raise CheckpointError("a signature is not base64") from None
        if match.group(1) != name or blob[:4] != wanted:
            continue  # another key's signature
        if not verify_bytes(key, blob[4:], text.encode()):
            raise CheckpointError("the checkpoint's signature does not verify with the key")
        verified = True
    if not verified:
        raise CheckpointError("the checkpoint carries no signature by this key")
    return Checkpoint(name, int(size_line), root, note)
