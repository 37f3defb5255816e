"""Tables of the demands domain: buyers' demands and the match notices sent to both sides."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class DemandStatus(StrEnum):
    open = "open"
    closed = "closed"  # the buyer found what it needed
    withdrawn = "withdrawn"


class Demand(Base):
    __tablename__ = "demands"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    need: Mapped[str] = mapped_column(Text)
    scenario: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(40))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    industry: Mapped[str | None] = mapped_column(String(32))
    budget_max_fen: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    term_days: Mapped[int | None] = mapped_column(Integer)
    required_fields: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MatchNotice(Base):
    """A match told to one side: a product to the demand's buyer, a demand to the merchant."""

    __tablename__ = "match_notices"
    __table_args__ = (UniqueConstraint("org_id", "demand_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    demand_id: Mapped[str] = mapped_column(ForeignKey("demands.id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    side: Mapped[str] = mapped_column(String(16))  # "buyer" | "merchant": who is told
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
