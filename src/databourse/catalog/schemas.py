"""Request and response models of the catalog API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from databourse.catalog.policy import UsagePolicy
from databourse.catalog.pricing import PricingPlan
from databourse.catalog.vocab import ProductKind, UpdateFrequency
from databourse.schemas import Out, Strict

Title = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=10_000)]
Short = Annotated[str, Field(min_length=1, max_length=200)]
FieldType = Literal[
    "string", "integer", "number", "boolean", "date", "timestamp", "binary", "object"
]


class FieldIn(Strict):
    """One field of the product: a column of a dataset, a response field of an API."""

    name: Annotated[str, Field(min_length=1, max_length=120)]
    type: FieldType = "string"
    meaning: Annotated[str, Field(max_length=500)] = ""
    personal: bool = Field(False, description="Holds personal information (masked in samples).")


class DescriptionIn(Strict):
    """The product description (数据产品说明书)."""

    content: Annotated[str, Field(min_length=1, max_length=10_000)]
    fields: Annotated[list[FieldIn], Field(min_length=1, max_length=500)]
    coverage: Text = ""
    update_frequency: Annotated[UpdateFrequency, Field(strict=False)]
    scenarios: Annotated[list[Short], Field(max_length=20)] = Field(default_factory=list)
    restrictions: Text = ""

    @model_validator(mode="after")
    def _unique_fields(self) -> DescriptionIn:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        return self


class SampleIn(Strict):
    """A sample given by the merchant (API and compute products; datasets take theirs
    from the data file). Columns holding personal information are masked on save."""

    columns: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=120)]],
        Field(min_length=1, max_length=500),
    ]
    rows: Annotated[list[list[str | None]], Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _shape(self) -> SampleIn:
        if any(len(r) != len(self.columns) for r in self.rows):
            raise ValueError("every sample row needs one value per column")
        return self


class ProductIn(Strict):
    kind: Annotated[ProductKind, Field(strict=False)]
    title: Title
    asset_ids: Annotated[
        list[Annotated[str, Field(max_length=40)]], Field(min_length=1, max_length=20)
    ]
    description: DescriptionIn
    industry: Annotated[str, Field(min_length=2, max_length=32)]
    category: Annotated[str, Field(min_length=1, max_length=64)]
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=40)]], Field(max_length=20)
    ] = Field(default_factory=list)
    language: Literal["zh", "en"] = "zh"
    plans: Annotated[list[PricingPlan], Field(min_length=1, max_length=10)]
    policy: UsagePolicy
    sample: SampleIn | None = None


class ProductPatch(Strict):
    title: Title | None = None
    asset_ids: Annotated[
        list[Annotated[str, Field(max_length=40)]] | None, Field(min_length=1, max_length=20)
    ] = None
    description: DescriptionIn | None = None
    industry: Annotated[str | None, Field(min_length=2, max_length=32)] = None
    category: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=40)]] | None, Field(max_length=20)
    ] = None
    language: Literal["zh", "en"] | None = None
    plans: Annotated[list[PricingPlan] | None, Field(min_length=1, max_length=10)] = None
    policy: UsagePolicy | None = None
    sample: SampleIn | None = None


class DecisionIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class CheckOut(Out):
    item: str
    passed: bool
    detail: str


class ProductOut(Out):
    id: str
    org_id: str
    kind: str
    title: str
    description: dict[str, Any]
    industry: str
    category: str
    tags: list[str]
    language: str
    sample: dict[str, Any] | None
    plans: list[dict[str, Any]]
    policy: dict[str, Any]
    min_price_fen: int
    max_price_fen: int
    currency: str
    version: int
    status: str
    asset_ids: list[str]
    checklist: list[dict[str, Any]] | None
    reviewed_by: str | None
    decision_reason: str | None
    listed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class HitOut(Out):
    id: str
    score: float
    title: str
    kind: str
    merchant: str
    merchant_name: str
    industry: str
    category: str
    grade: str
    update_frequency: str
    min_price_fen: int
    currency: str
    has_sample: bool
    summary: str
    tags: list[str]
    listed_at: datetime


class SearchOut(Out):
    total: int
    offset: int
    limit: int
    hits: list[HitOut]
    facets: dict[str, dict[str, int]]
