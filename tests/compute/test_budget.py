"""Privacy budgets: exact integer units, conservative rounding, refusals, and charges that
can never overspend — 1,000 parallel queries at ε 0.01 against ε 1.0 accept exactly 100 —
on both stores."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from databourse.compute import budget, budgets
from databourse.compute.errors import BudgetExhausted, InvalidPrivacyParameter, NoPrivacyBudget
from databourse.compute.models import PrivacyBudget
from databourse.errors import DataBourseError
from databourse.ledger import audit
from databourse.ledger.models import LedgerEntry
from databourse.uow import UnitOfWork
from tests import factories
from tests.conftest import Exchange
from tests.market import world
from tests.market.world import key, ok

EPSILON_ONE = 1_000_000
DELTA = 1_000_000  # δ 10⁻⁶ in 10⁻¹²


# The arithmetic -----------------------------------------------------------------------


def test_units_are_exact_and_rounded_up() -> None:
    assert budget.epsilon_micro("0.01") == 10_000
    assert (
        budget.epsilon_micro(0.1) == 100_000
    )  # the float's shortest text, not 0.1000000000000000055…
    assert budget.epsilon_micro(1) == 1_000_000
    assert budget.epsilon_micro("1e-7") == 1  # never charged less than spent
    assert budget.delta_pico(1e-6) == 1_000_000
    assert budget.delta_pico(0) == 0


@pytest.mark.parametrize(
    "value", [-0.1, "-1", math.nan, math.inf, -math.inf, "nan", "inf", "abc", True, None, 1001]
)
def test_bad_epsilons_are_refused(value: object) -> None:
    with pytest.raises(InvalidPrivacyParameter):
        budget.epsilon_micro(value)


def test_delta_must_stay_below_one() -> None:
    with pytest.raises(InvalidPrivacyParameter):
        budget.delta_pico(1)


@given(st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False))
def test_six_decimal_places_convert_exactly(value: Decimal) -> None:
    assert budget.epsilon_micro(str(value)) == int(value * 10**6)


@given(st.floats(min_value=0, max_value=1000, allow_nan=False, allow_infinity=False))
def test_a_float_is_never_undercharged(value: float) -> None:
    units = budget.epsilon_micro(value)
    assert Decimal(units) / 10**6 >= Decimal(str(value))
    assert units - value * 10**6 < 1 + 1e-6  # by less than one unit


# Charging ------------------------------------------------------------------------------


def compute_contract(ex: Exchange, output: dict[str, object]) -> str:
    """An active contract on a listed compute product whose policy grants ``output``."""
    merchant, buyer = world.party(ex, ["merchant"]), world.party(ex, ["buyer"])
    policy = {k: v for k, v in factories.POLICY.items() if k != "count"}
    pid = world.listed_product(
        ex.ctx,
        merchant,
        "compute",
        "Customer statistics",
        ["region", "age", "balance"],
        [{"name": "free", "model": "free"}],
        {**policy, "purposes": ["research"], "output": output},
        ["华东", "30-39", "—"],
    )
    with world.client(ex, buyer) as b, world.client(ex, merchant) as m:
        terms = {"product_id": pid, "purpose": "research", "plan": "free"}
        c = ok(b.post("/contracts", json=terms, headers=key()), 201)
        ok(b.post(f"/contracts/{c['id']}/sign"))
        assert ok(m.post(f"/contracts/{c['id']}/sign"))["status"] == "active"
    return str(c["id"])


def spend(
    ex: Exchange, contract_id: str, eps: int, delta: int = 0, unit: str = "customer"
) -> budget.Budget:
    with UnitOfWork(ex.ctx.writes) as uow:
        left = budgets.charge(uow, contract_id, unit, eps, delta, ref="test")
        uow.commit()
    return left


def test_charges_until_exhausted_show_what_remains(exchange: Exchange) -> None:
    ex = exchange
    cid = compute_contract(ex, {"aggregates_only": True, "epsilon_micro": EPSILON_ONE,
                                "delta_pico": DELTA})  # fmt: skip
    with ex.ctx.reads() as s:
        assert budgets.read(s, cid, "customer").remaining_epsilon_micro == EPSILON_ONE
    left = spend(ex, cid, 600_000, 400_000)
    assert (left.remaining_epsilon_micro, left.remaining_delta_pico) == (400_000, 600_000)
    with pytest.raises(BudgetExhausted) as exc:
        spend(ex, cid, 500_000)
    assert exc.value.extra["remaining"]["epsilon_micro"] == 400_000
    assert "0.4" in exc.value.detail
    with pytest.raises(BudgetExhausted):
        spend(ex, cid, 1, 700_000)  # δ too
    assert spend(ex, cid, 400_000).remaining_epsilon_micro == 0
    # another privacy unit has its own budget
    assert spend(ex, cid, 1, unit="household").remaining_epsilon_micro == EPSILON_ONE - 1
    for bad in (-1, True):
        with pytest.raises(InvalidPrivacyParameter):
            spend(ex, cid, bad)  # type: ignore[arg-type]
    with ex.ctx.reads() as s:
        charged = s.scalars(
            select(LedgerEntry.kind).where(LedgerEntry.subject == f"budget:{cid}:customer")
        ).all()
    assert list(charged) == ["budget.charged", "budget.charged"]  # refusals spend nothing


def test_a_policy_without_a_budget_allows_no_charge(exchange: Exchange) -> None:
    cid = compute_contract(exchange, {"aggregates_only": True, "min_group_size": 10})
    with pytest.raises(NoPrivacyBudget):
        spend(exchange, cid, 1)


def test_parallel_queries_never_overspend(exchange: Exchange) -> None:
    """1,000 queries at ε 0.01 against a budget of ε 1.0, 16 at a time: exactly 100 pass."""
    ex = exchange
    cid = compute_contract(ex, {"aggregates_only": True, "epsilon_micro": EPSILON_ONE})

    def one(_: int) -> bool:
        try:
            spend(ex, cid, budget.epsilon_micro("0.01"))
            return True
        except BudgetExhausted:
            return False

    with ThreadPoolExecutor(16) as pool:
        accepted = sum(pool.map(one, range(1000)))
    assert accepted == 100
    with ex.ctx.reads() as s:
        row = s.get(PrivacyBudget, (cid, "customer"))
        assert row is not None and row.spent_epsilon_micro == EPSILON_ONE
        charges = s.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.subject == f"budget:{cid}:customer")
        )
    assert charges == 100  # one ledger entry per accepted query, none for refusals


def test_an_edited_budget_is_found_and_never_charged(exchange: Exchange) -> None:
    ex = exchange
    cid = compute_contract(ex, {"aggregates_only": True, "epsilon_micro": EPSILON_ONE})
    spend(ex, cid, 900_000)
    with ex.ctx.writes() as s:  # hand the buyer its budget back behind the exchange's back
        s.execute(
            update(PrivacyBudget)
            .where(PrivacyBudget.contract_id == cid)
            .values(spent_epsilon_micro=0)
        )
        s.commit()
    with ex.ctx.reads() as s:
        found = [f for f in audit.verify(s).findings if f.subject == f"budget:{cid}:customer"]
    assert [f.problem for f in found] == ["edited"]
    with pytest.raises(DataBourseError) as exc:
        spend(ex, cid, 500_000)
    assert exc.value.slug == "ledger-mismatch"
