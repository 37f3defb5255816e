"""Tables of the catalog domain: data products (数据产品) and the assets they are built from."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class ProductStatus(StrEnum):
    draft = "draft"
    in_review = "in_review"
    listed = "listed"
    rejected = "rejected"
    delisted = "delisted"
    suspended = "suspended"


#: States in which the merchant may still edit the product.
EDITABLE = frozenset({ProductStatus.draft, ProductStatus.rejected, ProductStatus.delisted})


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(String(200))
    # The product description (数据产品说明书): content, fields, coverage, frequency, ...
    description: Mapped[dict[str, Any]] = mapped_column(JSON)
    industry: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON)
    language: Mapped[str] = mapped_column(String(8))
    sample: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # columns, masked rows
    plans: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)  # the default usage policy
    min_price_fen: Mapped[int] = mapped_column(BigInteger)
    max_price_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    version: Mapped[int] = mapped_column(Integer, default=1)  # +1 each time it is listed anew
    status: Mapped[str] = mapped_column(String(20), index=True)
    checklist: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # last review's
    reviewed_by: Mapped[str | None] = mapped_column(String(80))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    listed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProductAsset(Base):
    """An asset a product is built from; for datasets, the asset whose file is delivered."""

    __tablename__ = "product_assets"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(
        ForeignKey("data_assets.id"), primary_key=True, index=True
    )
