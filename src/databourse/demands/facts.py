"""A buyer's demand as plain values, for matching without a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class DemandFacts:
    id: str
    org_id: str
    title: str
    need: str  # what data is wanted, free text
    scenario: str  # what it is for, free text
    purpose: str  # controlled purpose vocabulary (catalog.policy.Purpose value)
    kinds: tuple[str, ...]  # acceptable product kinds; empty means any
    industry: str | None
    budget_max_fen: int | None  # the most the buyer will pay for the term; None: open
    currency: str
    term_days: int | None
    required_fields: tuple[str, ...]  # field names or meanings the data must have
    created_at: datetime
