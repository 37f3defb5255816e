"""Pricing plans of a product (BRIEF §8): free, fixed, subscription, metered, package,
negotiated and auction, as a pydantic union discriminated by ``model``.

Money is integer minor units (fen for CNY) — never floats — with an ISO 4217 currency.
Metered tiers are priced per 1,000 units so that sub-fen unit prices (¥0.005 a call) stay
integers: ``price_per_1000_fen=500`` is ¥5.00 per 1,000 calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from databourse.catalog.errors import InvalidPricing
from databourse.catalog.vocab import ProductKind
from databourse.schemas import Strict

MAX_FEN = 10**15  # ten trillion yuan: any larger amount is a typing error
MAX_UNITS = 10**15
MAX_PLANS = 20

Fen = Annotated[int, Field(ge=0, le=MAX_FEN)]
Units = Annotated[int, Field(gt=0, le=MAX_UNITS)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Unit = Literal["call", "row", "gb"]


class _Plan(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    currency: Currency = "CNY"


class FreePlan(_Plan):
    model: Literal["free"]


class FixedPlan(_Plan):
    """A one-off price for the licence."""

    model: Literal["fixed"]
    price_fen: Fen


class SubscriptionPlan(_Plan):
    model: Literal["subscription"]
    price_fen: Fen
    period: Literal["month", "quarter", "year"]


class Tier(Strict):
    """Units beyond the previous tier's bound and up to ``up_to`` (None: no bound)."""

    up_to: Units | None = None
    price_per_1000_fen: Fen


class MeteredPlan(_Plan):
    """Graduated tiers: each tier's units are charged at that tier's price."""

    model: Literal["metered"]
    unit: Unit
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=20)]


class PackagePlan(_Plan):
    """A prepaid bundle: ``units`` calls, rows or GB for ``price_fen``, used within the days."""

    model: Literal["package"]
    unit: Unit
    units: Units
    price_fen: Fen
    valid_days: Annotated[int, Field(gt=0, le=3660)]


class NegotiatedPlan(_Plan):
    model: Literal["negotiated"]
    floor_fen: Fen | None = None
    guide_fen: Fen | None = None


class AuctionPlan(_Plan):
    """Sealed-bid second-price auction of an exclusive licence."""

    model: Literal["auction"]
    reserve_fen: Fen
    bidding_days: Annotated[int, Field(ge=1, le=90)]
    exclusive: Literal[True] = True


PricingPlan = Annotated[
    FreePlan
    | FixedPlan
    | SubscriptionPlan
    | MeteredPlan
    | PackagePlan
    | NegotiatedPlan
    | AuctionPlan,
    Field(discriminator="model"),
]


def validate_plans(plans: Sequence[PricingPlan], kind: str) -> None:
    """Raise ``InvalidPricing`` naming the first plan that does not fit the product."""
    if kind not in set(ProductKind):
        raise InvalidPricing(f"unknown product kind {kind!r}", field="kind", value=kind)
    if not plans:
        raise InvalidPricing("a product needs at least one pricing plan", field="plans")
    if len(plans) > MAX_PLANS:
        raise InvalidPricing(f"a product has at most {MAX_PLANS} plans", field="plans")
    seen: set[str] = set()
    for i, plan in enumerate(plans):
        where = f"plans[{i}]"
        if plan.name.casefold() in seen:
            raise InvalidPricing(
                f"two plans are named {plan.name!r}", field=f"{where}.name", value=plan.name
            )
        seen.add(plan.name.casefold())
        if plan.currency != plans[0].currency:
            raise InvalidPricing(
                f"plan {plan.name!r} is priced in {plan.currency} but the product in "
                f"{plans[0].currency}; a product has one currency",
                field=f"{where}.currency",
                value=plan.currency,
            )
        _check_plan(plan, kind, where)


def _check_plan(plan: PricingPlan, kind: str, where: str) -> None:
    if isinstance(plan, MeteredPlan | PackagePlan):
        _check_unit(plan, kind, where)
    if isinstance(plan, MeteredPlan):
        _check_tiers(plan, where)
    if isinstance(plan, AuctionPlan) and kind != ProductKind.dataset:
        raise InvalidPricing(
            f"an auction sells an exclusive licence to a dataset, not to {kind} products",
            field=f"{where}.model",
            value="auction",
        )
    if (
        isinstance(plan, NegotiatedPlan)
        and plan.floor_fen is not None
        and plan.guide_fen is not None
        and plan.guide_fen < plan.floor_fen
    ):
        raise InvalidPricing(
            f"plan {plan.name!r}: the guide price is below the floor",
            field=f"{where}.guide_fen",
            value=plan.guide_fen,
        )


def _check_unit(plan: MeteredPlan | PackagePlan, kind: str, where: str) -> None:
    by_call = plan.unit == "call"
    if by_call and kind == ProductKind.dataset:
        raise InvalidPricing(
            f"plan {plan.name!r} charges per call, but a dataset is downloaded: "
            "charge per row or per GB",
            field=f"{where}.unit",
            value=plan.unit,
        )
    if not by_call and kind != ProductKind.dataset:
        raise InvalidPricing(
            f"plan {plan.name!r} charges per {plan.unit}, which only fits a dataset; "
            f"{kind} products are charged per call",
            field=f"{where}.unit",
            value=plan.unit,
        )


def _check_tiers(plan: MeteredPlan, where: str = "plan") -> None:
    bounds = [t.up_to for t in plan.tiers]
    if bounds[-1] is not None:
        raise InvalidPricing(
            f"plan {plan.name!r}: the last tier must be unbounded (up_to null)",
            field=f"{where}.tiers",
        )
    previous = 0
    for j, bound in enumerate(bounds[:-1]):
        if bound is None or bound <= previous:
            raise InvalidPricing(
                f"plan {plan.name!r}: tier bounds must rise strictly, only the last unbounded",
                field=f"{where}.tiers[{j}].up_to",
                value=bound,
            )
        previous = bound


def _round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def metered_charge(plan: MeteredPlan, units: int) -> int:
    """The charge in minor units for ``units`` used under graduated tiers.

    Each tier's total (its units × price per 1,000 / 1,000) is rounded half up to a whole
    fen on its own, then the tiers are summed. So the charge never decreases with usage,
    and the charge up to a tier bound plus the next tier's rounded charge is the total.
    """
    if isinstance(units, bool) or not isinstance(units, int) or not 0 <= units <= MAX_UNITS:
        raise ValueError(f"units must be an integer from 0 to {MAX_UNITS}, not {units!r}")
    _check_tiers(plan)
    total, start = 0, 0
    for tier in plan.tiers:
        end = units if tier.up_to is None else min(units, tier.up_to)
        if end <= start:
            break
        total += _round_half_up((end - start) * tier.price_per_1000_fen, 1000)
        start = end
    return total


def plan_price(plan: PricingPlan) -> int:
    """One comparable price per plan, for search filters and price ranges.

    free 0; fixed, subscription (one period) and package their price; metered the charge
    for the first 1,000 units; negotiated the floor, else the guide, else 0; auction the
    reserve.
    """
    match plan:
        case FreePlan():
            return 0
        case FixedPlan() | SubscriptionPlan() | PackagePlan():
            return plan.price_fen
        case MeteredPlan():
            return metered_charge(plan, 1000)
        case NegotiatedPlan():
            return plan.floor_fen or plan.guide_fen or 0
        case AuctionPlan():
            return plan.reserve_fen
    raise TypeError(f"not a pricing plan: {plan!r}")


def price_range(plans: Sequence[PricingPlan]) -> tuple[int, int]:
    """(min, max) plan price: min is 0 when a plan is free, else the cheapest non-zero price."""
    if not plans:
        return 0, 0
    prices = [plan_price(p) for p in plans]
    priced = [p for plan, p in zip(plans, prices, strict=True) if p > 0 and plan.model != "free"]
    free = any(p.model == "free" for p in plans)
    return (0 if free or not priced else min(priced)), max(prices)


# ISO 4217 currencies whose minor unit is not 1/100 (the rest, CNY included, use two digits).
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "VND": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "OMR": 3}
_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£"}


def format_money(minor: int, currency: str = "CNY") -> str:
    """¥1,234.50 — the symbol where it is unambiguous, else the ISO code and a space."""
    digits = _MINOR_DIGITS.get(currency, 2)
    whole, frac = divmod(minor, 10**digits)
    amount = f"{whole:,}" + (f".{frac:0{digits}d}" if digits else "")
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{amount}" if symbol else f"{currency} {amount}"


_UNIT_PLURAL = {"call": "calls", "row": "rows", "gb": "GB"}


def plan_summary(plan: PricingPlan) -> str:
    """One line in English describing the plan, for listings and contracts."""

    def money(fen: int) -> str:
        return format_money(fen, plan.currency)

    match plan:
        case FreePlan():
            return "Free"
        case FixedPlan():
            return f"{money(plan.price_fen)} one-off"
        case SubscriptionPlan():
            return f"{money(plan.price_fen)} per {plan.period}"
        case MeteredPlan():
            first, *rest = plan.tiers
            text = f"{money(first.price_per_1000_fen)} per 1,000 {_UNIT_PLURAL[plan.unit]}"
            for before, tier in zip(plan.tiers, rest, strict=False):
                text += f" up to {before.up_to or 0:,}, then {money(tier.price_per_1000_fen)}"
            return text
        case PackagePlan():
            units = f"{plan.units:,} {_UNIT_PLURAL[plan.unit]}"
            return f"{units} for {money(plan.price_fen)}, valid {plan.valid_days} days"
        case NegotiatedPlan():
            terms = [
                f"{label} {money(v)}"
                for label, v in (("floor", plan.floor_fen), ("guide", plan.guide_fen))
                if v is not None
            ]
            return "Price by negotiation" + (f" ({', '.join(terms)})" if terms else "")
        case AuctionPlan():
            return (
                "Sealed-bid second-price auction of an exclusive licence, reserve "
                f"{money(plan.reserve_fen)}, bids open {plan.bidding_days} days"
            )
    raise TypeError(f"not a pricing plan: {plan!r}")
