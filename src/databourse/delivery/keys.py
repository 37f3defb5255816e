"""Key material of delivery, derived from the exchange's custody secret (pure).

One secret on disk, many keys: HKDF-SHA256 (RFC 5869) with a distinct ``info`` per use,
so a key that leaks from one use (say, a data file's fingerprint key shown to a court)
reveals nothing about another. Derived keys are never stored (a process memoises them
in memory, next to the root they come from).

- ``fingerprint_key``: per data file; what makes each buyer's copy unique.
- ``seal_text`` / ``unseal_text``: AES-256-GCM for upstream credentials at rest, bound to
  the row they belong to (associated data), so a sealed value moved to another row fails.
- ``sign_link`` / ``read_link``: expiring signed links (HMAC-SHA256), the pre-signed URLs
  of downloads and Delta Sharing files. A link is its own credential, like an object
  store's pre-signed URL, and says only which copy, for which contract, until when.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32


def derive(root: bytes, purpose: str, context: str = "") -> bytes:
    """The key of ``purpose`` (and ``context``) under ``root``. Memoised: the root is the
    process's key material, and deriving is an HKDF per call otherwise."""
    return _derive(root, purpose, context)


@lru_cache(maxsize=1024)
def _derive(root: bytes, purpose: str, context: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=f"databourse/delivery/{purpose}/{context}".encode(),
    ).derive(root)


def fingerprint_key(root: bytes, data_file_id: str) -> bytes:
    return derive(root, "fingerprint", data_file_id)


@lru_cache(maxsize=16)
def _sealer(root: bytes) -> AESGCM:
    return AESGCM(derive(root, "seal"))


def seal_text(root: bytes, bound_to: str, plaintext: str) -> str:
    nonce = os.urandom(12)
    sealed = _sealer(root).encrypt(nonce, plaintext.encode(), bound_to.encode())
    return base64.b64encode(nonce + sealed).decode()


def unseal_text(root: bytes, bound_to: str, sealed: str) -> str:
    raw = base64.b64decode(sealed)
    return _sealer(root).decrypt(raw[:12], raw[12:], bound_to.encode()).decode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(root: bytes, claims: dict[str, Any], expires_at: datetime) -> str:
    """``<claims>.<mac>``, both base64url; the claims carry ``exp`` (Unix seconds)."""
    body = _b64(
        json.dumps(
            {**claims, "exp": int(expires_at.timestamp())}, separators=(",", ":"), sort_keys=True
        ).encode()
    )
    mac = hmac.new(derive(root, "link"), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_link(root: bytes, token: str, now: datetime) -> dict[str, Any] | None:
    """The claims of a link signed by ``sign_link`` that has not expired; else None."""
    body, _, mac = token.partition(".")
    if not body or not mac or len(token) > 2048:
        return None
    expected = hmac.new(derive(root, "link"), body.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
        return None
    if datetime.fromtimestamp(claims["exp"], UTC) <= now:
        return None
    return claims
