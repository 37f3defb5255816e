"""Delta Sharing (the open protocol of delta-io/delta-sharing) for ``dataset`` products.

A contract is a share: the buyer asks for a *recipient profile* — an endpoint and a bearer
token that expires with the contract — and reads the product's tables with any client of
the protocol (pandas, Spark, the official ``delta-sharing`` library). The mapping:

- share = the contract (its id is the share's name); one schema, ``data``;
- one table per asset of the product, served as the buyer's fingerprinted Parquet copy of
  the asset's latest data file; the table's version is that file's version number.

The token is shown once and stored as a prefix (to find the row) and a SHA-256 hash, like
an API key. Issuing a profile again rotates it: the previous token is revoked. Every
protocol request checks the token (known, unrevoked, unexpired) and then asks
``access.usable`` afresh, so a suspension or an expiry refuses the very next request.

This module holds the recipient commands and queries, the token check, and the protocol's
response documents (pure functions: schema strings, NDJSON lines, paging).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal
from databourse.auth.secrets import NewApiKey, same_hash
from databourse.db import new_id, utcnow
from databourse.delivery import access
from databourse.delivery.errors import InvalidShareToken, NotDeliverable
from databourse.delivery.models import Recipient
from databourse.errors import NotFound, ValidationFailed
from databourse.ledger.writer import assert_untampered
from databourse.market import contracts
from databourse.market.models import Contract
from databourse.uow import UnitOfWork

SCHEMA = "data"  # the one schema of every share
TOKEN_PREFIX = "dbs"  # recipient tokens: "dbs_<12 hex>.<43 url-safe chars>"
SHARE_CREDENTIALS_VERSION = 1
DELIVERABLE_KIND = "dataset"
MAX_PAGE = 500  # the most items one page lists, whatever maxResults asks


# Tokens ---------------------------------------------------------------------------------


def new_token() -> NewApiKey:
    """A recipient token: the same material and hashing as an API key, its own prefix."""
    prefix = f"{TOKEN_PREFIX}_{secrets.token_hex(6)}"
    return NewApiKey(prefix, f"{prefix}.{secrets.token_urlsafe(32)}")


def split_token(presented: str) -> str | None:
    """The prefix of a presented recipient token, or None if it is not shaped like one."""
    prefix, sep, rest = presented.partition(".")
    if not sep or not prefix.startswith(TOKEN_PREFIX + "_") or len(prefix) > 24:
        return None
    if len(rest) < 20:
        return None
    return prefix


def iso_z(t: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as profile files carry their expiration time."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def profile_document(endpoint: str, token: str, expires_at: datetime) -> dict[str, Any]:
    """The content of a recipient's profile file (shareCredentialsVersion 1)."""
    return {
        "shareCredentialsVersion": SHARE_CREDENTIALS_VERSION,
        "endpoint": endpoint,
        "bearerToken": token,
        "expirationTime": iso_z(expires_at),
    }


# Recipients -----------------------------------------------------------------------------


def recipient_state(r: Recipient) -> dict[str, Any]:
    """What the ledger commits to for a recipient: every column, the token's hash included
    (so an edited row is found), never the token itself."""
    return {
        "id": r.id,
        "contract_id": r.contract_id,
        "prefix": r.prefix,
        "token_hash": r.token_hash,
        "expires_at": r.expires_at,
        "created_by": r.created_by,
        "revoked_at": r.revoked_at,
        "revoked_by": r.revoked_by,
    }


def status_of(r: Recipient | None, now: datetime | None = None) -> str:
    if r is None:
        return "none"
    if r.revoked_at is not None:
        return "revoked"
    if r.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def _deliverable(c: Contract) -> None:
    if c.product_kind != DELIVERABLE_KIND:
        raise NotDeliverable(
            f"contract {c.id} is on a product of kind {c.product_kind!r}; Delta Sharing "
            "serves dataset products only",
            contract_id=c.id,
        )


def _record(uow: UnitOfWork, kind: str, r: Recipient, c: Contract, **body: Any) -> None:
    uow.session.flush()
    uow.record(
        f"share.{kind}",
        r.id,
        {"contract_id": c.id, "prefix": r.prefix, **body},
        recipient_state(r),
        (c.buyer_org_id, c.merchant_org_id),
    )


def _live(session: Session, contract_id: str) -> list[Recipient]:
    """The contract's unrevoked recipients, locked, in id order."""
    q = (
        select(Recipient)
        .where(Recipient.contract_id == contract_id, Recipient.revoked_at.is_(None))
        .order_by(Recipient.id)
        .with_for_update()
    )
    return list(session.scalars(q))


def _revoke_live(uow: UnitOfWork, principal: Principal, c: Contract, reason: str) -> list[str]:
    now = utcnow()
    revoked = []
    for r in _live(uow.session, c.id):
        assert_untampered(uow, r.id, recipient_state(r))
        r.revoked_at, r.revoked_by = now, principal.ref
        _record(uow, "revoked", r, c, reason=reason)
        revoked.append(r.id)
    return revoked


def grant(uow: UnitOfWork, principal: Principal, contract_id: str) -> tuple[Recipient, str]:
    """Issue the buyer's recipient token for the contract (rotating any previous one);
    returns the recipient and the token, which is never stored nor shown again."""
    c = contracts.load(uow, contract_id)
    contracts.authorize_on(principal, "share.grant", c, side="buyer")
    _deliverable(c)
    access.usable(uow.session, c.id)
    rotated = _revoke_live(uow, principal, c, "rotated")
    material = new_token()
    r = Recipient(
        id=new_id("rcp"),
        contract_id=c.id,
        prefix=material.prefix,
        token_hash=material.secret_hash,
        expires_at=c.ends_at,
        created_by=principal.ref,
        created_at=utcnow(),
    )
    uow.session.add(r)
    _record(uow, "granted", r, c, expires_at=c.ends_at.isoformat(), rotates=rotated)
    return r, material.secret


def revoke(uow: UnitOfWork, principal: Principal, contract_id: str) -> Recipient:
    """Revoke the contract's recipient token: its next request is refused. Revoking a
    profile already revoked changes nothing; a contract never shared is ``NotFound``."""
    c = contracts.load(uow, contract_id)
    contracts.authorize_on(principal, "share.revoke", c)
    _revoke_live(uow, principal, c, "revoked")
    r = latest(uow.session, c.id)
    if r is None:
        raise NotFound(f"no share profile has been issued for contract {c.id}")
    return r


def latest(session: Session, contract_id: str) -> Recipient | None:
    q = (
        select(Recipient)
        .where(Recipient.contract_id == contract_id)
        .order_by(Recipient.created_at.desc(), Recipient.id.desc())
        .limit(1)
    )
    return session.scalar(q)


def current(session: Session, principal: Principal, contract_id: str) -> Recipient | None:
    """The contract's latest recipient (None: never shared), for its parties and staff."""
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    contracts.authorize_on(principal, "share.list", c)
    return latest(session, c.id)


# The recipient's side -------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """An authenticated protocol request: whose token, and what the contract licenses."""

    recipient_id: str
    grant: access.Grant

    @property
    def share(self) -> str:
        return self.grant.contract_id


def authenticate(session: Session, presented: str | None, now: datetime | None = None) -> Reader:
    """The reader behind a bearer token: known, unrevoked and unexpired
    (``InvalidShareToken``), on a contract usable right now (``UsageRefused``)."""
    now = now or utcnow()
    prefix = split_token(presented or "")
    if prefix is None:
        raise InvalidShareToken("present the profile's bearer token: 'Authorization: Bearer …'")
    r = session.scalar(select(Recipient).where(Recipient.prefix == prefix))
    if r is None or not same_hash(r.token_hash, presented or ""):
        raise InvalidShareToken()
    if r.revoked_at is not None:
        raise InvalidShareToken("this share profile has been revoked; ask for a new one")
    if r.expires_at <= now:
        raise InvalidShareToken("this share profile has expired with its contract")
    g = access.usable(session, r.contract_id, now)
    if g.product_kind != DELIVERABLE_KIND:  # pragma: no cover - refused when issued
        raise InvalidShareToken()
    return Reader(r.id, g)


# Protocol documents (pure) --------------------------------------------------------------

_INTEGERS = {8: "byte", 16: "short", 32: "integer", 64: "long"}


def spark_type(t: pa.DataType) -> str:
    """The Delta/Spark primitive type name of an Arrow type."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_signed_integer(t):
        return _INTEGERS[t.bit_width]
    if pa.types.is_unsigned_integer(t):
        return "long" if t.bit_width < 64 else "decimal(20,0)"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    raise ValueError(f"no Delta type for the Arrow type {t}")


def schema_string(schema: pa.Schema) -> str:
    """The table's schema as Delta's ``schemaString``: a Spark StructType in JSON."""
    fields = [
        {"name": f.name, "type": spark_type(f.type), "nullable": f.nullable, "metadata": {}}
        for f in schema
    ]
    return json.dumps(
        {"type": "struct", "fields": fields}, ensure_ascii=False, separators=(",", ":")
    )


def ndjson(*objects: dict[str, Any]) -> bytes:
    return b"".join(
        json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for o in objects
    )


def protocol_line() -> dict[str, Any]:
    return {"protocol": {"minReaderVersion": 1}}


def metadata_line(
    table_id: str, name: str, schema: pa.Schema, version: int, size: int | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": table_id,
        "name": name,
        "format": {"provider": "parquet"},
        "schemaString": schema_string(schema),
        "partitionColumns": [],
        "configuration": {},
        "version": version,
        "numFiles": 1,
    }
    if size is not None:
        meta["size"] = size
    return {"metaData": meta}


def file_line(
    url: str, file_id: str, size: int, rows: int, version: int, expires_at: datetime
) -> dict[str, Any]:
    return {
        "file": {
            "url": url,
            "id": file_id,
            "partitionValues": {},
            "size": size,
            "stats": json.dumps({"numRecords": rows}, separators=(",", ":")),
            "version": version,
            "expirationTimestamp": int(expires_at.timestamp() * 1000),
        }
    }


def page(items: list[dict[str, Any]], max_results: int | None, token: str | None) -> dict[str, Any]:
    """One page of a listing: ``items`` and, when more remain, ``nextPageToken`` (an
    opaque offset). A token this server did not issue is ``ValidationFailed``."""
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValidationFailed("pageToken is not one this server issued") from None
        if start < 0 or start > len(items):
            raise ValidationFailed("pageToken is not one this server issued")
    if max_results is not None and max_results < 0:
        raise ValidationFailed("maxResults must not be negative")
    size = MAX_PAGE if max_results is None else min(max_results, MAX_PAGE)
    end = start + size
    out: dict[str, Any] = {"items": items[start:end]}
    if end < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=")
    return out
