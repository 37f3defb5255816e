"""Canonical JSON (RFC 8785) and the state hashes the ledger commits to. No I/O."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import rfc8785


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical(value: Any) -> bytes:
    """RFC 8785 JSON Canonicalization Scheme bytes of a JSON-like value."""
    return rfc8785.dumps(_plain(value))


def state_hash(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical state: what the ledger commits to."""
    return hashlib.sha256(canonical(state)).hexdigest()
