"""Tables of the assets domain: data assets (数据资产) and the immutable versions of their files."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class AssetStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    registered = "registered"
    rejected = "rejected"
    amended = "amended"  # registered, then changed by its holder (a new certificate is issued)
    cancelled = "cancelled"
    disputed = "disputed"  # ownership contested: frozen until the operator resolves it


#: States in which an asset counts as registered: products may be built from it.
REGISTERED = frozenset({AssetStatus.registered, AssetStatus.amended})


class Grade(StrEnum):
    """GB/T 43697-2024 levels (DSL art. 21)."""

    core = "core"
    important = "important"
    general = "general"


class SourceKind(StrEnum):
    self_generated = "self_generated"
    collected_with_consent = "collected_with_consent"
    purchased = "purchased"
    public_authorised = "public_authorised"  # public data under authorised operation


class RightKind(StrEnum):
    """The three separable rights of the 数据二十条."""

    holding = "holding"  # 数据资源持有权
    processing = "processing"  # 数据加工使用权
    operation = "operation"  # 数据产品经营权


class DataAsset(Base):
    __tablename__ = "data_assets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    industry: Mapped[str] = mapped_column(String(32))
    source: Mapped[dict[str, Any]] = mapped_column(JSON)  # the source declaration
    rights: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # one grant per right
    grade: Mapped[str] = mapped_column(String(16))
    sub_grade: Mapped[int | None] = mapped_column(Integer)
    personal_info: Mapped[bool] = mapped_column(Boolean, default=False)
    sensitive_personal_info: Mapped[bool] = mapped_column(Boolean, default=False)
    pi_consent_basis: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    frozen_from: Mapped[str | None] = mapped_column(String(20))  # the status a dispute froze
    reviewed_by: Mapped[str | None] = mapped_column(String(80))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, default=1)  # +1 per amendment
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DataFile(Base):
    """One immutable version of an asset's data file, with its content commitment."""

    __tablename__ = "data_files"
    __table_args__ = (UniqueConstraint("asset_id", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("data_assets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    encoding: Mapped[str | None] = mapped_column(String(16))
    object_key: Mapped[str] = mapped_column(String(300))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    row_count: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    chunk_rows: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    chunk_root: Mapped[str] = mapped_column(String(64))
    sample: Mapped[list[list[str | None]]] = mapped_column(JSON)  # first rows, unmasked
    uploaded_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
