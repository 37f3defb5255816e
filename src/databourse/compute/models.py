"""Compute's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
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


class Node(Base):
    """A compute node registered by an organisation: a process next to its data that runs
    only the jobs the exchange authorises. The exchange knows its address and its Ed25519
    public key (its requests to the node are signed with the exchange's key, the node's
    answers with the node's), never its data."""

    __tablename__ = "compute_nodes"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(500))
    public_key: Mapped[str] = mapped_column(String(64))  # Ed25519, base64url, no padding
    datasets: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> columns, as declared
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | revoked
    registered_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ComputeService(Base):
    """What a ``compute`` product runs and where: the merchant's node, the kind of
    computation (``sql``, ``psi``, ``fl``) and its declaration — for SQL the schema with
    public bounds and categories the buyer sees instead of rows."""

    __tablename__ = "compute_services"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    # None: the exchange's embedded node, over the data files the exchange hosts
    node_id: Mapped[str | None] = mapped_column(ForeignKey("compute_nodes.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ledger_subject(self) -> str:
        return f"compute:{self.product_id}"


class Job(Base):
    """One computation a buyer asked for under a contract, through its lifecycle
    ``submitted → authorised → running → succeeded | failed | cancelled`` (or ``refused``
    at submission). The result kept is the permitted output only; its SHA-256 is on the
    ledger."""

    __tablename__ = "compute_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    epsilon_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_note: Mapped[str | None] = mapped_column(String(300))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    problem: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # why refused or failed
    submitted_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
