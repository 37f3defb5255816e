"""Request and response bodies of downloads and leak tracing."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from databourse.schemas import Out, Strict


class TableOut(Out):
    name: str
    asset_id: str
    data_file_id: str
    version: int
    row_count: int
    columns: list[dict[str, str]]  # licensed columns: name and type of the copy


class DownloadIn(Strict):
    purpose: str = Field(min_length=1, max_length=40)
    territory: str | None = Field(None, min_length=2, max_length=6)
    table: str | None = Field(None, max_length=200)
    format: Literal["csv", "parquet"] = "csv"


class DownloadOut(Out):
    id: str
    contract_id: str
    path: str
    format: str
    issued_at: datetime
    expires_at: datetime
    fetches: int


class DownloadGranted(DownloadOut):
    url: str  # absolute; the link itself is the credential until it expires
    table: str
    version: int
    rows: int
    copy_sha256: str  # the copy's hash, also on the ledger (copy.made)


class SuspicionOut(Out):
    contract_id: str
    buyer_org_id: str
    buyer_name: str
    score: float
    matched: int
    evidence: int
    p_false: float
    accused: bool


class TraceOut(Out):
    id: str
    product_id: str
    data_file_id: str
    requested_by: str
    suspect_sha256: str
    suspect_rows: int
    rows_matched: int
    threshold: float
    columns_used: list[str]
    accused: list[str]
    ranking: list[SuspicionOut]
    created_at: datetime
    details: dict[str, Any]
