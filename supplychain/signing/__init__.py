"""Signing and signature verification: cosign-compatible signatures, DSSE attestations, keys.

Public API: keys (:func:`generate_key`, :func:`load_private_key`, :func:`load_public_key`,
:func:`encrypt_private_key`), signers (:class:`KeyFileSigner`, :class:`VaultTransitSigner`,
:class:`KeylessSigner`), issuing (:func:`sign_image`, :func:`attest_image`) and the pipeline's
:class:`SignatureVerifier` with its :class:`TrustPolicy`.
"""

from __future__ import annotations

from supplychain.signing.cosign import MODES, StorageMode, attest_image, sign_image
from supplychain.signing.keys import (
    KeyFileError,
    encrypt_private_key,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
)
from supplychain.signing.signer import (
    KeyFileSigner,
    KeylessSigner,
    Signer,
    SignerError,
    VaultTransitSigner,
)
from supplychain.signing.verifier import SignatureVerifier, TrustPolicy

__all__ = [
    "MODES",
    "KeyFileError",
    "KeyFileSigner",
    "KeylessSigner",
    "SignatureVerifier",
    "Signer",
    "SignerError",
    "StorageMode",
    "TrustPolicy",
    "VaultTransitSigner",
    "attest_image",
    "encrypt_private_key",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_pem",
    "sign_image",
]
