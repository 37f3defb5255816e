"""What the catalog knows about a listed product, as plain values.

The search index, the DCAT export and demand matching all read these, never the ORM rows,
so they stay pure and testable without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class FieldFacts:
    """One field (column or response field) of a product, as its description declares it."""

    name: str
    type: str  # "string" | "integer" | "number" | "boolean" | "date" | "timestamp" | ...
    meaning: str = ""
    personal: bool = False  # holds personal information


@dataclass(frozen=True)
class DistributionFacts:
    """One downloadable version of a dataset product's data file."""

    file_id: str
    version: int
    format: str  # "csv" | "parquet"
    media_type: str  # "text/csv" | "application/vnd.apache.parquet"
    byte_size: int
    sha256: str  # hex
    row_count: int
    created_at: datetime


@dataclass(frozen=True)
class ListingFacts:
    """A listed product as the catalog shows it to buyers."""

    id: str
    org_id: str
    merchant_name: str
    kind: str  # "dataset" | "api" | "compute"
    title: str
    summary: str  # the description's content paragraph
    fields: tuple[FieldFacts, ...]
    tags: tuple[str, ...]
    industry: str  # e.g. "finance", "transport" (controlled list, see catalog.vocab)
    category: str  # free classification inside the industry
    grade: str  # "important" | "general" (core is never listed)
    sub_grade: int | None
    update_frequency: str  # "realtime" | "daily" | "weekly" | "monthly" | "quarterly" | ...
    coverage: str  # time span and geography the data covers, free text
    scenarios: tuple[str, ...]
    restrictions: str
    min_price_fen: int  # the cheapest non-zero entry price across plans; 0 when a plan is free
    max_price_fen: int
    currency: str
    plan_models: tuple[str, ...]  # "free", "fixed", "subscription", "metered", ...
    has_sample: bool
    listed_at: datetime
    updated_at: datetime
    quality_score: float | None = None  # 0–100, once a quality report exists
    distributions: tuple[DistributionFacts, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)  # the default usage policy (JSON)
    language: str = "zh"  # the listing's main language, "zh" or "en"
