"""Request and response models of the market."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from databourse.catalog.policy import PurposeName, UsagePolicy
from databourse.catalog.pricing import MAX_FEN, Fen, Units
from databourse.schemas import Out, Strict

Id = Annotated[str, Field(min_length=1, max_length=40)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
Billing = Literal["prepaid", "invoice"]


class Terms(Strict):
    """Terms a party proposes, built on one of the listing's plans.

    ``price_fen``: the price of the licence (per period for a subscription); omitted, the
    plan's price. ``quantity``: units of a package. ``policy``: the usage policy, which may
    only narrow the listing's; omitted, the listing's. ``billing`` applies to metered plans.
    """

    plan: Annotated[str, Field(min_length=1, max_length=100)]
    price_fen: Fen | None = None
    quantity: Units | None = None
    term_days: Annotated[int, Field(gt=0, le=36_500)] | None = None
    policy: UsagePolicy | None = None
    billing: Billing | None = None
    message: Annotated[str | None, Field(max_length=2000)] = None
    expires_in_hours: Annotated[int, Field(ge=1, le=720)] | None = None


class NegotiationIn(Strict):
    product_id: Id
    purpose: PurposeName
    demand_id: Id | None = None
    offer: Terms


class ContractIn(Strict):
    """Buy at the listing's terms: fixed, subscription, package, metered or free plans."""

    product_id: Id
    purpose: PurposeName
    plan: Annotated[str, Field(min_length=1, max_length=100)]
    quantity: Units | None = None
    term_days: Annotated[int, Field(gt=0, le=36_500)] | None = None
    policy: UsagePolicy | None = None
    billing: Billing | None = None


class SigningKeyIn(Strict):
    public_key: Annotated[str, Field(min_length=40, max_length=64, description="base64, 32 bytes")]


class SignatureIn(Strict):
    key_id: Id
    signature: Annotated[str, Field(min_length=80, max_length=100, description="base64")]


class ReasonIn(Strict):
    reason: Reason


class OptionalReasonIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class ResolveIn(Strict):
    to_merchant_fen: Annotated[int, Field(ge=0, le=MAX_FEN)]
    reason: Reason


class UsageRecordIn(Strict):
    metric: Literal["call", "row", "gb", "byte", "epsilon_micro"]
    quantity: Annotated[int, Field(ge=0, le=10**15)]
    at: Annotated[datetime, Field(strict=False)]
    key: Annotated[str, Field(min_length=1, max_length=120)]
    outcome: Literal["ok", "refused", "upstream_error"] = "ok"


class UsageIn(Strict):
    source: Annotated[str, Field(min_length=1, max_length=60)]
    records: Annotated[list[UsageRecordIn], Field(min_length=1, max_length=10_000)]


class AuctionIn(Strict):
    product_id: Id
    plan: Annotated[str, Field(min_length=1, max_length=100)]
    term_days: Annotated[int, Field(gt=0, le=36_500)]


class BidIn(Strict):
    purpose: PurposeName
    commitment: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RevealIn(Strict):
    amount_fen: Annotated[int, Field(ge=0, le=MAX_FEN)]
    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{32,128}$")]


class SigningKeyOut(Out):
    id: str
    org_id: str
    public_key: str
    custodial: bool
    active: bool
    created_at: datetime


class OfferOut(Out):
    id: str
    seq: int
    side: str
    plan: str
    price_fen: int
    quantity: int | None
    term_days: int
    policy: dict[str, Any]
    billing: str | None = None
    message: str | None
    status: str
    expires_at: datetime
    created_at: datetime


class NegotiationOut(Out):
    id: str
    product_id: str
    buyer_org_id: str
    merchant_org_id: str
    demand_id: str | None
    purpose: str
    status: str
    contract_id: str | None
    created_at: datetime
    updated_at: datetime
    offers: list[OfferOut] = Field(default_factory=list)


class SignatureOut(Out):
    side: str
    org_id: str
    key_id: str
    signature: str
    custodial: bool
    signed_at: datetime


class ContractOut(Out):
    id: str
    product_id: str
    product_version: int
    product_kind: str
    buyer_org_id: str
    merchant_org_id: str
    agent_org_id: str | None
    plan: dict[str, Any]
    billing: str
    price_fen: int
    currency: str
    fee_fen: int
    commission_fen: int
    purpose: str
    policy: dict[str, Any]
    starts_at: datetime
    ends_at: datetime
    sign_by: datetime
    status: str
    payment_status: str
    escrow_fen: int
    delivered_at: datetime | None
    accept_by: datetime | None
    document_hash: str
    negotiation_id: str | None
    auction_id: str | None
    reason: str | None
    created_at: datetime
    signatures: list[SignatureOut] = Field(default_factory=list)


class BidOut(Out):
    id: str
    auction_id: str
    bidder_org_id: str
    commitment: str
    committed_at: datetime
    amount_fen: int | None
    revealed_at: datetime | None


class AuctionOut(Out):
    id: str
    product_id: str
    merchant_org_id: str
    plan: str
    reserve_fen: int
    currency: str
    term_days: int
    bids_close_at: datetime
    reveals_close_at: datetime
    status: str
    winner_org_id: str | None
    price_fen: int | None
    contract_id: str | None
    bids: int = 0


class RunOut(Out):
    offers_expired: int
    contracts_voided: int
    contracts_expired: int
    released: int
    bills: int
    auctions: int
