"""Tables of the ledger: entries, the stored Merkle nodes, the head, checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class LedgerEntry(Base):
    """One leaf of the log. ``entry`` holds the exact RFC 8785 bytes that were hashed."""

    __tablename__ = "ledger_entries"
    # A subject's latest entry is found by an index seek on (subject, seq).
    __table_args__ = (Index("ix_ledger_entries_subject_seq", "subject", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(80))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    state_hash: Mapped[str | None] = mapped_column(String(64))
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)


class LedgerEntryParty(Base):
    """The organisations party to an entry: who may read its body and download receipts."""

    __tablename__ = "ledger_entry_parties"

    seq: Mapped[int] = mapped_column(ForeignKey("ledger_entries.seq"), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class LedgerNode(Base):
    """A perfect-subtree hash: (level, index) covers leaves [index·2^level, (index+1)·2^level)."""

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerHead(Base):
    """The single row every writer locks: the log's size and root after the last append."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The right-edge perfect-subtree hashes (merkle.Frontier.to_bytes): appends need nothing else.
    frontier: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Checkpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note), kept for history."""

    __tablename__ = "ledger_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(BigInteger, unique=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Witness(Base):
    """A party that cosigns checkpoints after checking consistency (C2SP tlog-witness).

    ``last_size``/``last_root`` are what it last cosigned: the next request must prove
    consistency from exactly there.
    """

    __tablename__ = "ledger_witnesses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    verifier_key: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    last_size: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Cosignature(Base):
    __tablename__ = "ledger_cosignatures"
    __table_args__ = (UniqueConstraint("checkpoint_id", "witness_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("ledger_checkpoints.id"), index=True)
    witness_id: Mapped[str] = mapped_column(ForeignKey("ledger_witnesses.id"))
    line: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerAlert(Base):
    """Evidence that the log misbehaved, e.g. a split view: two signed roots for one size."""

    __tablename__ = "ledger_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    size: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
