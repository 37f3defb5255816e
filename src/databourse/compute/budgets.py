"""Charging a contract's privacy budget (隐私预算): atomically, before a result is released.

The budget of a contract and privacy unit is created on its first charge, with the totals
the contract's policy grants (``output.epsilon_micro``, ``output.delta_pico``). A charge
locks the budget's row, checks the ledger still agrees with it, refuses what the remaining
budget does not cover (``privacy-budget-exhausted``, with what remains), and records the
spend on the ledger (``budget.charged``) in the same transaction as the caller's own
changes — so a result whose charge did not commit is never released, and concurrent
queries queue on the row and can never overspend.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from databourse.catalog.policy import UsagePolicy
from databourse.compute.budget import Budget
from databourse.compute.errors import BudgetExhausted, InvalidPrivacyParameter, NoPrivacyBudget
from databourse.compute.models import PrivacyBudget
from databourse.db import utcnow
from databourse.errors import NotFound
from databourse.ledger.writer import assert_untampered
from databourse.market.models import Contract
from databourse.uow import UnitOfWork

MAX_UNIT = 200


def subject_of(contract_id: str, privacy_unit: str) -> str:
    return f"budget:{contract_id}:{privacy_unit}"


def state(b: PrivacyBudget) -> dict[str, Any]:
    return {
        "contract_id": b.contract_id,
        "privacy_unit": b.privacy_unit,
        "epsilon_micro": b.epsilon_micro,
        "delta_pico": b.delta_pico,
        "spent_epsilon_micro": b.spent_epsilon_micro,
        "spent_delta_pico": b.spent_delta_pico,
    }


def of(b: PrivacyBudget) -> Budget:
    return Budget(b.epsilon_micro, b.delta_pico, b.spent_epsilon_micro, b.spent_delta_pico)


def granted(c: Contract) -> tuple[int, int]:
    """(ε, δ) in units that the contract's policy grants; ``NoPrivacyBudget`` if none."""
    output = UsagePolicy.model_validate(c.policy).output
    if output.epsilon_micro is None:
        raise NoPrivacyBudget(
            f"contract {c.id}'s policy grants no privacy budget", contract_id=c.id
        )
    return output.epsilon_micro, output.delta_pico or 0


def _locked(uow: UnitOfWork, c: Contract, unit: str) -> PrivacyBudget:
    """The budget row, created with the policy's totals if new, locked for update."""
    s = uow.session
    key = (c.id, unit)
    b = s.get(PrivacyBudget, key, with_for_update=True)
    if b is not None:
        return b
    eps, delta = granted(c)
    now = utcnow()
    insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
    s.execute(
        insert(PrivacyBudget)
        .values(
            contract_id=c.id,
            privacy_unit=unit,
            epsilon_micro=eps,
            delta_pico=delta,
            spent_epsilon_micro=0,
            spent_delta_pico=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    b = s.get(PrivacyBudget, key, with_for_update=True, populate_existing=True)
    assert b is not None
    return b


def charge(
    uow: UnitOfWork,
    contract_id: str,
    privacy_unit: str,
    epsilon_micro: int,
    delta_pico: int = 0,
    ref: str | None = None,
) -> Budget:
    """Spend ε and δ (integer units) of the contract's budget for the privacy unit; the
    budget after the charge. ``ref`` names what the charge paid for (a query, a job)."""
    for name, v in (("epsilon_micro", epsilon_micro), ("delta_pico", delta_pico)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidPrivacyParameter(f"{name} must be a non-negative integer", parameter=name)
    if not privacy_unit or len(privacy_unit) > MAX_UNIT:
        raise InvalidPrivacyParameter("name the privacy unit", parameter="privacy_unit")
    c = uow.session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    b = _locked(uow, c, privacy_unit)
    subject = subject_of(c.id, privacy_unit)
    assert_untampered(uow, subject, state(b))
    budget = of(b)
    if not budget.affords(epsilon_micro, delta_pico):
        raise BudgetExhausted(
            f"the query needs ε {epsilon_micro / 1e6:g} and δ {delta_pico / 1e12:g}; "
            f"ε {budget.remaining_epsilon_micro / 1e6:g} and "
            f"δ {budget.remaining_delta_pico / 1e12:g} remain",
            contract_id=c.id,
            privacy_unit=privacy_unit,
            remaining=budget.remaining(),
        )
    b.spent_epsilon_micro += epsilon_micro
    b.spent_delta_pico += delta_pico
    b.updated_at = utcnow()
    uow.session.flush()
    uow.record(
        "budget.charged",
        subject,
        {
            "contract_id": c.id,
            "privacy_unit": privacy_unit,
            "epsilon_micro": epsilon_micro,
            "delta_pico": delta_pico,
            "ref": ref,
        },
        state(b),
        (c.buyer_org_id, c.merchant_org_id),
    )
    return of(b)


def read(session: Session, contract_id: str, privacy_unit: str) -> Budget:
    """The budget as it stands (the policy's totals if nothing was spent yet)."""
    b = session.get(PrivacyBudget, (contract_id, privacy_unit))
    if b is not None:
        return of(b)
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    eps, delta = granted(c)
    return Budget(eps, delta)
