"""Canonical JSON (RFC 8785) and the state hashes the ledger commits to. No I/O."""

from __future__ import annotations

import hashlib
import json
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


_SAFE_INT = 2**53  # beyond this, JCS serialises through IEEE 754 doubles


def _simple(value: Any) -> bool:
    """Whether ``json.dumps(sort_keys=True)`` already gives the RFC 8785 bytes.

    It does for strings, booleans, null, integers below 2**53 in magnitude, and arrays and
    objects of those, provided no string holds a lone surrogate and no key a character
    outside the Basic Multilingual Plane (JCS sorts keys by UTF-16 code units, Python by
    code points: the two orders differ only there). Both escape the same characters (the
    quote, the backslash and controls, with the same short forms). Anything else — floats
    above all — goes through the ``rfc8785`` library.
    """
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if not v.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                return False
        elif isinstance(v, bool) or v is None or isinstance(v, datetime):
            continue
        elif isinstance(v, int):
            if not -_SAFE_INT < v < _SAFE_INT:
                return False
        elif isinstance(v, dict):
            for k in v:
                if not isinstance(k, str) or (
                    not k.isascii()
                    and any(ord(c) > 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF for c in k)
                ):
                    return False
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
        else:
            return False
    return True


def canonical(value: Any) -> bytes:
    """RFC 8785 JSON Canonicalization Scheme bytes of a JSON-like value.

    The ledger canonicalises every entry and state, so the common case (no floats, see
    ``_simple``) takes the standard library's C encoder, about ten times faster than the
    pure-Python ``rfc8785``; the two agree byte for byte there (a property test holds them
    to it).
    """
    if _simple(value):
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_iso
        )
        return text.encode("utf-8")
    return rfc8785.dumps(_plain(value))


def _iso(value: Any) -> str:
    """Datetimes as the ledger writes them (UTC, ``Z``), as ``_plain`` does."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def state_hash(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical state: what the ledger commits to."""
    return hashlib.sha256(canonical(state)).hexdigest()
