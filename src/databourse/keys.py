"""The exchange's own key material, generated on first start and kept in files (mode 0600).

Nothing here ever logs or returns a private value to a caller outside the process.
Two processes starting at once race safely: the file is created with O_EXCL and the
loser reads the winner's key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _create_exclusive(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The exchange's Ed25519 key (PKCS#8 PEM), created if absent."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _create_exclusive(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path.name} does not hold an Ed25519 private key")
    return loaded


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_secret(path: Path) -> bytes:
    """A 32-byte random secret (hex in the file), created if absent."""
    if not path.exists():
        _create_exclusive(path, secrets.token_hex(32).encode())
    return bytes.fromhex(path.read_text().strip())
