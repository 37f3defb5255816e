"""Tables of the market: signing keys, negotiations and offers, contracts and their
signatures, auctions and bids."""

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
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from databourse.db import Base, UTCDateTime, utcnow


class SigningKey(Base):
    """An organisation's Ed25519 contract-signing key. Custodial keys are generated and
    held by the exchange (the private key encrypted at rest); an organisation may instead
    register its own public key and sign client-side."""

    __tablename__ = "signing_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # sgk_<first 16 hex of key>
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(64))  # base64 of the 32 raw bytes
    custodial: Mapped[bool] = mapped_column(Boolean)
    private_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # AES-GCM nonce‖ct
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NegotiationStatus(StrEnum):
    open = "open"
    agreed = "agreed"
    withdrawn = "withdrawn"
    expired = "expired"


class Negotiation(Base):
    __tablename__ = "negotiations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    merchant_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    demand_id: Mapped[str | None] = mapped_column(String(40))
    purpose: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12), index=True)
    contract_id: Mapped[str | None] = mapped_column(String(40))
    closed_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OfferStatus(StrEnum):
    open = "open"
    countered = "countered"
    accepted = "accepted"
    withdrawn = "withdrawn"
    expired = "expired"


class Offer(Base):
    """One side's proposed terms; a counter-offer supersedes the open one."""

    __tablename__ = "offers"
    __table_args__ = (UniqueConstraint("negotiation_id", "seq"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    negotiation_id: Mapped[str] = mapped_column(ForeignKey("negotiations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(10))  # buyer | merchant
    plan: Mapped[str] = mapped_column(String(100))  # the listing's plan the terms build on
    price_fen: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int | None] = mapped_column(BigInteger)  # units of a package plan
    term_days: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    billing: Mapped[str | None] = mapped_column(String(12))  # a metered plan's: prepaid | invoice
    message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContractStatus(StrEnum):
    awaiting_signatures = "awaiting_signatures"
    signed = "signed"  # both signed; waiting for payment (or for its start)
    active = "active"
    expired = "expired"
    terminated = "terminated"
    suspended = "suspended"
    void = "void"  # never signed by both before it lapsed


class PaymentStatus(StrEnum):
    none = "none"  # free, or billed by use (metered)
    unpaid = "unpaid"
    held = "held"  # in escrow, awaiting delivery
    delivered = "delivered"  # in escrow, the acceptance window is running
    released = "released"  # settled to the merchant
    refunded = "refunded"
    frozen = "frozen"  # disputed: held until the operator resolves it
    resolved = "resolved"  # split by the operator


class Contract(Base):
    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    product_version: Mapped[int] = mapped_column(Integer)
    product_kind: Mapped[str] = mapped_column(String(16))
    buyer_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    merchant_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    agent_org_id: Mapped[str | None] = mapped_column(String(40), index=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    billing: Mapped[str] = mapped_column(String(12))  # upfront | prepaid | invoice | none
    price_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fee_bp: Mapped[int] = mapped_column(Integer)
    fee_min_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    commission_bp: Mapped[int] = mapped_column(Integer)
    commission_fen: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String(40))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sign_by: Mapped[datetime] = mapped_column(UTCDateTime)
    acceptance_days: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)  # the canonical JSON both parties sign
    document_hash: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    payment_status: Mapped[str] = mapped_column(String(12), index=True)
    suspended_from: Mapped[str | None] = mapped_column(String(20))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accept_by: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    billed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escrow_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    negotiation_id: Mapped[str | None] = mapped_column(String(40))
    auction_id: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Signature(Base):
    __tablename__ = "contract_signatures"

    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    side: Mapped[str] = mapped_column(String(10), primary_key=True)  # buyer | merchant
    org_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(ForeignKey("signing_keys.id"))
    signature: Mapped[str] = mapped_column(String(100))  # base64 of the 64-byte signature
    custodial: Mapped[bool] = mapped_column(Boolean)
    signed_by: Mapped[str] = mapped_column(String(80))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuctionStatus(StrEnum):
    bidding = "bidding"
    revealing = "revealing"
    closed = "closed"  # a winner, and a contract drafted at the second price
    failed = "failed"  # no valid bid at or above the reserve


class Auction(Base):
    """A sealed-bid second-price (Vickrey) auction of an exclusive licence."""

    __tablename__ = "auctions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    merchant_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    plan: Mapped[str] = mapped_column(String(100))
    reserve_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    term_days: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str | None] = mapped_column(String(40))
    bids_close_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reveals_close_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), index=True)
    winner_org_id: Mapped[str | None] = mapped_column(String(40))
    price_fen: Mapped[int | None] = mapped_column(BigInteger)
    contract_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Bid(Base):
    __tablename__ = "bids"
    __table_args__ = (UniqueConstraint("auction_id", "bidder_org_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    auction_id: Mapped[str] = mapped_column(ForeignKey("auctions.id"), index=True)
    bidder_org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    purpose: Mapped[str] = mapped_column(String(40))
    commitment: Mapped[str] = mapped_column(String(64))  # SHA-256 hex, see auction.py
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    revealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
