"""Pre-trade checks (DSL art. 33; BRIEF §10). Pure: the facts are gathered by the caller.

Before any contract the exchange verifies both parties (admitted, not suspended, identity
verified), requires the provider to have declared the source of every asset behind the
product, and checks that the product is listed and that the buyer's declared purpose is one
its usage policy allows. Every failed rule is reported, each by a stable name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Evidence a source declaration must carry, by source kind (as at registration).
SOURCE_EVIDENCE = {
    "collected_with_consent": "consent_basis",
    "purchased": "upstream_contract",
    "public_authorised": "authorisation",
}
REGISTERED_ASSET = frozenset({"registered", "amended"})


@dataclass(frozen=True)
class PartyFacts:
    org_id: str
    status: str
    roles: frozenset[str]
    kyb: dict[str, Any]


@dataclass(frozen=True)
class AssetFacts:
    id: str
    status: str
    source: dict[str, Any]


@dataclass(frozen=True)
class TradeFacts:
    buyer: PartyFacts
    merchant: PartyFacts
    product_id: str
    product_status: str
    assets: Sequence[AssetFacts]
    purpose: str
    allowed_purposes: Sequence[str]


@dataclass(frozen=True)
class Failure:
    rule: str
    detail: str


def _party(p: PartyFacts, side: str, role: str) -> list[Failure]:
    out = []
    if p.status != "admitted":
        out.append(Failure(f"{side}-admitted", f"the {side} organisation is {p.status}"))
    if role not in p.roles:
        out.append(
            Failure(f"{side}-role", f"the {side} organisation does not hold the {role} role")
        )
    if not p.kyb.get("legal_representative_verified"):
        out.append(
            Failure(f"{side}-identity-verified", f"the {side}'s identity has not been verified")
        )
    return out


def source_declared(source: dict[str, Any]) -> bool:
    if not source.get("kind") or not str(source.get("description") or "").strip():
        return False
    needed = SOURCE_EVIDENCE.get(str(source["kind"]))
    return needed is None or bool(str(source.get(needed) or "").strip())


def failures(f: TradeFacts) -> list[Failure]:
    """Every rule the trade breaks; empty when it may go ahead."""
    out = _party(f.buyer, "buyer", "buyer") + _party(f.merchant, "merchant", "merchant")
    if f.buyer.org_id == f.merchant.org_id:
        out.append(Failure("distinct-parties", "an organisation cannot trade with itself"))
    if f.product_status != "listed":
        out.append(Failure("product-listed", f"product {f.product_id} is {f.product_status}"))
    if not f.assets:
        out.append(Failure("source-declared", "the product names no registered asset"))
    for a in f.assets:
        if not source_declared(a.source):
            out.append(
                Failure("source-declared", f"asset {a.id} has no complete source declaration")
            )
        if a.status not in REGISTERED_ASSET:
            out.append(Failure("asset-registered", f"asset {a.id} is {a.status}"))
    if f.purpose not in f.allowed_purposes:
        out.append(
            Failure(
                "purpose-allowed",
                f"purpose {f.purpose!r} is not among those the policy allows: "
                + ", ".join(sorted(f.allowed_purposes)),
            )
        )
    return out
