"""RFC 6962 hashing and inclusion proofs against published vectors; signed-note checkpoints."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from supplychain.evidence.merkle import (
    EMPTY_ROOT,
    RootBuilder,
    inclusion_proof,
    leaf_hash,
    root_from_inclusion_proof,
    tree_root,
)
from supplychain.signatures.checkpoint import (
    CheckpointError,
    note_key_id,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
)
from supplychain.signatures.signer import KeyFileSigner

VECTORS = json.loads((Path(__file__).parent / "data" / "rfc6962_vectors.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaf_inputs"]]
HASHES = [leaf_hash(x) for x in LEAVES]


def test_leaf_hashes_and_roots_of_every_size_match_the_vectors() -> None:
    assert [h.hex() for h in HASHES] == VECTORS["leaf_hashes"]
    assert EMPTY_ROOT.hex() == VECTORS["roots"][0]
    for size, expected in enumerate(VECTORS["roots"]):
        assert tree_root(HASHES[:size]).hex() == expected, size
    builder = RootBuilder()  # the streaming root passes through every prefix's root
    for size, hashed in enumerate(HASHES, start=1):
        builder.add(hashed)
        assert builder.root().hex() == VECTORS["roots"][size]


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['index']}/{v['size']}"
)
def test_inclusion_proofs_match_the_vectors_and_verify(vector: dict[str, object]) -> None:
    index, size = int(str(vector["index"])), int(str(vector["size"]))
    expected = [bytes.fromhex(str(p)) for p in vector["proof"]]  # type: ignore[attr-defined]
    assert inclusion_proof(HASHES[:size], index) == expected
    root = bytes.fromhex(VECTORS["roots"][size])
    assert root_from_inclusion_proof(index, size, HASHES[index], expected) == root


def _corruptions(
    index: int, size: int, proof: list[bytes]
) -> list[tuple[int, int, bytes, list[bytes]]]:
    """Wrong index, size, leaf, proof element, length (as transparency-dev's verifier tests)."""
    leaf = HASHES[index]
    cases = [
        (index + 1, size, leaf, proof),
        (index ^ 2, size, leaf, proof),
        (index, size * 2, leaf, proof),
        (index, size, leaf_hash(b"WrongLeaf"), proof),
        (index, size, leaf, [*proof, EMPTY_ROOT]),
        (index, size, leaf, [EMPTY_ROOT, *proof]),
    ]
    if index > 0:
        cases.append((index - 1, size, leaf, proof))
    if size > 1:
        cases.append((index, size // 2, leaf, proof))
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        cases.append((index, size, leaf, flipped))
    if proof:
        cases.append((index, size, leaf, proof[:-1]))
    return cases


@pytest.mark.parametrize("size", range(1, 9))
def test_every_proof_verifies_and_every_corruption_fails(size: int) -> None:
    root = tree_root(HASHES[:size])
    for index in range(size):
        proof = inclusion_proof(HASHES[:size], index)
        assert root_from_inclusion_proof(index, size, HASHES[index], proof) == root
        for i, n, leaf, bad in _corruptions(index, size, proof):
            try:
                got = root_from_inclusion_proof(i, n, leaf, bad)
            except ValueError:
                continue
            assert got != root, (index, size, i, n)


def _flip(b64: str, at: int) -> str:
    blob = bytearray(base64.b64decode(b64))
    blob[at] ^= 1
    return base64.b64encode(bytes(blob)).decode()


def _ed25519() -> KeyFileSigner:
    return KeyFileSigner(ed25519.Ed25519PrivateKey.generate())


def test_ed25519_key_id_is_the_signed_note_one() -> None:
    signer = _ed25519()
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    expected = hashlib.sha256(b"example.test/log\n\x01" + raw).digest()[:4]
    assert note_key_id("example.test/log", signer.public_key) == expected


def test_ecdsa_key_id_is_the_truncated_spki_hash() -> None:
    signer = KeyFileSigner(ec.generate_private_key(ec.SECP256R1()))
    der = signer.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert note_key_id("any", signer.public_key) == hashlib.sha256(der).digest()[:4]


@pytest.mark.parametrize(
    "make", [_ed25519, lambda: KeyFileSigner(ec.generate_private_key(ec.SECP256R1()))]
)
def test_checkpoint_is_a_signed_note_and_any_change_fails(make: object) -> None:
    signer = make()  # type: ignore[operator]
    root = tree_root(HASHES)
    signed = sign_checkpoint("example.test/log", 8, root, signer)
    text, _, signature = signed.note.partition("\n\n")
    assert text.split("\n") == ["example.test/log", "8", base64.b64encode(root).decode()]
    assert signature.startswith("\u2014 example.test/log ") and signature.endswith("\n")
    assert parse_checkpoint(signed.note, signer.public_key).root == root
    tampered = [
        signed.note.replace("\n8\n", "\n9\n"),
        signed.note.replace("example.test/log\n", "other.test/log\n", 1),
        signed.note.replace(base64.b64encode(root).decode(), base64.b64encode(EMPTY_ROOT).decode()),
        f"{text}\n\n\u2014 example.test/log {_flip(signature.split()[-1], 10)}\n",
        f"{text}\n\n\u2014 example.test/log {_flip(signature.split()[-1], 1)}\n",  # key id
    ]
    for note in tampered:
        with pytest.raises(CheckpointError):
            parse_checkpoint(note, signer.public_key)
    with pytest.raises(CheckpointError, match="no signature by this key"):
        parse_checkpoint(signed.note, _ed25519().public_key)
    with pytest.raises(CheckpointError, match="not 'other"):
        parse_checkpoint(signed.note, signer.public_key, "other.test/log")


def test_signed_note_matches_go_sumdb_note_vector() -> None:
    """The key ID and signature line of golang.org/x/mod's own signed-note test."""
    vector = json.loads((Path(__file__).parent / "data" / "signed_note_vectors.json").read_text())
    seed = base64.b64decode(vector["private"])
    assert seed[0] == 1
    signer = KeyFileSigner(ed25519.Ed25519PrivateKey.from_private_bytes(seed[1:]))
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(b"\x01" + raw).decode() == vector["public"]
    assert note_key_id(vector["name"], signer.public_key).hex() == vector["key_hash"]
    assert sign_note(vector["text"], vector["name"], signer) == vector["signed"]


def test_keys_a_signed_note_cannot_carry_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_signer = KeyFileSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(CheckpointError, match="Ed25519 or ECDSA P-256"):
        sign_checkpoint("example.test/log", 0, EMPTY_ROOT, rsa_signer)
    p384 = KeyFileSigner(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(CheckpointError, match="Ed25519 or ECDSA P-256"):
        sign_checkpoint("example.test/log", 0, EMPTY_ROOT, p384)
