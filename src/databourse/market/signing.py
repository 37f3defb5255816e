"""Contract documents and their Ed25519 signatures. Pure: no I/O.

A contract is the RFC 8785 canonical JSON of its terms; its hash is SHA-256 of those bytes,
and each party signs the bytes themselves with Ed25519 (RFC 8032). Anyone holding the
document and the two public keys can check a contract offline (``verify_contract``).

Custodial keys (held by the exchange for organisations that do not sign client-side) are
sealed with AES-256-GCM under a key derived from the exchange's custody secret, with the
key id as associated data so a sealed key cannot be swapped onto another row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from databourse.hashing import canonical

DOCUMENT_TYPE = "databourse-contract/1"
SIDES = ("buyer", "merchant")


def document_bytes(document: dict[str, Any]) -> bytes:
    return canonical(document)


def document_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(document_bytes(document)).hexdigest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc
    if len(raw) != size:
        raise ValueError(f"{what} must be {size} bytes, not {len(raw)}")
    return raw


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return b64(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def key_id(public_key: str) -> str:
    """A key's id: its fingerprint, so the same key always has the same id."""
    raw = unb64(public_key, 32, "the public key")
    return "sgk_" + hashlib.sha256(raw).hexdigest()[:20]


def sign(key: Ed25519PrivateKey, document: dict[str, Any]) -> str:
    return b64(key.sign(document_bytes(document)))


def verify(public_key: str, document: dict[str, Any], signature: str) -> bool:
    """Whether ``signature`` (base64) is the key's Ed25519 signature of the document."""
    try:
        pub = Ed25519PublicKey.from_public_bytes(unb64(public_key, 32, "the public key"))
        pub.verify(unb64(signature, 64, "the signature"), document_bytes(document))
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class SignatureCheck:
    side: str
    key_id: str
    valid: bool


def verify_contract(
    document: dict[str, Any], signatures: dict[str, tuple[str, str]]
) -> list[SignatureCheck]:
    """Check each side's (public key, signature); a contract is binding when both hold."""
    return [
        SignatureCheck(side, key_id(pk), verify(pk, document, sig))
        for side, (pk, sig) in sorted(signatures.items())
    ]


def _sealing_key(secret: bytes) -> AESGCM:
    derived = HKDF(SHA256(), 32, salt=None, info=b"databourse custody v1").derive(secret)
    return AESGCM(derived)


def seal(secret: bytes, kid: str, key: Ed25519PrivateKey) -> bytes:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    nonce = os.urandom(12)
    return nonce + _sealing_key(secret).encrypt(nonce, raw, kid.encode())


def unseal(secret: bytes, kid: str, sealed: bytes) -> Ed25519PrivateKey:
    raw = _sealing_key(secret).decrypt(sealed[:12], sealed[12:], kid.encode())
    return Ed25519PrivateKey.from_private_bytes(raw)


class ContractReceiptError(ValueError):
    """The contract receipt does not verify; the message says which step failed."""


def verify_filing(receipt: dict[str, Any], log_key: Any) -> dict[str, Any]:
    """Check a contract receipt offline: the ledger receipt (entry in a checkpoint signed
    by the exchange), that the filed entry is this contract's filing with this document's
    hash, and both parties' Ed25519 signatures over the document. Returns the document.
    A malformed receipt fails like a forged one, with ``ContractReceiptError``.
    """
    try:
        return _verify_filing(receipt, log_key)
    except ContractReceiptError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ContractReceiptError(f"the receipt is malformed: {exc!r}") from exc


def _verify_filing(receipt: dict[str, Any], log_key: Any) -> dict[str, Any]:
    from databourse.ledger import receipts

    try:
        verified = receipts.verify(receipt, log_key)
    except receipts.ReceiptError as exc:
        raise ContractReceiptError(f"ledger receipt: {exc}") from exc
    contract = receipt.get("contract")
    if not isinstance(contract, dict) or not isinstance(contract.get("document"), str):
        raise ContractReceiptError("the receipt carries no contract document")
    raw = contract["document"].encode()
    digest = hashlib.sha256(raw).hexdigest()
    entry = verified.entry
    body = entry.get("body") or {}
    if entry.get("kind") != "contract.filed":
        raise ContractReceiptError(f"the entry is a {entry.get('kind')}, not a contract filing")
    if body.get("document_hash") != digest:
        raise ContractReceiptError("the filed hash is not the hash of this document")
    document = json.loads(raw)
    if not isinstance(document, dict) or document_bytes(document) != raw:
        raise ContractReceiptError("the document is not in canonical form (RFC 8785)")
    if entry.get("subject") != document.get("id"):
        raise ContractReceiptError("the filing is of another contract")
    filed = {s["side"]: s for s in body.get("signatures", [])}
    given = {s["side"]: s for s in contract.get("signatures", [])}
    for side in SIDES:
        s, f = given.get(side), filed.get(side)
        if s is None or f is None:
            raise ContractReceiptError(f"the {side}'s signature is missing")
        if key_id(s["public_key"]) != s["key_id"] or s["key_id"] != f["key_id"]:
            raise ContractReceiptError(f"the {side}'s key is not the one filed")
        if s["signature"] != f["signature"] or not verify(
            s["public_key"], document, s["signature"]
        ):
            raise ContractReceiptError(f"the {side}'s signature does not verify")
    return dict(document)
