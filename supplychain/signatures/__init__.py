"""Signing and signature verification: cosign-compatible signatures, DSSE attestations, keys.

Public API: keys (:func:`generate_key`, :func:`load_private_key`, :func:`load_public_key`,
:func:`encrypt_private_key`), signers (:class:`KeyFileSigner`, :class:`VaultTransitSigner`,
:class:`KeylessSigner`), issuing (:func:`sign_image`, :func:`attest_image`).
The pipeline's verifier is :mod:`supplychain.stages.verifier`.
"""

from __future__ import annotations

from supplychain.signatures.cosign import MODES, StorageMode, attest_image, sign_image
from supplychain.signatures.keys import (
    KeyFileError,
    encrypt_private_key,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
)
from supplychain.signatures.signer import (
    KeyFileSigner,
    KeylessSigner,
    Signer,
    SignerError,
    VaultTransitSigner,
)

__all__ = [
    "MODES",
    "KeyFileError",
    "KeyFileSigner",
    "KeylessSigner",
    "Signer",
    "SignerError",
    "StorageMode",
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
