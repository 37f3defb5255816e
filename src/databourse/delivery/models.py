"""Delivery's tables: API upstreams, buyers' fingerprinted copies, downloads, Delta Sharing
recipients and leak traces. Secrets (upstream credentials, recipient tokens, download
tokens) are stored sealed or hashed, never in the clear."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class Upstream(Base):
    """Where the gateway forwards an ``api`` product's calls, and what it may return."""

    __tablename__ = "api_upstreams"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(500))
    auth_header: Mapped[str | None] = mapped_column(String(100))
    auth_secret_sealed: Mapped[str | None] = mapped_column(Text)  # base64, AES-256-GCM
    allowed_paths: Mapped[list[str]] = mapped_column(JSON)  # "/score", "/v1/*"
    methods: Mapped[list[str]] = mapped_column(JSON)
    response_fields: Mapped[list[str] | None] = mapped_column(JSON)  # None: every field
    timeout_ms: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ledger_subject(self) -> str:
        return f"upstream:{self.product_id}"


class FingerprintScheme(Base):
    """The merchant's declared fingerprint scheme of an asset's data: which columns
    identify rows, which carry marks and how far their values may move."""

    __tablename__ = "fingerprint_schemes"

    asset_id: Mapped[str] = mapped_column(ForeignKey("data_assets.id"), primary_key=True)
    scheme: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ledger_subject(self) -> str:
        return f"fingerprint:{self.asset_id}"


class Copy(Base):
    """A buyer's fingerprinted copy of one version of a data file (Parquet, typed)."""

    __tablename__ = "dataset_copies"
    __table_args__ = (UniqueConstraint("contract_id", "data_file_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    data_file_id: Mapped[str] = mapped_column(ForeignKey("data_files.id"), index=True)
    scheme: Mapped[dict[str, Any]] = mapped_column(JSON)
    object_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Download(Base):
    """One signed link to a buyer's copy: a download the buyer asked for (counted against
    the policy's ``max_downloads``), or a file of a Delta Sharing query. Its rows are
    metered once, at the first fetch; its bytes at every fetch."""

    __tablename__ = "downloads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    copy_id: Mapped[str] = mapped_column(ForeignKey("dataset_copies.id"))
    path: Mapped[str] = mapped_column(String(10), index=True)  # download | share
    format: Mapped[str] = mapped_column(String(10))  # csv | parquet
    issued_by: Mapped[str] = mapped_column(String(80))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetches: Mapped[int] = mapped_column(Integer, default=0)


class Recipient(Base):
    """A Delta Sharing recipient: one bearer token per contract, expiring with it."""

    __tablename__ = "share_recipients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(24), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(80))


class Trace(Base):
    """A leak trace: a suspected file checked against every buyer's copy of a data file."""

    __tablename__ = "leak_traces"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    data_file_id: Mapped[str] = mapped_column(ForeignKey("data_files.id"))
    requested_by: Mapped[str] = mapped_column(String(80))
    requested_org_id: Mapped[str] = mapped_column(String(40))
    suspect_sha256: Mapped[str] = mapped_column(String(64))
    suspect_rows: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    accused: Mapped[list[str]] = mapped_column(JSON)  # contract ids
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
