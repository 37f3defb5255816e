"""Tables of settlement: accounts, journals and their postings, deposits and withdrawals,
the fee schedule, participant tiers, agency contracts, commissions, usage and invoices."""

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

EXCHANGE = "exchange"  # the owner of the exchange's own accounts


class AccountKind(StrEnum):
    # an organisation's
    available = "available"  # money it may spend or withdraw
    escrow = "escrow"  # paid for contracts not yet settled (held until delivery is accepted)
    receivable = "receivable"  # invoiced to buyers, not yet paid
    payable = "payable"  # invoices it owes (negative while unpaid)
    withdrawing = "withdrawing"  # requested withdrawals awaiting the rail's confirmation
    # the exchange's
    fee_revenue = "fee_revenue"
    commission_payable = "commission_payable"  # owed to agents, paid out by the operator
    tax_payable = "tax_payable"
    # a payment rail's: money outside the exchange (negative by what came in)
    clearing = "clearing"


#: Kinds whose balance may go below zero: they mirror money owed or held outside.
MAY_BE_NEGATIVE = frozenset({AccountKind.payable, AccountKind.clearing})
ORG_KINDS = (
    AccountKind.available,
    AccountKind.escrow,
    AccountKind.receivable,
    AccountKind.payable,
    AccountKind.withdrawing,
)
EXCHANGE_KINDS = (
    AccountKind.fee_revenue,
    AccountKind.commission_payable,
    AccountKind.tax_payable,
)


class Account(Base):
    """A signed balance. Every journal's postings sum to zero, so all balances do too."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("owner", "kind", "currency"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(60), index=True)  # org id, "exchange", "rail:…"
    kind: Mapped[str] = mapped_column(String(24))
    currency: Mapped[str] = mapped_column(String(3))
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Journal(Base):
    """One balanced movement of money, filed on the ledger with its postings."""

    __tablename__ = "journals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    ref: Mapped[str | None] = mapped_column(String(40), index=True)  # contract, deposit, …
    currency: Mapped[str] = mapped_column(String(3))
    memo: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Posting(Base):
    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    journal_id: Mapped[str] = mapped_column(ForeignKey("journals.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger)


class TransferStatus(StrEnum):
    requested = "requested"
    confirmed = "confirmed"
    rejected = "rejected"


class Transfer(Base):
    """A deposit into or a withdrawal out of the exchange through a payment rail."""

    __tablename__ = "transfers"
    # one payment on a rail confirms one transfer, even with two operators at once
    __table_args__ = (UniqueConstraint("rail", "rail_ref"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    direction: Mapped[str] = mapped_column(String(12))  # deposit | withdrawal
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    rail: Mapped[str] = mapped_column(String(32))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # the payer's or payee's bank reference, as given (never a full account number in logs)
    reference: Mapped[str] = mapped_column(String(200))
    rail_ref: Mapped[str | None] = mapped_column(String(200))  # the rail's confirmation
    status: Mapped[str] = mapped_column(String(12), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FeeRule(Base):
    """The exchange fee for one product kind and participant tier (the merchant's)."""

    __tablename__ = "fee_rules"

    product_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    tier: Mapped[str] = mapped_column(String(24), primary_key=True)
    rate_bp: Mapped[int] = mapped_column(Integer)
    min_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ParticipantTier(Base):
    __tablename__ = "participant_tiers"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    tier: Mapped[str] = mapped_column(String(24))
    updated_by: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AgencyStatus(StrEnum):
    submitted = "submitted"
    certified = "certified"
    rejected = "rejected"
    revoked = "revoked"


class AgencyContract(Base):
    """An agent's contract with its principal (a merchant), certified by the exchange: the
    agent earns ``commission_bp`` of the price of the principal's trades it covers."""

    __tablename__ = "agency_contracts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    principal_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    product_id: Mapped[str | None] = mapped_column(String(40))  # None: every product
    commission_bp: Mapped[int] = mapped_column(Integer)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), index=True)
    document_hash: Mapped[str] = mapped_column(String(64))  # the signed paper contract's hash
    decided_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Commission(Base):
    """A commission earned on a settlement, owed to the agent until paid out."""

    __tablename__ = "commissions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    contract_id: Mapped[str] = mapped_column(String(40), index=True)
    journal_id: Mapped[str] = mapped_column(ForeignKey("journals.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payout_journal_id: Mapped[str | None] = mapped_column(ForeignKey("journals.id"), index=True)


class UsageRecord(Base):
    """Metered use of a contract, produced by a delivery path (gateway, downloads, sharing,
    compute). ``(source, key)`` is unique: a redelivered batch is counted once."""

    __tablename__ = "usage_records"
    __table_args__ = (UniqueConstraint("source", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contract_id: Mapped[str] = mapped_column(String(40), index=True)
    metric: Mapped[str] = mapped_column(String(16))  # call | row | gb | byte | epsilon_micro
    quantity: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    source: Mapped[str] = mapped_column(String(60))
    key: Mapped[str] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # only "ok" is billed
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BillStatus(StrEnum):
    charged = "charged"  # taken from the prepaid balance
    invoiced = "invoiced"  # an invoice awaits payment
    paid = "paid"  # the invoice was paid
    nothing = "nothing"  # no billable use in the period


class Bill(Base):
    """One billing period of a metered contract."""

    __tablename__ = "bills"
    __table_args__ = (UniqueConstraint("contract_id", "period_start"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(String(40), index=True)
    buyer_org_id: Mapped[str] = mapped_column(String(40), index=True)
    merchant_org_id: Mapped[str] = mapped_column(String(40), index=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    unit: Mapped[str] = mapped_column(String(16))
    units: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    commission_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12), index=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    journal_id: Mapped[str | None] = mapped_column(String(40))
    paid_journal_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
