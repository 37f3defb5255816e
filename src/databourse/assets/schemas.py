"""Request and response models of the assets API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import Field, model_validator

from databourse.assets.models import Grade, RightKind, SourceKind
from databourse.schemas import Out, Strict

Title = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=10_000)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
Day = Annotated[date, Field(strict=False)]  # ISO dates arrive as JSON strings


class SourceIn(Strict):
    """The source declaration: how the data came to be held, with the evidence its kind needs."""

    kind: Annotated[SourceKind, Field(strict=False)]
    description: LongText
    consent_basis: Annotated[str | None, Field(max_length=5000)] = Field(
        None, description="How consent was obtained (collected_with_consent)."
    )
    upstream_provider: Annotated[str | None, Field(max_length=200)] = None
    upstream_contract: Annotated[str | None, Field(max_length=200)] = Field(
        None, description="Reference of the upstream purchase contract (purchased)."
    )
    authorisation: Annotated[str | None, Field(max_length=500)] = Field(
        None, description="The authorisation to operate public data (public_authorised)."
    )


class RightGrantIn(Strict):
    """One of the three separable rights, as a grant with its holder, scope and term."""

    right: Annotated[RightKind, Field(strict=False)]
    holder_org_id: Annotated[str | None, Field(max_length=40)] = Field(
        None, description="The holding organisation; the asset's own organisation if omitted."
    )
    holder_name: Annotated[str | None, Field(max_length=200)] = None
    scope: LongText
    starts_on: Day
    ends_on: Day | None = None

    @model_validator(mode="after")
    def _term(self) -> RightGrantIn:
        if self.ends_on is not None and self.ends_on <= self.starts_on:
            raise ValueError("a right's term must end after it starts")
        return self


class AssetIn(Strict):
    title: Title
    description: LongText
    industry: Annotated[str, Field(min_length=2, max_length=32)]
    source: SourceIn
    rights: Annotated[list[RightGrantIn], Field(min_length=1, max_length=3)]
    grade: Annotated[Grade, Field(strict=False)]
    sub_grade: Annotated[int | None, Field(ge=1, le=100)] = None
    personal_info: bool = False
    sensitive_personal_info: bool = False
    pi_consent_basis: Annotated[str | None, Field(max_length=5000)] = None

    @model_validator(mode="after")
    def _rights_once(self) -> AssetIn:
        kinds = [g.right for g in self.rights]
        if len(set(kinds)) != len(kinds):
            raise ValueError("each right may be granted once")
        return self


class AssetPatch(Strict):
    """Changes to a draft, or an amendment of a registered asset (fields left out stay)."""

    title: Title | None = None
    description: LongText | None = None
    industry: Annotated[str | None, Field(min_length=2, max_length=32)] = None
    source: SourceIn | None = None
    rights: Annotated[list[RightGrantIn] | None, Field(min_length=1, max_length=3)] = None
    grade: Annotated[Grade | None, Field(strict=False)] = None
    sub_grade: Annotated[int | None, Field(ge=1, le=100)] = None
    personal_info: bool | None = None
    sensitive_personal_info: bool | None = None
    pi_consent_basis: Annotated[str | None, Field(max_length=5000)] = None
    reason: Annotated[str | None, Field(max_length=2000)] = Field(
        None, description="Why a registered asset is amended (required for amendments)."
    )


class DecisionIn(Strict):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class ResolveIn(Strict):
    reason: Reason
    outcome: Annotated[str, Field(pattern="^(restore|cancel)$")] = "restore"


class AssetOut(Out):
    id: str
    org_id: str
    title: str
    description: str
    industry: str
    source: dict[str, Any]
    rights: list[dict[str, Any]]
    grade: str
    sub_grade: int | None
    personal_info: bool
    sensitive_personal_info: bool
    pi_consent_basis: str | None
    status: str
    revision: int
    reviewed_by: str | None
    decision_reason: str | None
    created_at: datetime
    updated_at: datetime


class ColumnOut(Out):
    name: str
    type: str
    nullable: bool
    null_count: int


class FileOut(Out):
    id: str
    asset_id: str
    version: int
    filename: str
    format: str
    encoding: str | None
    byte_size: int
    sha256: str
    row_count: int
    columns: list[ColumnOut]
    chunk_rows: int
    chunk_count: int
    chunk_root: str
    uploaded_by: str
    created_at: datetime


class ChunkProofOut(Out):
    """Rows of one chunk of a file and the proof that they belong to its registered root."""

    file_id: str
    sha256: str
    chunk_root: str
    chunk_rows: int
    chunk_count: int
    index: int
    rows: list[list[str | None]]
    proof: list[str]  # hex hashes, RFC 9162 inclusion proof of the chunk's leaf
