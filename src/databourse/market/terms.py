"""What a contract's money terms are, from a listing's plan and the proposed terms. Pure.

A negotiation may change the price, the plan, the term, the quantity and the policy, but
only within what the listing allows: the plan must be one of the listing's, the policy may
only narrow the listing's (``catalog.policy.narrows``), the term may not outlast it, and a
negotiated plan's price may not go below its floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from databourse.catalog.policy import UsagePolicy, narrows, term_length_days
from databourse.catalog.pricing import (
    MAX_FEN,
    AuctionPlan,
    FixedPlan,
    FreePlan,
    MeteredPlan,
    NegotiatedPlan,
    PackagePlan,
    PricingPlan,
    SubscriptionPlan,
)
from databourse.market.errors import InvalidTerms

PERIOD_DAYS = {"month": 30, "quarter": 91, "year": 365}


@dataclass(frozen=True)
class Proposal:
    plan: str
    price_fen: int | None = None
    quantity: int | None = None
    term_days: int | None = None
    policy: UsagePolicy | None = None
    billing: str | None = None


@dataclass(frozen=True)
class Agreed:
    plan: dict[str, Any]  # the listing's plan with what was agreed under "agreed"
    model: str
    price_fen: int  # due at payment (0 when billed by use or free)
    unit_price_fen: int  # the negotiated price (per period for a subscription)
    quantity: int | None
    term_days: int
    policy: UsagePolicy
    billing: str  # upfront | prepaid | invoice | none


def find_plan(plans: Sequence[PricingPlan], name: str) -> PricingPlan:
    for p in plans:
        if p.name.casefold() == name.casefold():
            return p
    raise InvalidTerms(
        f"the listing has no plan named {name!r}; its plans: " + ", ".join(p.name for p in plans),
        field="plan",
        value=name,
    )


def _term(proposal: Proposal, listing: UsagePolicy, policy: UsagePolicy) -> int:
    longest = term_length_days(listing)
    term = proposal.term_days or policy.term_days or longest
    if term is None:
        raise InvalidTerms("give the term in days", field="term_days")
    if longest is not None and term > longest:
        raise InvalidTerms(
            f"the listing allows a term of at most {longest} days", field="term_days", value=term
        )
    return term


def agree(
    plans: Sequence[PricingPlan],
    listing: UsagePolicy,
    proposal: Proposal,
    *,
    negotiated: bool,
    auction_price: int | None = None,
) -> Agreed:
    """The contract's terms, or ``InvalidTerms`` naming what the listing does not allow.

    ``negotiated``: the price was agreed by negotiation (else the listing's price holds).
    ``auction_price``: the second price of a won auction.
    """
    plan = find_plan(plans, proposal.plan)
    policy = proposal.policy or listing
    wider = narrows(policy, listing)
    if wider:
        raise InvalidTerms(
            "the policy is wider than the listing's: " + "; ".join(wider),
            field="policy",
            problems=wider,
        )
    term = _term(proposal, listing, policy)
    policy = policy.model_copy(update={"term_days": term})
    if isinstance(plan, AuctionPlan) and auction_price is None:
        raise InvalidTerms(
            "an exclusive licence on auction is sold only by bidding", field="plan", value=plan.name
        )
    if isinstance(plan, NegotiatedPlan) and not negotiated:
        raise InvalidTerms(
            "this plan's price is set by negotiation: open a negotiation",
            field="plan",
            value=plan.name,
        )
    if proposal.billing is not None and not isinstance(plan, MeteredPlan):
        raise InvalidTerms("billing applies to metered plans only", field="billing")
    listed = _listed_price(plan)
    price = listed if not negotiated or proposal.price_fen is None else proposal.price_fen
    if auction_price is not None:
        price = auction_price
    if isinstance(plan, NegotiatedPlan):
        if price is None:
            raise InvalidTerms("propose a price", field="price_fen")
        if plan.floor_fen is not None and price < plan.floor_fen:
            raise InvalidTerms(
                f"the price may not be below the floor of {plan.floor_fen} fen",
                field="price_fen",
                value=price,
            )
    if isinstance(plan, FreePlan | MeteredPlan) and proposal.price_fen not in (None, 0):
        raise InvalidTerms(f"a {plan.model} plan has no price to negotiate", field="price_fen")
    quantity = None
    if isinstance(plan, PackagePlan):
        quantity = proposal.quantity or plan.units
        if not negotiated and quantity != plan.units:
            raise InvalidTerms(
                f"the package is {plan.units} units at its price; negotiate another quantity",
                field="quantity",
                value=quantity,
            )
    elif proposal.quantity is not None:
        raise InvalidTerms("a quantity applies to package plans only", field="quantity")
    unit = price or 0
    due = unit
    periods = None
    if isinstance(plan, SubscriptionPlan):
        periods = math.ceil(term / PERIOD_DAYS[plan.period])
        due = unit * periods
    if due > MAX_FEN:
        raise InvalidTerms(
            f"the price due, {due} fen, is beyond what the exchange accepts", field="price_fen"
        )
    billing = "upfront"
    if isinstance(plan, MeteredPlan):
        billing, due, unit = proposal.billing or "prepaid", 0, 0
    elif due == 0:
        billing = "none"
    agreed = {"price_fen": unit, "periods": periods, "quantity": quantity, "due_fen": due}
    return Agreed(
        plan={**plan.model_dump(mode="json"), "agreed": agreed},
        model=plan.model,
        price_fen=due,
        unit_price_fen=unit,
        quantity=quantity,
        term_days=term,
        policy=policy,
        billing=billing,
    )


def _listed_price(plan: PricingPlan) -> int | None:
    match plan:
        case FreePlan() | MeteredPlan():
            return 0
        case FixedPlan() | SubscriptionPlan() | PackagePlan():
            return plan.price_fen
        case NegotiatedPlan():
            return plan.guide_fen
        case AuctionPlan():
            return plan.reserve_fen
    raise TypeError(f"not a pricing plan: {plan!r}")
