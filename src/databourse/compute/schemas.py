"""Request and response bodies of compute: nodes, compute services, jobs, budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from databourse.schemas import Out, Strict

Reveal = Literal["cardinality", "intersection"]
ModelKind = Literal["logistic", "linear"]
REVEALS: tuple[Reveal, ...] = ("cardinality", "intersection")
MODELS: tuple[ModelKind, ...] = ("logistic", "linear")
DATASET = r"^[A-Za-z0-9_:.\-]{1,120}$"
COLUMN = r"^[^\x00-\x1f]{1,120}$"


class NodeIn(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9\-]*$")
    url: str = Field(min_length=8, max_length=500)
    public_key: str = Field(min_length=43, max_length=44)


class NodeOut(Out):
    id: str
    org_id: str
    name: str
    url: str
    public_key: str
    datasets: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime


class ExchangeKeyOut(Out):
    public_key: str  # the key a node checks the exchange's requests against
    algorithm: str = "Ed25519"


class Participant(Strict):
    node_id: str | None = Field(None, max_length=40)  # None: the exchange's embedded node
    dataset: str = Field(pattern=DATASET)


class SqlService(Strict):
    kind: Literal["sql"]
    node_id: str | None = Field(None, max_length=40)
    schema_: dict[str, Any] = Field(alias="schema")  # compute.dpsql.Schema.to_dict() shape
    tables: dict[str, str] = Field(default_factory=dict)  # schema table -> node dataset


class PsiService(Strict):
    kind: Literal["psi"]
    node_id: str | None = Field(None, max_length=40)
    dataset: str = Field(pattern=DATASET)
    column: str = Field(pattern=COLUMN)
    reveal: list[Reveal] = Field(default_factory=lambda: list(REVEALS[:1]), min_length=1)


class FlService(Strict):
    kind: Literal["fl"]
    participants: list[Participant] = Field(min_length=1, max_length=20)
    features: list[str] = Field(min_length=1, max_length=200)
    label: str = Field(min_length=1, max_length=120)
    models: list[ModelKind] = Field(default_factory=lambda: list(MODELS), min_length=1)


ServiceIn = SqlService | PsiService | FlService


class ServiceOut(Out):
    product_id: str
    kind: str
    node_id: str | None
    spec: dict[str, Any]
    revision: int
    updated_at: datetime


class SqlJobIn(Strict):
    kind: Literal["sql"]
    sql: str = Field(min_length=1, max_length=20_000)
    epsilon: float | None = None  # the query's ε; required unless the policy is threshold-only
    delta: float = 0.0
    purpose: str | None = Field(None, min_length=1, max_length=40)
    territory: str | None = Field(None, min_length=2, max_length=6)


class PsiJobIn(Strict):
    kind: Literal["psi"]
    node_id: str = Field(max_length=40)  # the buyer's own node, which learns the result
    dataset: str = Field(pattern=DATASET)
    column: str = Field(pattern=COLUMN)
    reveal: Literal["cardinality", "intersection"] = "cardinality"
    purpose: str | None = Field(None, min_length=1, max_length=40)
    territory: str | None = Field(None, min_length=2, max_length=6)


class FlJobIn(Strict):
    kind: Literal["fl"]
    spec: dict[str, Any]  # compute.federated.TrainingSpec; features/label within the service's
    participant: Participant | None = None  # the buyer's own node and dataset, if it joins
    purpose: str | None = Field(None, min_length=1, max_length=40)
    territory: str | None = Field(None, min_length=2, max_length=6)


JobIn = SqlJobIn | PsiJobIn | FlJobIn


class JobOut(Out):
    id: str
    contract_id: str
    product_id: str
    kind: str
    state: str
    request: dict[str, Any]
    epsilon: float
    delta: float
    progress: float
    progress_note: str | None
    cancel_requested: bool
    result: dict[str, Any] | None
    result_sha256: str | None
    problem: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class BudgetOut(Out):
    contract_id: str
    privacy_unit: str
    epsilon: float
    delta: float
    spent_epsilon: float
    spent_delta: float
    remaining_epsilon: float
    remaining_delta: float
