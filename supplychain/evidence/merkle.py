"""RFC 6962 / RFC 9162 Merkle tree hashing, roots and inclusion proofs (SHA-256).

Written out here rather than taken from a library: the whole of it is the two hash prefixes, a
streaming root over leaf hashes and the proof walk of RFC 9162 section 2.1.3, and a verifier of
proofs must not need the service's dependencies. Tested against the vectors of the transparency-dev
``merkle`` repository (``tests/data/rfc6962_vectors.json``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "RootBuilder",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "tree_root",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: SHA-256 of nothing."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class RootBuilder:
    """The root of a growing tree from its leaf hashes, in O(log n) memory.

    Keeps the roots of the perfect subtrees the leaves so far split into (largest first); the
    tree's root folds them right to left, which is RFC 6962's split at the largest power of two.
    """

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, subtree root)

    def add(self, hashed: bytes) -> None:
        """Append one leaf hash."""
        height, node = 0, hashed
        while self._stack and self._stack[-1][0] == height:
            node = node_hash(self._stack.pop()[1], node)
            height += 1
        self._stack.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        """The root of the leaves added so far."""
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def tree_root(hashes: Iterable[bytes]) -> bytes:
    """The root over ``hashes`` (leaf hashes, in order)."""
    builder = RootBuilder()
    for hashed in hashes:
        builder.add(hashed)
    return builder.root()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 ``PATH(index, D[n])`` over the leaf hashes ``hashes``, leaf to root."""
    if not 0 <= index < len(hashes):
        raise ValueError(f"leaf {index} is not in a tree of {len(hashes)}")
    path: list[bytes] = []
    lo, hi = 0, len(hashes)
    siblings: list[bytes] = []
    while hi - lo > 1:  # walk down, remembering the sibling subtree at each level
        k = _split(hi - lo)
        if index - lo < k:
            siblings.append(tree_root(hashes[lo + k : hi]))
            hi = lo + k
        else:
            siblings.append(tree_root(hashes[lo : lo + k]))
            lo += k
    path.extend(reversed(siblings))
    return path


def root_from_inclusion_proof(
    index: int, size: int, hashed: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root ``proof`` leads to from leaf ``index`` of a tree of ``size`` (RFC 9162 2.1.3.2).

    Raises ValueError when the proof cannot be one for that position (wrong length or size).
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    if len(hashed) != 32 or any(len(p) != 32 for p in proof):
        raise ValueError("hashes are 32 bytes")
    fn, sn, node = index, size - 1, hashed
    for sibling in proof:
        if sn == 0:
            raise ValueError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the tree is deep")
    return node
