"""Pricing plans: strict money, fit to the product, price ranges, tiered charges, summaries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from databourse.catalog.errors import InvalidPricing
from databourse.catalog.pricing import (
    MeteredPlan,
    PricingPlan,
    format_money,
    metered_charge,
    plan_price,
    plan_summary,
    price_range,
    validate_plans,
)

PLANS = TypeAdapter(list[PricingPlan])
PLAN = TypeAdapter(PricingPlan)

FREE = {"model": "free", "name": "Trial"}
FIXED = {"model": "fixed", "name": "Once", "price_fen": 120_000}
SUBSCRIPTION = {"model": "subscription", "name": "Monthly", "price_fen": 300_000, "period": "month"}
METERED_CALLS = {
    "model": "metered",
    "name": "Per call",
    "unit": "call",
    "tiers": [
        {"up_to": 1_000_000, "price_per_1000_fen": 50},
        {"up_to": None, "price_per_1000_fen": 30},
    ],
}
PACKAGE = {
    "model": "package",
    "name": "Bundle",
    "unit": "call",
    "units": 10_000,
    "price_fen": 40_000,
    "valid_days": 365,
}
NEGOTIATED = {"model": "negotiated", "name": "Talk", "floor_fen": 1_000_000, "guide_fen": 2_000_000}
AUCTION = {
    "model": "auction",
    "name": "Exclusive",
    "reserve_fen": 5_000_000,
    "bidding_days": 14,
}


def plans(*raw: dict[str, Any]) -> list[Any]:
    return PLANS.validate_python(list(raw))


def metered(*tiers: tuple[int | None, int], unit: str = "call") -> MeteredPlan:
    raw = {
        "model": "metered",
        "name": "m",
        "unit": unit,
        "tiers": [{"up_to": u, "price_per_1000_fen": p} for u, p in tiers],
    }
    plan = PLAN.validate_python(raw)
    assert isinstance(plan, MeteredPlan)
    return plan


# --- shape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [FREE, FIXED, SUBSCRIPTION, METERED_CALLS, PACKAGE, NEGOTIATED, AUCTION],
    ids=lambda r: r["model"],
)
def test_every_model_parses_and_round_trips(raw: dict[str, Any]) -> None:
    plan = PLAN.validate_python(raw)
    assert plan.model == raw["model"] and plan.currency == "CNY"
    assert PLAN.validate_python(PLAN.dump_python(plan, mode="json")) == plan
    assert PLAN.validate_json(json.dumps(raw)) == plan


@pytest.mark.parametrize(
    "change",
    [
        {"price_fen": -1},
        {"price_fen": 12.5},
        {"price_fen": 100.0},
        {"price_fen": float("nan")},
        {"price_fen": True},
        {"price_fen": "100"},
        {"price_fen": 10**15 + 1},
        {"currency": "cny"},
        {"currency": "RMB1"},
        {"name": ""},
        {"model": "barter"},
        {"extra": 1},
    ],
)
def test_bad_money_and_fields_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PLAN.validate_python(FIXED | change)


def test_auction_licences_are_always_exclusive() -> None:
    with pytest.raises(ValidationError):
        PLAN.validate_python(AUCTION | {"exclusive": False})


# --- fit to the product ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "field"),
    [
        ("api", [], "plans"),
        ("api", [FIXED, FIXED | {"price_fen": 1}], "plans[1].name"),
        ("api", [FIXED, FIXED | {"name": "ONCE"}], "plans[1].name"),
        ("api", [FIXED, SUBSCRIPTION | {"currency": "USD"}], "plans[1].currency"),
        ("dataset", [METERED_CALLS], "plans[0].unit"),
        ("api", [METERED_CALLS | {"unit": "row"}], "plans[0].unit"),
        ("compute", [PACKAGE | {"unit": "gb"}], "plans[0].unit"),
        ("dataset", [PACKAGE], "plans[0].unit"),
        ("api", [AUCTION], "plans[0].model"),
        ("api", [NEGOTIATED | {"guide_fen": 1}], "plans[0].guide_fen"),
        (
            "api",
            [METERED_CALLS | {"tiers": [{"up_to": 10, "price_per_1000_fen": 1}]}],
            "plans[0].tiers",
        ),
        (
            "api",
            [
                METERED_CALLS
                | {
                    "tiers": [
                        {"up_to": 100, "price_per_1000_fen": 5},
                        {"up_to": 100, "price_per_1000_fen": 4},
                        {"up_to": None, "price_per_1000_fen": 3},
                    ]
                }
            ],
            "plans[0].tiers[1].up_to",
        ),
        (
            "api",
            [
                METERED_CALLS
                | {
                    "tiers": [
                        {"up_to": None, "price_per_1000_fen": 5},
                        {"up_to": None, "price_per_1000_fen": 3},
                    ]
                }
            ],
            "plans[0].tiers[0].up_to",
        ),
        ("cloud", [FIXED], "kind"),
    ],
)
def test_plans_that_do_not_fit_name_the_problem(
    kind: str, raw: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidPricing) as err:
        validate_plans(plans(*raw), kind)
    assert err.value.extra["field"] == field
    assert err.value.slug == "invalid-pricing" and err.value.status == 422


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("api", [FREE, FIXED, SUBSCRIPTION, METERED_CALLS, PACKAGE, NEGOTIATED]),
        ("compute", [METERED_CALLS, SUBSCRIPTION]),
        ("dataset", [FIXED, AUCTION, METERED_CALLS | {"unit": "row"}, PACKAGE | {"unit": "gb"}]),
    ],
)
def test_fitting_plans_pass(kind: str, raw: list[dict[str, Any]]) -> None:
    validate_plans(plans(*raw), kind)


# --- prices ------------------------------------------------------------------------------


def test_each_model_has_one_comparable_price() -> None:
    prices = [plan_price(p) for p in plans(FREE, FIXED, SUBSCRIPTION, METERED_CALLS, PACKAGE)]
    assert prices == [0, 120_000, 300_000, 50, 40_000]
    assert plan_price(PLAN.validate_python(NEGOTIATED)) == 1_000_000
    assert plan_price(PLAN.validate_python(NEGOTIATED | {"floor_fen": None})) == 2_000_000
    assert plan_price(PLAN.validate_python({"model": "negotiated", "name": "n"})) == 0
    assert plan_price(PLAN.validate_python(AUCTION)) == 5_000_000


def test_price_range_is_zero_when_a_plan_is_free_else_the_cheapest_priced() -> None:
    assert price_range(plans(FREE, FIXED, SUBSCRIPTION)) == (0, 300_000)
    assert price_range(plans(FIXED, SUBSCRIPTION)) == (120_000, 300_000)
    # A negotiated plan without floor or guide has no price to compare: it is left out of min.
    assert price_range(plans(FIXED, {"model": "negotiated", "name": "n"})) == (120_000, 120_000)
    assert price_range([]) == (0, 0)


def test_tiered_charge_example() -> None:
    plan = PLAN.validate_python(METERED_CALLS)
    assert isinstance(plan, MeteredPlan)
    assert metered_charge(plan, 0) == 0
    assert metered_charge(plan, 1_000) == 50
    assert metered_charge(plan, 1_000_000) == 50_000
    assert metered_charge(plan, 1_500_000) == 50_000 + 15_000
    # 10 calls at ¥0.50 per 1,000 is 0.5 fen: half rounds up.
    assert metered_charge(plan, 10) == 1
    assert metered_charge(plan, 9) == 0  # 0.45 fen


def test_each_tier_is_rounded_on_its_own() -> None:
    plan = metered((3, 500), (None, 500))  # 0.5 fen a unit in both tiers
    # Tier 1: 3 units = 1.5 → 2 fen; tier 2: 1 unit = 0.5 → 1 fen.
    assert metered_charge(plan, 4) == 3


@pytest.mark.parametrize("units", [-1, 10**15 + 1, True, 1.0])
def test_charge_refuses_impossible_usage(units: Any) -> None:
    with pytest.raises(ValueError):
        metered_charge(metered((None, 10)), units)


tier_lists = st.lists(
    st.tuples(st.integers(1, 10_000), st.integers(0, 100_000)), min_size=1, max_size=5
).map(lambda steps: [(sum(s for s, _ in steps[: i + 1]), p) for i, (_, p) in enumerate(steps)])


@st.composite
def metered_plans(draw: st.DrawFn) -> MeteredPlan:
    bounded = draw(tier_lists)
    last = draw(st.integers(0, 100_000))
    return metered(*[(u, p) for u, p in bounded[:-1]], (None, last))


@given(metered_plans(), st.integers(0, 100_000), st.integers(0, 100_000))
def test_charge_never_decreases_with_usage(plan: MeteredPlan, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert metered_charge(plan, low) <= metered_charge(plan, high)


@given(metered_plans(), st.data())
def test_charge_is_additive_across_tier_boundaries(plan: MeteredPlan, data: st.DataObject) -> None:
    bounds = [0] + [t.up_to for t in plan.tiers if t.up_to is not None]
    i = data.draw(st.integers(0, len(bounds) - 1))
    start = bounds[i]
    end = bounds[i + 1] if i + 1 < len(bounds) else start + 100_000
    units = data.draw(st.integers(start, end))
    price = plan.tiers[i].price_per_1000_fen
    within_tier = (2 * (units - start) * price + 1000) // 2000  # round half up
    assert metered_charge(plan, units) == metered_charge(plan, start) + within_tier


@given(st.integers(0, 10**15), st.integers(0, 10**15))
def test_single_tier_charge_is_exact_to_half_a_fen(units: int, price: int) -> None:
    charge = metered_charge(metered((None, price)), units)
    assert abs(charge * 1000 - units * price) <= 500


# --- summaries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (FREE, "Free"),
        (FIXED, "¥1,200.00 one-off"),
        (SUBSCRIPTION, "¥3,000.00 per month"),
        (METERED_CALLS, "¥0.50 per 1,000 calls up to 1,000,000, then ¥0.30"),
        (
            METERED_CALLS | {"unit": "gb", "tiers": [{"price_per_1000_fen": 80_000}]},
            "¥800.00 per 1,000 GB",
        ),
        (PACKAGE, "10,000 calls for ¥400.00, valid 365 days"),
        (NEGOTIATED, "Price by negotiation (floor ¥10,000.00, guide ¥20,000.00)"),
        ({"model": "negotiated", "name": "n"}, "Price by negotiation"),
        (
            AUCTION,
            "Sealed-bid second-price auction of an exclusive licence, reserve ¥50,000.00, "
            "bids open 14 days",
        ),
        (FIXED | {"currency": "USD"}, "$1,200.00 one-off"),
        (FIXED | {"currency": "HKD"}, "HKD 1,200.00 one-off"),
    ],
)
def test_plan_summary_is_one_readable_line(raw: dict[str, Any], text: str) -> None:
    assert plan_summary(PLAN.validate_python(raw)) == text


def test_money_uses_the_currency_minor_unit() -> None:
    assert format_money(5, "CNY") == "¥0.05"
    assert format_money(1500, "JPY") == "JPY 1,500"
    assert format_money(1500, "KWD") == "KWD 1.500"
