"""The pure money arithmetic: balanced posting sets, rounding, fees, commissions, splits."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databourse.settlement import money
from databourse.settlement.money import Leg, Unbalanced

PRICES = st.integers(min_value=0, max_value=10**15)
RATES = st.integers(min_value=0, max_value=10_000)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(4, 10, 0), (5, 10, 1), (15, 10, 2), (25, 10, 3), (149, 100, 1), (150, 100, 2), (0, 7, 0)],
)
def test_rounding_is_half_up(numerator: int, denominator: int, expected: int) -> None:
    assert money.round_half_up(numerator, denominator) == expected


@given(st.integers(min_value=0, max_value=10**18), st.integers(min_value=1, max_value=10**6))
def test_rounding_is_the_nearest_integer_ties_up(numerator: int, denominator: int) -> None:
    got = money.round_half_up(numerator, denominator)
    exact = Fraction(numerator, denominator)
    assert got - Fraction(1, 2) <= exact < got + Fraction(1, 2)


def test_rate_of_rounds_once_on_the_exact_value() -> None:
    assert money.rate_of(50, 300) == 2  # 1.5 fen → 2
    assert money.rate_of(49, 300) == 1  # 1.47 fen → 1
    assert money.rate_of(10_000, 1) == 1
    with pytest.raises(ValueError):
        money.rate_of(-1, 300)
    with pytest.raises(ValueError):
        money.rate_of(100, -1)


@given(PRICES, RATES, RATES, st.integers(min_value=0, max_value=10**6))
def test_shares_are_never_negative_and_add_up_to_the_price(
    price: int, fee_bp: int, commission_bp: int, min_fee: int
) -> None:
    s = money.shares(price, fee_bp, commission_bp, min_fee)
    assert min(s.fee, s.commission, s.merchant) >= 0
    assert s.fee + s.commission + s.merchant == price
    assert s.fee == min(max(money.rate_of(price, fee_bp), min_fee), price)
    assert s.commission <= money.rate_of(price, commission_bp)


def test_shares_of_a_typical_trade() -> None:
    s = money.shares(123_456, 300, 500)
    assert (s.fee, s.commission, s.merchant) == (3704, 6173, 113_579)
    tiny = money.shares(50, 300, 0, min_fee=100)  # the minimum fee never exceeds the price
    assert (tiny.fee, tiny.merchant) == (50, 0)


@given(st.integers(min_value=0, max_value=10**12), st.data(), RATES, RATES)
def test_a_split_returns_the_rest_to_the_buyer(
    held: int, data: st.DataObject, fee_bp: int, commission_bp: int
) -> None:
    to_merchant = data.draw(st.integers(min_value=0, max_value=held))
    refund, part = money.split_shares(held, to_merchant, fee_bp, commission_bp, min_fee=100)
    assert refund + part.price == held
    assert part.fee + part.commission + part.merchant == to_merchant
    assert min(refund, part.fee, part.commission, part.merchant) >= 0
    if to_merchant == 0:
        assert part.fee == 0  # no minimum fee on nothing


def test_a_split_outside_the_held_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        money.split_shares(100, 101, 300, 0)
    with pytest.raises(ValueError):
        money.split_shares(100, -1, 300, 0)


def test_balanced_sets() -> None:
    money.check_balanced([Leg("a", -5), Leg("b", 3), Leg("c", 2)])
    for legs in ([], [Leg("a", 1), Leg("b", -2)], [Leg("a", True), Leg("b", -1)]):
        with pytest.raises(Unbalanced):
            money.check_balanced(legs)
    with pytest.raises(Unbalanced):
        money.check_balanced([Leg("a", 1.0), Leg("b", -1.0)])


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.integers(-1000, 1000)), max_size=30))
def test_merge_gives_one_leg_per_account_in_lock_order(pairs: list[tuple[str, int]]) -> None:
    merged = money.merge([Leg(a, n) for a, n in pairs])
    ids = [leg.account_id for leg in merged]
    assert ids == sorted(set(ids))
    assert all(leg.amount != 0 for leg in merged)
    for account in "abcde":
        want = sum(n for a, n in pairs if a == account)
        assert sum(leg.amount for leg in merged if leg.account_id == account) == want
