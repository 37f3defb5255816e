"""Contract terms from a listing's plan and a proposal (pure)."""

from __future__ import annotations

import pytest

from databourse.catalog.policy import UsagePolicy
from databourse.catalog.pricing import MAX_FEN, PackagePlan, SubscriptionPlan
from databourse.market.errors import InvalidTerms
from databourse.market.terms import Proposal, agree

POLICY = UsagePolicy.model_validate({"purposes": ["research"], "term_days": 365})
MONTHLY = SubscriptionPlan(name="monthly", model="subscription", price_fen=10_000, period="month")
PACKAGE = PackagePlan(
    name="pack", model="package", unit="call", units=1_000, price_fen=5_000, valid_days=90
)


def test_a_subscription_is_priced_per_period_over_the_term() -> None:
    agreed = agree([MONTHLY], POLICY, Proposal(plan="monthly", term_days=61), negotiated=False)
    assert (agreed.plan["agreed"]["periods"], agreed.price_fen) == (3, 30_000)


def test_a_listed_price_holds_unless_negotiated() -> None:
    proposal = Proposal(plan="monthly", price_fen=1, term_days=30)
    assert agree([MONTHLY], POLICY, proposal, negotiated=False).price_fen == 10_000
    assert agree([MONTHLY], POLICY, proposal, negotiated=True).price_fen == 1


def test_a_total_beyond_the_exchanges_limit_is_refused() -> None:
    proposal = Proposal(plan="monthly", price_fen=MAX_FEN, term_days=60)
    with pytest.raises(InvalidTerms, match="beyond"):
        agree([MONTHLY], POLICY, proposal, negotiated=True)


def test_a_package_keeps_its_size_unless_negotiated() -> None:
    with pytest.raises(InvalidTerms):
        agree([PACKAGE], POLICY, Proposal(plan="pack", quantity=10**9), negotiated=False)
    agreed = agree(
        [PACKAGE], POLICY, Proposal(plan="pack", quantity=500, price_fen=2_600), negotiated=True
    )
    assert (agreed.quantity, agreed.price_fen) == (500, 2_600)
