"""Request and response models of the settlement API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from databourse.catalog.pricing import MAX_FEN
from databourse.schemas import Out, Strict

Amount = Annotated[int, Field(ge=1, le=MAX_FEN, description="Whole fen (分), more than 0.")]
Currency = Annotated[str, Field(pattern="^[A-Z]{3}$", description="ISO 4217 code.")]
Rail = Annotated[str, Field(min_length=1, max_length=32)]
Tier = Literal["standard", "member", "strategic"]


class DepositIn(Strict):
    amount_fen: Amount
    currency: Currency = "CNY"
    rail: Rail = "bank_transfer"
    # the payer's account as its bank statement will show it (kept; only hashed on the ledger)
    reference: Annotated[str, Field(max_length=200)] = ""


class WithdrawalIn(Strict):
    amount_fen: Amount
    currency: Currency = "CNY"
    rail: Rail = "bank_transfer"
    # the payee account (bank account or wallet) the exchange pays to
    reference: Annotated[str, Field(min_length=1, max_length=200)]


class ConfirmIn(Strict):
    rail_ref: Annotated[str, Field(min_length=1, max_length=200)]


class RejectIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class DecisionIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class TransferOut(Out):
    id: str
    direction: str
    org_id: str
    rail: str
    amount_fen: int
    currency: str
    reference: str
    rail_ref: str | None
    status: str
    decided_by: str | None
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


class RequestedOut(TransferOut):
    instructions: dict[str, Any]


class AccountOut(Out):
    id: str
    owner: str
    kind: str
    currency: str
    balance_fen: int


class BalanceOut(Out):
    account_kind: str
    opening_fen: int
    closing_fen: int


class LineOut(Out):
    posting_id: int
    at: datetime
    journal_id: str
    journal_kind: str
    ref: str | None
    account_kind: str
    amount_fen: int
    balance_after_fen: int
    ledger_seq: int | None


class StatementOut(Out):
    org_id: str
    currency: str
    start: datetime | None  # the window asked for (?from=, ?to=); None: unbounded
    end: datetime | None
    balances: list[BalanceOut]
    lines: list[LineOut]
    total: int
    limit: int
    offset: int


class FeeRuleIn(Strict):
    rate_bp: Annotated[int, Field(ge=0, le=5000)]
    min_fen: Annotated[int, Field(ge=0, le=MAX_FEN)] = 0


class FeeRuleOut(Out):
    product_kind: str
    tier: str
    rate_bp: int
    min_fen: int
    updated_by: str
    updated_at: datetime


class EffectiveFeeOut(Out):
    product_kind: str
    tier: str
    rate_bp: int
    min_fen: int
    source: str


class FeeScheduleOut(Out):
    tiers: list[str]
    rules: list[FeeRuleOut]
    effective: list[EffectiveFeeOut]


class TierIn(Strict):
    tier: Tier


class TierOut(Out):
    org_id: str
    tier: str
    updated_by: str
    updated_at: datetime


class AgencyIn(Strict):
    principal_org_id: Annotated[str, Field(min_length=1, max_length=40)]
    product_id: Annotated[str | None, Field(min_length=1, max_length=40)] = None
    commission_bp: Annotated[int, Field(ge=1, le=3000)]
    not_after: Annotated[AwareDatetime, Field(strict=False)]
    document_hash: Annotated[str, Field(pattern="^[0-9a-fA-F]{64}$")]


class AgencyOut(Out):
    id: str
    agent_org_id: str
    principal_org_id: str
    product_id: str | None
    commission_bp: int
    not_after: datetime
    status: str
    document_hash: str
    decided_by: str | None
    created_at: datetime


class PayoutIn(Strict):
    agent_org_id: Annotated[str | None, Field(min_length=1, max_length=40)] = None


class PayoutOut(Out):
    journal_ids: list[str]
