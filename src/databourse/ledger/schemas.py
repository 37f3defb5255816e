"""Request and response models of the ledger API."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_serializer

from databourse.schemas import Out, Strict


class CheckpointOut(Out):
    size: int
    root: bytes
    note: str = Field(
        description="C2SP signed note: the checkpoint with the exchange's "
        "signature and any witness cosignatures"
    )
    created_at: datetime

    @field_serializer("root")
    def _b64(self, v: bytes) -> str:
        return base64.b64encode(v).decode()


class EntryOut(Out):
    seq: int
    kind: str
    subject: str
    actor: str
    at: datetime
    state_hash: str | None
    leaf_hash: bytes
    entry: bytes = Field(description="The exact RFC 8785 bytes hashed into the leaf")

    @field_serializer("leaf_hash", "entry")
    def _b64(self, v: bytes) -> str:
        return base64.b64encode(v).decode()


class ProofOut(Out):
    size: int
    proof: list[str]


class InclusionOut(ProofOut):
    seq: int
    leaf_hash: str


class ConsistencyOut(ProofOut):
    old_size: int


class WitnessIn(Strict):
    verifier_key: Annotated[
        str,
        Field(
            min_length=10,
            max_length=500,
            description=(
                "tlog-cosignature verifier key: <name>+<hex key id>+<base64(0x04 || pubkey)>"
            ),
        ),
    ]
    url: Annotated[
        str | None,
        Field(
            max_length=500,
            description=(
                "Where the witness serves C2SP tlog-witness add-checkpoint; none to cosign by pull"
            ),
        ),
    ] = None


class WitnessOut(Out):
    id: str
    org_id: str
    name: str
    verifier_key: str
    url: str | None
    last_size: int
    active: bool


class CosignatureIn(Strict):
    model_config = ConfigDict(str_strip_whitespace=False)  # notes end in a required newline

    size: Annotated[int, Field(ge=1)]
    witness_id: str
    signature_line: Annotated[str, Field(min_length=10, max_length=1000)]


class GossipIn(Strict):
    model_config = ConfigDict(str_strip_whitespace=False)  # notes end in a required newline

    note: Annotated[str, Field(min_length=10, max_length=10_000)]


class AlertOut(Out):
    id: int
    kind: str
    size: int | None
    detail: dict[str, Any]
    created_at: datetime
