"""Idempotent commands: a retry with the same ``Idempotency-Key`` gets the first result.

The key's record is inserted in the same transaction as the command's effect, under a
unique constraint on (owner, key). Two concurrent requests with one key therefore produce
one effect: on PostgreSQL the second insert waits for the first transaction and then fails
on the constraint; on SQLite writers are serialised. The loser replays the winner's result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from databourse.db import Base, UTCDateTime, utcnow
from databourse.errors import DataBourseError, ValidationFailed
from databourse.hashing import canonical


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class IdempotencyKeyReused(ValidationFailed):
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyRequired(DataBourseError):
    slug = "idempotency-key-required"
    status = 428
    title = "Commands that move money need an Idempotency-Key header"


class InvalidIdempotencyKey(ValidationFailed):
    slug = "invalid-idempotency-key"
    title = "The Idempotency-Key header must be 1-255 visible ASCII characters"


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: Any


def check_key(key: str) -> str:
    if not (1 <= len(key) <= 255) or not all(33 <= ord(c) <= 126 for c in key):
        raise InvalidIdempotencyKey()
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    return hashlib.sha256(canonical({"m": method, "p": path, "b": body})).hexdigest()


def find(
    session: Session, owner: str, key: str, req_hash: str, ttl: timedelta = timedelta(hours=24)
) -> Replay | None:
    """The stored result for this key, if any; a key older than ``ttl`` is forgotten."""
    rec = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.owner == owner, IdempotencyRecord.key == key
        )
    )
    if rec is None:
        return None
    if rec.created_at < utcnow() - ttl:
        session.delete(rec)
        session.flush()
        return None
    if rec.request_hash != req_hash:
        raise IdempotencyKeyReused()
    return Replay(rec.status_code, json.loads(rec.response))


def reserve(session: Session, owner: str, key: str, req_hash: str) -> IdempotencyRecord:
    rec = IdempotencyRecord(owner=owner, key=key, request_hash=req_hash)
    session.add(rec)
    session.flush()  # takes the unique-constraint lock now, before the command's work
    return rec


def complete(rec: IdempotencyRecord, status_code: int, body: Any) -> None:
    rec.status_code = status_code
    rec.response = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
