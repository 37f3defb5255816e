"""Password hashing, bearer tokens and API-key material. No I/O.

Passwords: argon2id (argon2-cffi defaults, RFC 9106 second recommended option).
API keys and session tokens: 256-bit random secrets, so a fast SHA-256 is a sufficient
stored hash (no dictionary to attack) and keeps per-request verification cheap.
Bearer tokens: short-lived HS256 JWTs signed with the exchange's token secret, so any
process of the exchange can verify them without a database round trip.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# A real hash verified against when the user does not exist, so login time does not
# reveal which e-mail addresses have accounts.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

API_KEY_PREFIX = "dbk"
TOKEN_ISSUER = "databourse"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewApiKey:
    prefix: str  # "dbk_" + 8 hex: shown in listings, used to find the row
    secret: str  # the whole key, shown once: "<prefix>.<43 url-safe chars>"

    @property
    def secret_hash(self) -> str:
        return sha256_hex(self.secret)


def new_api_key() -> NewApiKey:
    prefix = f"{API_KEY_PREFIX}_{secrets.token_hex(4)}"
    return NewApiKey(prefix, f"{prefix}.{secrets.token_urlsafe(32)}")


def split_api_key(presented: str) -> str | None:
    """The prefix of a presented key, or None if it is not shaped like one of ours."""
    prefix, sep, rest = presented.partition(".")
    if not sep or not prefix.startswith(API_KEY_PREFIX + "_") or len(rest) < 20:
        return None
    return prefix


def same_hash(stored_hex: str, presented: str) -> bool:
    return hmac.compare_digest(stored_hex, sha256_hex(presented))


def mint_access_token(secret: bytes, user_id: str, now: datetime, ttl: timedelta) -> str:
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": user_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_access_token(secret: bytes, token: str) -> str | None:
    """The user id of a valid, unexpired token, else None."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=TOKEN_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None
