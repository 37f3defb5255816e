"""Compute's tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class PrivacyBudget(Base):
    """A contract's privacy budget for one privacy unit (the entity whose contribution
    the noise protects, e.g. ``customer_id``), in integer units (``compute.budget``)."""

    __tablename__ = "privacy_budgets"

    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    privacy_unit: Mapped[str] = mapped_column(String(200), primary_key=True)
    epsilon_micro: Mapped[int] = mapped_column(BigInteger)
    delta_pico: Mapped[int] = mapped_column(BigInteger)
    spent_epsilon_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_delta_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ledger_subject(self) -> str:
        return f"budget:{self.contract_id}:{self.privacy_unit}"
