"""Negotiation (议价): a buyer's inquiry on a listed product, offers and counter-offers
within what the listing allows, until one side accepts the other's standing offer, either
withdraws, or the standing offer expires. Acceptance drafts the contract at once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog import services as catalog
from databourse.db import new_id, utcnow
from databourse.errors import Forbidden, InvalidTransition, NotFound
from databourse.ledger.writer import assert_untampered
from databourse.market import contracts, schemas, terms
from databourse.market.errors import NotYourTurn, OfferExpired
from databourse.market.models import (
    Contract,
    Negotiation,
    NegotiationStatus,
    Offer,
    OfferStatus,
)
from databourse.settings import Settings
from databourse.uow import UnitOfWork


def negotiation_state(n: Negotiation) -> dict[str, object]:
    return {
        "id": n.id,
        "product_id": n.product_id,
        "buyer": n.buyer_org_id,
        "merchant": n.merchant_org_id,
        "purpose": n.purpose,
        "status": n.status,
        "contract_id": n.contract_id,
    }


def offer_state(o: Offer) -> dict[str, object]:
    return {
        "id": o.id,
        "negotiation_id": o.negotiation_id,
        "seq": o.seq,
        "side": o.side,
        "plan": o.plan,
        "price_fen": o.price_fen,
        "quantity": o.quantity,
        "term_days": o.term_days,
        "policy": o.policy,
        "billing": o.billing,
        "status": o.status,
        "expires_at": o.expires_at,
    }


def _parties(n: Negotiation) -> tuple[str, ...]:
    return (n.buyer_org_id, n.merchant_org_id)


def _record(uow: UnitOfWork, kind: str, n: Negotiation, **body: object) -> None:
    n.updated_at = utcnow()
    uow.session.flush()
    uow.record(
        f"negotiation.{kind}", n.id, {"status": n.status, **body}, negotiation_state(n), _parties(n)
    )


def _record_offer(uow: UnitOfWork, kind: str, o: Offer, parties: tuple[str, ...]) -> None:
    uow.session.flush()
    uow.record(
        f"offer.{kind}",
        o.id,
        {"negotiation_id": o.negotiation_id, "seq": o.seq, "side": o.side, "status": o.status},
        offer_state(o),
        parties,
    )


def _validate(session: Session, n: Negotiation, t: schemas.Terms) -> terms.Agreed:
    from databourse.catalog.models import Product

    product = session.get(Product, n.product_id)
    assert product is not None
    return terms.agree(
        catalog.plans_of(product), catalog.policy_of(product), _proposal(t), negotiated=True
    )


def _proposal(t: schemas.Terms) -> terms.Proposal:
    return terms.Proposal(
        plan=t.plan,
        price_fen=t.price_fen,
        quantity=t.quantity,
        term_days=t.term_days,
        policy=t.policy,
        billing=t.billing,
    )


def _add_offer(
    uow: UnitOfWork,
    settings: Settings,
    n: Negotiation,
    side: str,
    t: schemas.Terms,
    agreed: terms.Agreed,
) -> Offer:
    seq = (
        uow.session.scalar(select(func.max(Offer.seq)).where(Offer.negotiation_id == n.id)) or 0
    ) + 1
    now = utcnow()
    o = Offer(
        id=new_id("ofr"),
        negotiation_id=n.id,
        seq=seq,
        side=side,
        plan=t.plan,
        price_fen=agreed.unit_price_fen,
        quantity=agreed.quantity,
        term_days=agreed.term_days,
        policy=agreed.policy.model_dump(mode="json"),
        billing=agreed.billing if agreed.model == "metered" else None,
        message=t.message,
        status=OfferStatus.open,
        expires_at=now + timedelta(hours=t.expires_in_hours or settings.offer_ttl_hours),
        created_by=uow.actor.ref,
        created_at=now,
    )
    uow.session.add(o)
    _record_offer(uow, "made", o, _parties(n))
    return o


def open_negotiation(
    uow: UnitOfWork, principal: Principal, settings: Settings, data: schemas.NegotiationIn
) -> Negotiation:
    """A buyer opens an inquiry with its first offer; the pre-trade checks run first."""
    authorize(principal, "negotiation.open", principal.org_id)
    product = contracts.visible_product(uow.session, principal, data.product_id)
    contracts.check_trade(uow.session, product, principal.org_id, str(data.purpose))
    now = utcnow()
    n = Negotiation(
        id=new_id("neg"),
        product_id=product.id,
        buyer_org_id=principal.org_id,
        merchant_org_id=product.org_id,
        demand_id=data.demand_id,
        purpose=str(data.purpose),
        status=NegotiationStatus.open,
        created_at=now,
        updated_at=now,
    )
    agreed = terms.agree(
        catalog.plans_of(product),
        catalog.policy_of(product),
        _proposal(data.offer),
        negotiated=True,
    )
    uow.session.add(n)
    _record(uow, "opened", n, product_id=n.product_id)
    _add_offer(uow, settings, n, "buyer", data.offer, agreed)
    return n


def _load(uow: UnitOfWork, negotiation_id: str) -> Negotiation:
    n = uow.session.get(Negotiation, negotiation_id, with_for_update=True, populate_existing=True)
    if n is None:
        raise NotFound(f"negotiation {negotiation_id} not found")
    assert_untampered(uow, n.id, negotiation_state(n))
    return n


def _side(principal: Principal, action: str, n: Negotiation) -> str:
    side = (
        "buyer"
        if principal.org_id == n.buyer_org_id
        else "merchant"
        if principal.org_id == n.merchant_org_id
        else None
    )
    try:
        authorize(principal, action, principal.org_id if side else n.merchant_org_id)
    except Forbidden:
        if side is None:
            raise NotFound(f"negotiation {n.id} not found") from None
        raise
    if side is None:
        raise Forbidden("only the parties negotiate")
    return side


def standing_offer(session: Session, n: Negotiation) -> Offer | None:
    return session.scalar(
        select(Offer)
        .where(Offer.negotiation_id == n.id, Offer.status == OfferStatus.open)
        .order_by(Offer.seq.desc())
        .limit(1)
    )


def _open(uow: UnitOfWork, n: Negotiation) -> Offer:
    if n.status != NegotiationStatus.open:
        raise InvalidTransition(f"the negotiation is {n.status}", current_status=n.status)
    o = standing_offer(uow.session, n)
    if o is None or o.expires_at <= utcnow():
        if o is not None:
            o.status = OfferStatus.expired
            _record_offer(uow, "expired", o, _parties(n))
        raise OfferExpired("no offer is standing: make a new one")
    return o


def counter(
    uow: UnitOfWork, principal: Principal, settings: Settings, negotiation_id: str, t: schemas.Terms
) -> Negotiation:
    """Either side makes a new offer, superseding the standing one."""
    n = _load(uow, negotiation_id)
    side = _side(principal, "negotiation.offer", n)
    if n.status != NegotiationStatus.open:
        raise InvalidTransition(f"the negotiation is {n.status}", current_status=n.status)
    agreed = _validate(uow.session, n, t)
    previous = standing_offer(uow.session, n)
    if previous is not None:
        previous.status = OfferStatus.countered
        _record_offer(uow, "countered", previous, _parties(n))
    _add_offer(uow, settings, n, side, t, agreed)
    _record(uow, "offer", n, side=side)
    return n


def accept(
    uow: UnitOfWork, principal: Principal, settings: Settings, negotiation_id: str
) -> tuple[Negotiation, Contract]:
    """The other side accepts the standing offer: the contract is drafted at its terms."""
    n = _load(uow, negotiation_id)
    side = _side(principal, "negotiation.accept", n)
    o = _open(uow, n)
    if o.side == side:
        raise NotYourTurn("you made the standing offer; the other side accepts or counters")
    from databourse.catalog.models import Product

    product = uow.session.get(Product, n.product_id)
    assert product is not None
    from databourse.catalog.policy import UsagePolicy

    agreed = terms.agree(
        catalog.plans_of(product),
        catalog.policy_of(product),
        terms.Proposal(
            plan=o.plan,
            price_fen=o.price_fen,
            quantity=o.quantity,
            term_days=o.term_days,
            policy=UsagePolicy.model_validate(o.policy),
            billing=o.billing,
        ),
        negotiated=True,
    )
    c = contracts.draft(
        uow, settings, product, n.buyer_org_id, n.purpose, agreed, negotiation_id=n.id
    )
    o.status = OfferStatus.accepted
    _record_offer(uow, "accepted", o, _parties(n))
    n.status, n.contract_id, n.closed_by = NegotiationStatus.agreed, c.id, principal.ref
    _record(uow, "agreed", n, contract_id=c.id, offer_id=o.id)
    return n, c


def withdraw(uow: UnitOfWork, principal: Principal, negotiation_id: str) -> Negotiation:
    n = _load(uow, negotiation_id)
    _side(principal, "negotiation.withdraw", n)
    if n.status != NegotiationStatus.open:
        raise InvalidTransition(f"the negotiation is {n.status}", current_status=n.status)
    o = standing_offer(uow.session, n)
    if o is not None:
        o.status = OfferStatus.withdrawn
        _record_offer(uow, "withdrawn", o, _parties(n))
    n.status, n.closed_by = NegotiationStatus.withdrawn, principal.ref
    _record(uow, "withdrawn", n)
    return n


def expire_if_due(uow: UnitOfWork, negotiation_id: str) -> bool:
    n = _load(uow, negotiation_id)
    if n.status != NegotiationStatus.open:
        return False
    o = standing_offer(uow.session, n)
    if o is not None and o.expires_at > utcnow():
        return False
    if o is not None:
        o.status = OfferStatus.expired
        _record_offer(uow, "expired", o, _parties(n))
    n.status = NegotiationStatus.expired
    _record(uow, "expired", n)
    return True


def get(session: Session, principal: Principal, negotiation_id: str) -> Negotiation:
    n = session.get(Negotiation, negotiation_id)
    if n is None:
        raise NotFound(f"negotiation {negotiation_id} not found")
    mine = principal.org_id in _parties(n)
    try:
        authorize(principal, "negotiation.read", principal.org_id if mine else n.merchant_org_id)
    except Forbidden:
        if not mine:
            raise NotFound(f"negotiation {negotiation_id} not found") from None
        raise
    return n


def offers(session: Session, negotiation_id: str) -> list[Offer]:
    return list(
        session.scalars(
            select(Offer).where(Offer.negotiation_id == negotiation_id).order_by(Offer.seq)
        )
    )


def list_negotiations(
    session: Session, principal: Principal, status: str | None, limit: int, offset: int
) -> list[Negotiation]:
    q = select(Negotiation)
    if authorize(principal, "negotiation.read") is Reach.OWN:
        q = q.where(
            or_(
                Negotiation.buyer_org_id == principal.org_id,
                Negotiation.merchant_org_id == principal.org_id,
            )
        )
    if status:
        q = q.where(Negotiation.status == status)
    return list(
        session.scalars(
            q.order_by(Negotiation.updated_at.desc(), Negotiation.id).limit(limit).offset(offset)
        )
    )


def buy(
    uow: UnitOfWork, principal: Principal, settings: Settings, data: schemas.ContractIn
) -> Contract:
    """Buy at the listing's terms: fixed-price plans go straight to a contract."""
    authorize(principal, "contract.create", principal.org_id)
    product = contracts.visible_product(uow.session, principal, data.product_id)
    agreed = terms.agree(
        catalog.plans_of(product),
        catalog.policy_of(product),
        terms.Proposal(
            plan=data.plan,
            quantity=data.quantity,
            term_days=data.term_days,
            policy=data.policy,
            billing=data.billing,
        ),
        negotiated=False,
    )
    return contracts.draft(uow, settings, product, principal.org_id, str(data.purpose), agreed)
