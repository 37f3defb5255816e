"""Request and response models of the demands API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from databourse.catalog.vocab import ProductKind, Purpose
from databourse.schemas import Out, Strict

MAX_FEN = 10**15


class DemandIn(Strict):
    """A buyer's posted need (需求): what data, for what, for how much and how long."""

    title: Annotated[str, Field(min_length=1, max_length=200)]
    need: Annotated[str, Field(min_length=1, max_length=10_000)]
    scenario: Annotated[str, Field(max_length=10_000)] = ""
    purpose: Annotated[Purpose, Field(strict=False)]
    kinds: Annotated[list[Annotated[ProductKind, Field(strict=False)]], Field(max_length=3)] = (
        Field(default_factory=list)
    )
    industry: Annotated[str | None, Field(min_length=2, max_length=32)] = None
    budget_max_fen: Annotated[int | None, Field(ge=0, le=MAX_FEN)] = None
    currency: Annotated[str, Field(pattern="^[A-Z]{3}$")] = "CNY"
    term_days: Annotated[int | None, Field(ge=1, le=3660)] = None
    required_fields: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=120)]], Field(max_length=50)
    ] = Field(default_factory=list)


class DecisionIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class DemandOut(Out):
    id: str
    org_id: str
    title: str
    need: str
    scenario: str
    purpose: str
    kinds: list[str]
    industry: str | None
    budget_max_fen: int | None
    currency: str
    term_days: int | None
    required_fields: list[str]
    status: str
    created_at: datetime
    updated_at: datetime


class ReasonOut(Out):
    factor: str
    score: float
    detail: str


class MatchOut(Out):
    demand_id: str
    product_id: str
    score: float
    reasons: list[ReasonOut]
    title: str = ""  # the other side's title, for display


class NoticeOut(Out):
    id: int
    org_id: str
    demand_id: str
    product_id: str
    side: str
    score: float
    reasons: list[dict[str, Any]]
    created_at: datetime
    read_at: datetime | None
