"""A trade's money, delivery versus payment (BRIEF §9): pay into escrow, deliver, accept
(or let the acceptance window lapse), release to the merchant minus the exchange's fee and
the agent's commission; cancel before delivery to refund; dispute to freeze until the
operator splits the escrow. Each command locks the contract first, then the accounts.

Payment states: ``unpaid → held → delivered → released``; ``held → refunded`` (cancelled);
``held | delivered → frozen → resolved`` (disputed). Free and metered contracts: ``none``.
"""

from __future__ import annotations

from datetime import timedelta

from databourse.auth.policy import Principal
from databourse.db import utcnow
from databourse.errors import InvalidTransition, ValidationFailed
from databourse.market.contracts import authorize_on, load, record
from databourse.market.errors import ContractSuspended, CounterpartySuspended
from databourse.market.models import Contract, ContractStatus, PaymentStatus
from databourse.settlement import fees
from databourse.settlement.models import EXCHANGE, AccountKind
from databourse.settlement.money import Shares, shares, split_shares
from databourse.settlement.services import Leg, Movement, move
from databourse.uow import UnitOfWork

A = AccountKind


def _refuse_if_suspended(c: Contract) -> None:
    if c.status == ContractStatus.suspended:
        raise ContractSuspended(f"contract {c.id} is suspended: {c.reason or 'see the ledger'}")


def _refuse_if_merchant_stopped(uow: UnitOfWork, c: Contract) -> None:
    """A suspension (叫停) of the merchant or of its product stops money moving to it: the
    buyer cannot pay in and the escrow is not released until it is lifted."""
    from databourse.catalog.models import Product
    from databourse.participants.models import Organisation

    org = uow.session.get(Organisation, c.merchant_org_id)
    product = uow.session.get(Product, c.product_id)
    if org is None or org.status != "admitted":
        raise CounterpartySuspended(
            f"the merchant is {org.status if org else 'gone'}; the money stays where it is"
        )
    if product is None or product.status == "suspended":
        raise CounterpartySuspended("the product is suspended; the money stays where it is")


def _need(c: Contract, *states: str) -> None:
    if c.payment_status not in states:
        raise InvalidTransition(
            f"the payment is {c.payment_status}; this needs it " + " or ".join(states),
            current_status=c.payment_status,
        )


def pay(uow: UnitOfWork, principal: Principal, contract_id: str) -> Contract:
    """The buyer pays the price into escrow; the contract becomes active."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.pay", c, side="buyer")
    _refuse_if_suspended(c)
    if c.status == ContractStatus.awaiting_signatures:
        raise InvalidTransition("both parties must sign before payment", current_status=c.status)
    _need(c, PaymentStatus.unpaid)
    if c.status != ContractStatus.signed:
        raise InvalidTransition(f"the contract is {c.status}", current_status=c.status)
    if utcnow() > c.sign_by:
        raise InvalidTransition(
            "the time to pay for this contract has passed", current_status=c.status
        )
    _refuse_if_merchant_stopped(uow, c)
    move(
        uow,
        Movement(
            "escrow.hold",
            c.id,
            c.currency,
            (
                Leg(c.buyer_org_id, A.available, -c.price_fen),
                Leg(c.buyer_org_id, A.escrow, c.price_fen),
            ),
        ),
    )
    c.escrow_fen = c.price_fen
    c.payment_status = PaymentStatus.held
    c.status = ContractStatus.active
    record(uow, "paid", c, amount_fen=c.price_fen)
    return c


def deliver(uow: UnitOfWork, principal: Principal, contract_id: str) -> Contract:
    """The merchant declares delivery; the buyer's acceptance window starts."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.deliver", c, side="merchant")
    _refuse_if_suspended(c)
    _need(c, PaymentStatus.held)
    if c.status != ContractStatus.active:
        raise InvalidTransition(f"the contract is {c.status}", current_status=c.status)
    now = utcnow()
    c.payment_status = PaymentStatus.delivered
    c.delivered_at = now
    c.accept_by = now + timedelta(days=c.acceptance_days)
    record(uow, "delivered", c)
    return c


def settle(
    uow: UnitOfWork, c: Contract, kind: str, ref: str, s: Shares, source: tuple[Leg, ...]
) -> str:
    """One settlement journal: the ``source`` legs pay ``s.price``, the merchant gets its
    share, the exchange its fee and the agent's commission (accrued to it). Every way money
    reaches a merchant goes through here: release, dispute split, metered charge, invoice."""
    legs = [
        *source,
        Leg(c.merchant_org_id, A.available, s.merchant),
        Leg(EXCHANGE, A.fee_revenue, s.fee),
    ]
    if s.commission:
        legs.append(Leg(EXCHANGE, A.commission_payable, s.commission))
    jid = move(uow, Movement(kind, ref, c.currency, tuple(legs)))
    if s.commission and c.agent_org_id:
        fees.accrue_commission(uow, c.agent_org_id, c.id, jid, s.commission, c.currency)
    return jid


def _release(uow: UnitOfWork, c: Contract, how: str) -> None:
    _refuse_if_merchant_stopped(uow, c)
    split = shares(c.escrow_fen, c.fee_bp, c.commission_bp, c.fee_min_fen)
    source = (Leg(c.buyer_org_id, A.escrow, -c.escrow_fen),)
    settle(uow, c, "escrow.release", c.id, split, source)
    c.escrow_fen = 0
    c.payment_status = PaymentStatus.released
    record(
        uow,
        "settled",
        c,
        how=how,
        merchant_fen=split.merchant,
        fee_fen=split.fee,
        commission_fen=split.commission,
    )


def accept(uow: UnitOfWork, principal: Principal, contract_id: str) -> Contract:
    """The buyer accepts delivery: the escrow is released to the merchant."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.accept", c, side="buyer")
    _refuse_if_suspended(c)
    _need(c, PaymentStatus.held, PaymentStatus.delivered)
    _release(uow, c, "accepted")
    return c


def cancel(uow: UnitOfWork, principal: Principal, contract_id: str, reason: str | None) -> Contract:
    """Either party cancels before delivery; money in escrow goes back to the buyer."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.cancel", c)
    if c.status not in (
        ContractStatus.awaiting_signatures,
        ContractStatus.signed,
        ContractStatus.active,
    ):
        raise InvalidTransition(
            f"cannot cancel a contract that is {c.status}", current_status=c.status
        )
    if c.payment_status not in (PaymentStatus.unpaid, PaymentStatus.held, PaymentStatus.none):
        raise InvalidTransition(
            f"the payment is {c.payment_status}: after delivery, dispute instead of cancelling",
            current_status=c.payment_status,
        )
    if c.payment_status == PaymentStatus.none and c.status == ContractStatus.active:
        raise InvalidTransition(
            "an active contract billed by use ends by termination", current_status=c.status
        )
    _refund(uow, c)
    c.status = ContractStatus.terminated
    c.reason = reason or "cancelled"
    record(uow, "cancelled", c)
    return c


def _refund(uow: UnitOfWork, c: Contract) -> None:
    if c.payment_status == PaymentStatus.held and c.escrow_fen:
        move(
            uow,
            Movement(
                "escrow.refund",
                c.id,
                c.currency,
                (
                    Leg(c.buyer_org_id, A.escrow, -c.escrow_fen),
                    Leg(c.buyer_org_id, A.available, c.escrow_fen),
                ),
            ),
        )
        c.escrow_fen = 0
        c.payment_status = PaymentStatus.refunded


def dispute(uow: UnitOfWork, principal: Principal, contract_id: str, reason: str) -> Contract:
    """A party disputes the trade: the escrow is frozen until the operator resolves it."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.dispute", c)
    _need(c, PaymentStatus.held, PaymentStatus.delivered)
    c.payment_status = PaymentStatus.frozen
    c.reason = reason
    record(uow, "disputed", c)
    return c


def resolve(
    uow: UnitOfWork, principal: Principal, contract_id: str, to_merchant_fen: int, reason: str
) -> Contract:
    """The operator splits a frozen escrow: the merchant's part settles like a price (fee
    and commission on that part), the rest goes back to the buyer."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.resolve", c)
    _need(c, PaymentStatus.frozen)
    if to_merchant_fen > c.escrow_fen:
        raise ValidationFailed(
            f"the escrow holds {c.escrow_fen} fen; the merchant's part cannot exceed it",
            field="to_merchant_fen",
            value=to_merchant_fen,
        )
    to_buyer, part = split_shares(
        c.escrow_fen, to_merchant_fen, c.fee_bp, c.commission_bp, c.fee_min_fen
    )
    source = (
        Leg(c.buyer_org_id, A.escrow, -c.escrow_fen),
        Leg(c.buyer_org_id, A.available, to_buyer),
    )
    settle(uow, c, "escrow.split", c.id, part, source)
    c.escrow_fen = 0
    c.payment_status = PaymentStatus.resolved
    c.reason = reason
    record(
        uow,
        "resolved",
        c,
        to_buyer_fen=to_buyer,
        to_merchant_fen=part.merchant,
        fee_fen=part.fee,
        commission_fen=part.commission,
    )
    return c


def terminate(uow: UnitOfWork, principal: Principal, contract_id: str, reason: str) -> Contract:
    """The operator ends a contract; money held for undelivered data is refunded."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.terminate", c)
    if c.status in (ContractStatus.expired, ContractStatus.terminated, ContractStatus.void):
        raise InvalidTransition(f"the contract is already {c.status}", current_status=c.status)
    if c.payment_status in (PaymentStatus.delivered, PaymentStatus.frozen):
        raise InvalidTransition(
            "delivered or disputed money must be accepted or resolved first",
            current_status=c.payment_status,
        )
    _refund(uow, c)
    c.status = ContractStatus.terminated
    c.reason = reason
    record(uow, "terminated", c)
    return c


# Scheduled work (run by ``databourse trade run`` or POST /settlement/run) ----------------


def release_if_due(uow: UnitOfWork, contract_id: str) -> bool:
    c = load(uow, contract_id)
    if (
        c.payment_status != PaymentStatus.delivered
        or c.accept_by is None
        or c.accept_by > utcnow()
        or c.status == ContractStatus.suspended
    ):
        return False
    try:
        _release(uow, c, "acceptance window lapsed")
    except CounterpartySuspended:
        return False  # held until the suspension is lifted
    return True


def lapse_if_due(uow: UnitOfWork, contract_id: str) -> str | None:
    """Void an unsigned contract past ``sign_by``; expire a contract past its term."""
    c = load(uow, contract_id)
    now = utcnow()
    if c.status == ContractStatus.awaiting_signatures and c.sign_by <= now:
        c.status = ContractStatus.void
        record(uow, "voided", c)
        return "voided"
    if (
        c.status == ContractStatus.signed
        and c.payment_status == PaymentStatus.unpaid
        and (c.sign_by <= now)
    ):
        c.status = ContractStatus.void  # signed but never paid in time
        record(uow, "voided", c)
        return "voided"
    if c.status == ContractStatus.active and c.ends_at <= now:
        c.status = ContractStatus.expired
        record(uow, "expired", c)
        return "expired"
    return None
