"""Authentication between the exchange and compute nodes, both ways (pure).

The exchange signs every request it sends a node with its Ed25519 node-signing key; the
node signs every answer with its own key, bound to the request's nonce. Each side knows
the other's public key in advance (the node from its configuration, the exchange from
the node's registration), so neither a stranger's request nor a replayed or substituted
answer is accepted. What is signed:

    request:  "databourse-node-request-v2" ⏎ node's public key ⏎ METHOD ⏎ path?query ⏎
              unix time ⏎ nonce ⏎ SHA-256(body)
    response: "databourse-node-response-v1" ⏎ nonce ⏎ status ⏎ SHA-256(body)

A request names the node it is for (its public key): a node refuses one meant for another
node, so a node that receives a signed request cannot replay it to a third node.

A request older or newer than ``MAX_SKEW`` seconds is refused; a node remembers the
nonces it has seen within that window, so a captured request cannot be sent again.

HTTP Message Signatures (RFC 9421) would do the same with more ceremony; no maintained
Python library implements it with Ed25519 on both client and server, and the few lines
here sign exactly the parts that matter.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from threading import Lock

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MAX_SKEW = 300  # seconds
TIME, NONCE, SIGNATURE = "X-Node-Time", "X-Node-Nonce", "X-Node-Signature"


class NodeAuthFailed(Exception):
    """A signature is missing, malformed, stale, replayed or wrong."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise NodeAuthFailed("not base64url") from exc


def private_key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_text(key: Ed25519PrivateKey) -> str:
    return b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key(text: str) -> Ed25519PublicKey:
    raw = unb64(text)
    if len(raw) != 32:
        raise NodeAuthFailed("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _request_text(
    audience: str, method: str, target: str, at: int, nonce: str, body: bytes
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    parts = ("databourse-node-request-v2", audience, method.upper(), target, str(at), nonce)
    return "\n".join((*parts, digest)).encode()


def _response_text(nonce: str, status: int, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join(("databourse-node-response-v1", nonce, str(status), digest)).encode()


def sign_request(
    key: Ed25519PrivateKey,
    audience: str,
    method: str,
    target: str,
    body: bytes,
    at: int | None = None,
) -> dict[str, str]:
    """Headers that authenticate a request to ``target`` (path and query) of the node whose
    public key is ``audience``."""
    at = int(time.time()) if at is None else at
    nonce = secrets.token_urlsafe(18)
    sig = key.sign(_request_text(audience, method, target, at, nonce, body))
    return {TIME: str(at), NONCE: nonce, SIGNATURE: b64(sig)}


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise NodeAuthFailed(f"the {name} header is missing")
    return value


def verify_request(
    key: Ed25519PublicKey,
    audience: str,
    method: str,
    target: str,
    body: bytes,
    headers: Mapping[str, str],
    now: float | None = None,
) -> str:
    """The request's nonce if its signature is the holder of ``key``'s, it is fresh and it
    is meant for the node whose public key is ``audience``."""
    at_text, nonce = _header(headers, TIME), _header(headers, NONCE)
    sig = unb64(_header(headers, SIGNATURE))
    try:
        at = int(at_text)
    except ValueError as exc:
        raise NodeAuthFailed("the time is not an integer") from exc
    now = time.time() if now is None else now
    if abs(now - at) > MAX_SKEW:
        raise NodeAuthFailed("the request is too old or from the future")
    if not 16 <= len(nonce) <= 64:
        raise NodeAuthFailed("the nonce is malformed")
    try:
        key.verify(sig, _request_text(audience, method, target, at, nonce, body))
    except InvalidSignature as exc:
        raise NodeAuthFailed("the signature does not match") from exc
    return nonce


def sign_response(key: Ed25519PrivateKey, nonce: str, status: int, body: bytes) -> str:
    return b64(key.sign(_response_text(nonce, status, body)))


def verify_response(
    key: Ed25519PublicKey, nonce: str, status: int, body: bytes, signature: str | None
) -> None:
    if not signature:
        raise NodeAuthFailed("the node's answer is not signed")
    try:
        key.verify(unb64(signature), _response_text(nonce, status, body))
    except InvalidSignature as exc:
        raise NodeAuthFailed("the node's answer is not signed by the registered node") from exc


class Nonces:
    """The nonces seen within the skew window: a second use is a replay."""

    def __init__(self, limit: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = Lock()
        self._limit = limit

    def first_use(self, nonce: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now - 2 * MAX_SKEW
                or len(self._seen) >= self._limit
            ):
                self._seen.popitem(last=False)
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


def has_signature(headers: Mapping[str, str]) -> bool:
    """Whether the headers carry a signature at all (checked before a body is read)."""
    return all(headers.get(h) or headers.get(h.lower()) for h in (TIME, NONCE, SIGNATURE))
