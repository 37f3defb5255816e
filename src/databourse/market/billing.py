"""Metered billing: each period of a metered contract is billed from its usage records,
taken from the buyer's prepaid balance or, when the contract bills by invoice (or the
balance falls short), invoiced with a due date.

Periods are ``billing_period_days`` long from the contract's start; the last one ends with
the term. Graduated tiers apply to each period's units afresh.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog.pricing import MeteredPlan, metered_charge
from databourse.db import new_id, utcnow
from databourse.errors import InvalidTransition, NotFound
from databourse.ledger.writer import assert_untampered
from databourse.market.contracts import load, record
from databourse.market.models import Contract, ContractStatus
from databourse.market.trades import settle
from databourse.settings import Settings
from databourse.settlement import usage
from databourse.settlement.models import EXCHANGE, AccountKind, Bill, BillStatus
from databourse.settlement.money import Shares, shares
from databourse.settlement.services import (
    Leg,
    Movement,
    account_id,
    balance_of,
    lock_accounts,
    move,
)
from databourse.uow import UnitOfWork

A = AccountKind
BILLED = frozenset(
    {
        ContractStatus.active,
        ContractStatus.expired,
        ContractStatus.suspended,
        ContractStatus.terminated,
    }
)


def bill_state(b: Bill) -> dict[str, object]:
    """Every column of a bill: paying one reads its amounts and parties."""
    return {
        "id": b.id,
        "contract_id": b.contract_id,
        "buyer_org_id": b.buyer_org_id,
        "merchant_org_id": b.merchant_org_id,
        "period_start": b.period_start,
        "period_end": b.period_end,
        "unit": b.unit,
        "units": b.units,
        "amount_fen": b.amount_fen,
        "fee_fen": b.fee_fen,
        "commission_fen": b.commission_fen,
        "currency": b.currency,
        "status": b.status,
        "due_at": b.due_at,
        "journal_id": b.journal_id,
        "paid_journal_id": b.paid_journal_id,
    }


def _plan(c: Contract) -> MeteredPlan:
    return MeteredPlan.model_validate({k: v for k, v in c.plan.items() if k != "agreed"})


def _record_bill(uow: UnitOfWork, kind: str, b: Bill) -> None:
    uow.session.flush()
    uow.record(
        f"bill.{kind}",
        b.id,
        {
            "contract_id": b.contract_id,
            "status": b.status,
            "amount_fen": b.amount_fen,
            "units": b.units,
        },
        bill_state(b),
        (b.buyer_org_id, b.merchant_org_id),
    )


def bill_due(uow: UnitOfWork, settings: Settings, contract_id: str) -> int:
    """Bill every finished period of a metered contract; returns how many were billed."""
    c = load(uow, contract_id)
    if c.billing not in ("prepaid", "invoice") or c.status not in BILLED:
        return 0
    plan, now = _plan(c), utcnow()
    period = timedelta(days=settings.billing_period_days)
    start, count = c.billed_until or c.starts_at, 0
    # a terminated contract is billed up to its termination, not to the end of its term
    last = min(c.ends_at, c.updated_at) if c.status == ContractStatus.terminated else c.ends_at
    # every account a period can move, locked up front in id order (the lock order), so
    # whether the prepaid balance covers a period is decided on a locked balance
    _lock_parties(uow, c)
    while start < last:
        end = min(start + period, last)
        if end > now:
            break
        units = usage.units_in(uow.session, c.id, plan.unit, start, end)
        amount = metered_charge(plan, units)
        s = shares(amount, c.fee_bp, c.commission_bp, c.fee_min_fen if amount else 0)
        b = Bill(
            id=new_id("bil"),
            contract_id=c.id,
            buyer_org_id=c.buyer_org_id,
            merchant_org_id=c.merchant_org_id,
            period_start=start,
            period_end=end,
            unit=plan.unit,
            units=units,
            amount_fen=amount,
            fee_fen=s.fee,
            commission_fen=s.commission,
            currency=c.currency,
            status=BillStatus.nothing,
            detail={"plan": plan.name},
            created_at=now,
        )
        funded = balance_of(uow.session, c.buyer_org_id, A.available, c.currency) >= amount
        if amount and c.billing == "prepaid" and funded:
            source = (Leg(c.buyer_org_id, A.available, -amount),)
            b.journal_id = settle(uow, c, "metered.charge", c.id, s, source)
            b.status = BillStatus.charged
        elif amount:
            b.journal_id = move(
                uow,
                Movement(
                    "invoice.issue",
                    c.id,
                    c.currency,
                    (
                        Leg(c.merchant_org_id, A.receivable, amount),
                        Leg(c.buyer_org_id, A.payable, -amount),
                    ),
                ),
            )
            b.status, b.due_at = (
                BillStatus.invoiced,
                end + timedelta(days=settings.invoice_due_days),
            )
        uow.session.add(b)
        _record_bill(uow, "issued", b)
        c.billed_until, start, count = end, end, count + 1
    if count:
        record(uow, "billed", c, periods=count)
    return count


def _lock_parties(uow: UnitOfWork, c: Contract) -> None:
    kinds = [
        (c.buyer_org_id, A.available),
        (c.buyer_org_id, A.payable),
        (c.merchant_org_id, A.available),
        (c.merchant_org_id, A.receivable),
        (EXCHANGE, A.fee_revenue),
        (EXCHANGE, A.commission_payable),
    ]
    lock_accounts(
        uow.session,
        {account_id(o, k, c.currency): (o, k, c.currency) for o, k in kinds},
    )


def pay_bill(uow: UnitOfWork, principal: Principal, bill_id: str) -> Bill:
    """The buyer pays an invoice from its available balance."""
    b = uow.session.get(Bill, bill_id, with_for_update=True, populate_existing=True)
    if b is None:
        raise NotFound(f"bill {bill_id} not found")
    try:
        authorize(principal, "bill.pay", b.buyer_org_id)
    except NotFound:
        raise NotFound(f"bill {bill_id} not found") from None
    assert_untampered(uow, b.id, bill_state(b))
    if b.status != BillStatus.invoiced:
        raise InvalidTransition(f"the bill is {b.status}", current_status=b.status)
    c = uow.session.get(Contract, b.contract_id)
    assert c is not None
    s = Shares(b.amount_fen, b.fee_fen, b.commission_fen)
    source = (
        Leg(b.buyer_org_id, A.available, -b.amount_fen),
        Leg(b.buyer_org_id, A.payable, b.amount_fen),
        Leg(b.merchant_org_id, A.receivable, -b.amount_fen),
    )
    b.paid_journal_id = settle(uow, c, "invoice.pay", b.id, s, source)
    b.status = BillStatus.paid
    _record_bill(uow, "paid", b)
    return b


def list_bills(
    session: Session, principal: Principal, contract_id: str | None, limit: int, offset: int
) -> list[Bill]:
    q = select(Bill)
    if authorize(principal, "bill.list") is Reach.OWN:
        me = principal.org_id
        q = q.where((Bill.buyer_org_id == me) | (Bill.merchant_org_id == me))
    if contract_id:
        q = q.where(Bill.contract_id == contract_id)
    return list(
        session.scalars(q.order_by(Bill.period_start.desc(), Bill.id).limit(limit).offset(offset))
    )
