"""Pure money arithmetic: balanced posting sets, fees, commissions and dispute splits.

Amounts are integer minor units (fen). Rates are basis points (1 bp = 0.01 %). Rounding is
half up on the exact rational value, once per amount, so a fee never depends on how the
price was reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BP = 10_000  # basis points in a whole


@dataclass(frozen=True)
class Leg:
    """One side of a movement: ``amount`` is added to the account's signed balance."""

    account_id: str
    amount: int


class Unbalanced(ValueError):
    """A posting set whose legs do not sum to zero: money would be created or destroyed."""


def check_balanced(legs: Sequence[Leg]) -> None:
    if not legs:
        raise Unbalanced("a movement needs at least two legs")
    if any(isinstance(leg.amount, bool) or not isinstance(leg.amount, int) for leg in legs):
        raise Unbalanced("amounts are integers of minor units")
    total = sum(leg.amount for leg in legs)
    if total != 0:
        raise Unbalanced(f"the legs sum to {total}, not 0")


def merge(legs: Sequence[Leg]) -> list[Leg]:
    """One leg per account (zero legs dropped), in account-id order: the lock order."""
    totals: dict[str, int] = {}
    for leg in legs:
        totals[leg.account_id] = totals.get(leg.account_id, 0) + leg.amount
    return [Leg(a, n) for a, n in sorted(totals.items()) if n != 0]


def round_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def rate_of(amount: int, rate_bp: int) -> int:
    """``amount × rate_bp / 10,000``, rounded half up to a whole minor unit."""
    if amount < 0 or rate_bp < 0:
        raise ValueError("amounts and rates are not negative")
    return round_half_up(amount * rate_bp, BP)


@dataclass(frozen=True)
class Shares:
    """How a price paid by the buyer is divided at settlement."""

    price: int
    fee: int  # the exchange's fee revenue
    commission: int  # the agent's commission (paid out of the merchant's share)

    @property
    def merchant(self) -> int:
        return self.price - self.fee - self.commission


def shares(price: int, fee_bp: int, commission_bp: int = 0, min_fee: int = 0) -> Shares:
    """Fee at the schedule's rate (at least ``min_fee``) and commission at the agency rate,
    never together more than the price: the merchant's share is never negative."""
    fee = min(max(rate_of(price, fee_bp), min_fee), price)
    commission = min(rate_of(price, commission_bp), price - fee)
    return Shares(price, fee, commission)


def split_shares(
    held: int, to_merchant: int, fee_bp: int, commission_bp: int, min_fee: int = 0
) -> tuple[int, Shares]:
    """A dispute's resolution: the buyer gets ``held - to_merchant`` back; the merchant's
    part is settled like a price (fee and commission on that part only)."""
    if not 0 <= to_merchant <= held:
        raise ValueError(f"the merchant's part must be between 0 and {held}")
    part = shares(to_merchant, fee_bp, commission_bp, min_fee if to_merchant else 0)
    return held - to_merchant, part
