"""Sealed-bid second-price auctions of exclusive licences (BRIEF §8): opening, bidding,
revealing and closing, each command one unit of work with its ledger entries.

Phases, read from the exchange's clock: ``bidding`` until ``bids_close_at`` (bidders file
commitments only), then ``revealing`` until ``reveals_close_at`` (bidders reveal amount and
nonce), then the auction waits to be closed — by its merchant, the operator or the
scheduler (``close_due``) — and ends ``closed`` with a contract drafted at the second price,
or ``failed``. It may be closed as soon as bidding is over and every bid is revealed.

Rules this module decides (``auction.py`` holds the pure mathematics):

- One open auction per product at a time, and none while an exclusive licence sold by an
  earlier auction is still in force (awaiting signatures, signed, active or suspended).
- One bid per bidder. A second bid while bidding is open *replaces* the first: the new
  commitment counts and its time is the new one, so a replacing bidder loses its place in
  the tie-break. Nobody, the exchange included, sees an amount before bidding closes.
- The pre-trade checks (DSL art. 33) run when a bid is filed, and again for the winner at
  close. A winner that fails them then is passed over: the auction is decided again among
  the remaining bids, so the next bidder wins at the second price *among those* (never
  below the reserve). The passed-over bidders are named in the close's ledger entry.
- A revealed bid below the reserve counts as revealed but cannot win.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal, authorize
from databourse.catalog import services as catalog
from databourse.catalog.models import Product, ProductStatus
from databourse.catalog.pricing import AuctionPlan
from databourse.db import new_id, utcnow
from databourse.errors import Conflict, DataBourseError, InvalidTransition, NotFound
from databourse.ledger.writer import assert_untampered
from databourse.market import auction, contracts, schemas, terms
from databourse.market.errors import AuctionClosed, InvalidBid, InvalidTerms, PreTradeCheckFailed
from databourse.market.models import Auction, AuctionStatus, Bid, Contract, ContractStatus
from databourse.settings import Settings
from databourse.uow import UnitOfWork

S = AuctionStatus
OPEN = (S.bidding, S.revealing)
ENDED = (S.closed, S.failed)
#: Contract states in which an exclusive licence sold by auction still binds the product.
LICENCE_IN_FORCE = (
    ContractStatus.awaiting_signatures,
    ContractStatus.signed,
    ContractStatus.active,
    ContractStatus.suspended,
)
STAFF = frozenset({"operator", "regulator"})


def auction_state(a: Auction) -> dict[str, Any]:
    """What the ledger commits to for an auction."""
    return {
        "id": a.id,
        "product_id": a.product_id,
        "merchant": a.merchant_org_id,
        "plan": a.plan,
        "reserve_fen": a.reserve_fen,
        "currency": a.currency,
        "term_days": a.term_days,
        "bids_close_at": a.bids_close_at,
        "reveals_close_at": a.reveals_close_at,
        "status": a.status,
        "winner": a.winner_org_id,
        "price_fen": a.price_fen,
        "contract_id": a.contract_id,
    }


def bid_state(b: Bid) -> dict[str, Any]:
    """What the ledger commits to for a bid: the commitment, later the revealed amount."""
    return {
        "id": b.id,
        "auction_id": b.auction_id,
        "bidder": b.bidder_org_id,
        "purpose": b.purpose,
        "commitment": b.commitment,
        "committed_at": b.committed_at,
        "amount_fen": b.amount_fen,
        "revealed_at": b.revealed_at,
    }


def phase(a: Auction, now: datetime | None = None) -> str:
    """The auction's phase now: its stored status once ended, else read from the clock."""
    if a.status in ENDED:
        return a.status
    return S.bidding if (now or utcnow()) < a.bids_close_at else S.revealing


def _record(uow: UnitOfWork, kind: str, a: Auction, *others: str, **body: Any) -> None:
    uow.session.flush()
    parties = tuple(dict.fromkeys(p for p in (a.merchant_org_id, *others) if p))
    uow.record(f"auction.{kind}", a.id, {"status": a.status, **body}, auction_state(a), parties)


def _record_bid(uow: UnitOfWork, kind: str, a: Auction, b: Bid, **body: Any) -> None:
    uow.session.flush()
    uow.record(
        f"bid.{kind}",
        b.id,
        {"auction_id": a.id, "commitment": b.commitment, **body},
        bid_state(b),
        (b.bidder_org_id, a.merchant_org_id),
    )


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _load(uow: UnitOfWork, auction_id: str) -> Auction:
    """The auction, locked, and as its last ledger entry says it is."""
    a = uow.session.get(Auction, auction_id, with_for_update=True, populate_existing=True)
    if a is None:
        raise NotFound(f"auction {auction_id} not found")
    assert_untampered(uow, a.id, auction_state(a))
    return a


def _bid_of(uow: UnitOfWork, a: Auction, org_id: str) -> Bid | None:
    b = uow.session.scalar(select(Bid).where(Bid.auction_id == a.id, Bid.bidder_org_id == org_id))
    if b is not None:
        assert_untampered(uow, b.id, bid_state(b))
    return b


# Commands ---------------------------------------------------------------------------------


def open_auction(
    uow: UnitOfWork, principal: Principal, settings: Settings, data: schemas.AuctionIn
) -> Auction:
    """The merchant puts an exclusive licence of a listed dataset up for auction, under one
    of its auction plans: the plan gives the reserve and how long bidding lasts."""
    authorize(principal, "auction.open", principal.org_id)
    session = uow.session
    shown = catalog.get(session, principal, data.product_id)
    authorize(principal, "auction.open", shown.org_id)  # another's product: not found
    # Locking the product serialises the auctions opened on it.
    product = session.get(Product, shown.id, with_for_update=True, populate_existing=True)
    assert product is not None
    if product.status != ProductStatus.listed:
        raise InvalidTransition(
            f"only a listed product can be auctioned; product {product.id} is {product.status}",
            current_status=product.status,
        )
    plans = catalog.plans_of(product)
    plan = terms.find_plan(plans, data.plan)
    if not isinstance(plan, AuctionPlan):
        raise InvalidTerms(
            f"plan {plan.name!r} is a {plan.model} plan, not an auction plan",
            field="plan",
            value=data.plan,
        )
    # The term must fit the listing: checked now with the reserve standing in for the price.
    terms.agree(
        plans,
        catalog.policy_of(product),
        terms.Proposal(plan=plan.name, term_days=data.term_days),
        negotiated=True,
        auction_price=plan.reserve_fen,
    )
    now = utcnow().replace(microsecond=0)
    running = session.scalar(
        select(Auction.id).where(Auction.product_id == product.id, Auction.status.in_(OPEN))
    )
    if running is not None:
        raise Conflict(f"auction {running} of this product is not closed yet", auction_id=running)
    licence = session.scalar(
        select(Contract.id).where(
            Contract.product_id == product.id,
            Contract.auction_id.is_not(None),
            Contract.status.in_(LICENCE_IN_FORCE),
            Contract.ends_at > now,
        )
    )
    if licence is not None:
        raise Conflict(
            f"an exclusive licence of this product is in force (contract {licence})",
            contract_id=licence,
        )
    bids_close = now + timedelta(days=plan.bidding_days)
    a = Auction(
        id=new_id("auc"),
        product_id=product.id,
        merchant_org_id=product.org_id,
        plan=plan.name,
        reserve_fen=plan.reserve_fen,
        currency=plan.currency,
        term_days=data.term_days,
        purpose=None,
        bids_close_at=bids_close,
        reveals_close_at=bids_close + timedelta(hours=settings.auction_reveal_hours),
        status=S.bidding,
        created_at=now,
    )
    session.add(a)
    _record(
        uow,
        "opened",
        a,
        product_id=a.product_id,
        reserve_fen=a.reserve_fen,
        bids_close_at=a.bids_close_at,
        reveals_close_at=a.reveals_close_at,
    )
    return a


def bid(uow: UnitOfWork, principal: Principal, auction_id: str, data: schemas.BidIn) -> Bid:
    """A buyer files (or, while bidding is open, replaces) its sealed bid: a commitment to
    an amount, never the amount. The pre-trade checks run for the declared purpose."""
    authorize(principal, "auction.bid", principal.org_id)
    a = _load(uow, auction_id)
    now = utcnow()
    if phase(a, now) != S.bidding:
        raise AuctionClosed(
            f"bidding closed at {_iso(a.bids_close_at)}", current_status=phase(a, now)
        )
    product = uow.session.get(Product, a.product_id)
    assert product is not None
    purpose = str(data.purpose)
    contracts.check_trade(uow.session, product, principal.org_id, purpose)
    b = _bid_of(uow, a, principal.org_id)
    if b is None:
        b = Bid(
            id=new_id("bid"),
            auction_id=a.id,
            bidder_org_id=principal.org_id,
            purpose=purpose,
            commitment=data.commitment,
            committed_at=now,
        )
        uow.session.add(b)
        _record_bid(uow, "committed", a, b)
    else:
        b.purpose, b.commitment, b.committed_at = purpose, data.commitment, now
        _record_bid(uow, "replaced", a, b)
    return b


def reveal(uow: UnitOfWork, principal: Principal, auction_id: str, data: schemas.RevealIn) -> Bid:
    """After bidding closes, the bidder opens its commitment: the amount and the nonce."""
    authorize(principal, "auction.reveal", principal.org_id)
    a = _load(uow, auction_id)
    b = _bid_of(uow, a, principal.org_id)
    if b is None:
        raise NotFound(f"your organisation has no bid in auction {a.id}")
    now = utcnow()
    current = phase(a, now)
    if current == S.bidding:
        raise AuctionClosed(
            f"bids are revealed once bidding closes at {_iso(a.bids_close_at)}",
            current_status=current,
        )
    if current in ENDED or now >= a.reveals_close_at:
        raise AuctionClosed(
            f"the time to reveal ended at {_iso(a.reveals_close_at)}", current_status=current
        )
    opened = auction.commitment(a.id, b.bidder_org_id, data.amount_fen, data.nonce)
    if not hmac.compare_digest(opened, b.commitment):
        raise InvalidBid("this amount and nonce: the opening does not match your commitment")
    if b.amount_fen is not None:
        return b  # the same opening again: nothing changes
    b.amount_fen, b.revealed_at = data.amount_fen, now
    _record_bid(uow, "revealed", a, b, amount_fen=b.amount_fen)
    if a.status == S.bidding:
        a.status = S.revealing
        _record(uow, "revealing", a)
    return b


def close(uow: UnitOfWork, principal: Principal, settings: Settings, auction_id: str) -> Auction:
    """Decide the auction: the best revealed bid at or above the reserve wins at the second
    price, and its contract is drafted for both parties to sign; else it fails."""
    authorize(principal, "auction.close")
    a = _load(uow, auction_id)
    authorize(principal, "auction.close", a.merchant_org_id)
    now = utcnow()
    current = phase(a, now)
    if current in ENDED:
        raise AuctionClosed(f"auction {a.id} is already {current}", current_status=current)
    if current == S.bidding:
        raise AuctionClosed(
            f"bidding is open until {_iso(a.bids_close_at)}", current_status=current
        )
    bids = list(uow.session.scalars(select(Bid).where(Bid.auction_id == a.id)))
    for b in bids:  # locked with their auction; decided only as the ledger has them
        assert_untampered(uow, b.id, bid_state(b))
    hidden = sum(1 for b in bids if b.amount_fen is None)
    if hidden and now < a.reveals_close_at:
        raise AuctionClosed(
            f"{hidden} of {len(bids)} bids may still be revealed until {_iso(a.reveals_close_at)}",
            current_status=current,
        )
    _decide(uow, settings, a, bids)
    return a


def _terms(product: Product, a: Auction, price_fen: int) -> terms.Agreed:
    """The licence's terms at ``price_fen``, or ``InvalidTerms`` if the listing no longer
    allows the auctioned plan and term."""
    return terms.agree(
        catalog.plans_of(product),
        catalog.policy_of(product),
        terms.Proposal(plan=a.plan, term_days=a.term_days),
        negotiated=True,
        auction_price=price_fen,
    )


def _decide(uow: UnitOfWork, settings: Settings, a: Auction, bids: Sequence[Bid]) -> None:
    session = uow.session
    product = session.get(Product, a.product_id)
    assert product is not None
    summary = {"bids": len(bids), "revealed": sum(1 for b in bids if b.amount_fen is not None)}
    try:
        _terms(product, a, a.reserve_fen)
    except InvalidTerms as exc:  # the listing changed since the auction opened
        a.status = S.failed
        _record(
            uow,
            "failed",
            a,
            reason=f"the listing no longer allows the terms: {exc.detail}",
            **summary,
        )
        return
    by_bidder = {b.bidder_org_id: b for b in bids}
    remaining = [auction.SealedBid(b.bidder_org_id, b.committed_at, b.amount_fen) for b in bids]
    passed_over: list[dict[str, Any]] = []
    while True:
        result = auction.outcome(remaining, a.reserve_fen)
        if result.winner is None or result.price_fen is None:
            a.status = S.failed
            _record(
                uow,
                "failed",
                a,
                reason="no valid bid at or above the reserve",
                passed_over=passed_over,
                **summary,
            )
            return
        winner = by_bidder[result.winner]
        try:
            contracts.check_trade(session, product, winner.bidder_org_id, winner.purpose)
        except PreTradeCheckFailed as exc:
            rules = [f["rule"] for f in exc.extra.get("failures", [])]
            passed_over.append({"bidder": winner.bidder_org_id, "rules": rules})
            remaining = [s for s in remaining if s.bidder != winner.bidder_org_id]
            continue
        break
    agreed = _terms(product, a, result.price_fen)
    c = contracts.draft(
        uow, settings, product, winner.bidder_org_id, winner.purpose, agreed, auction_id=a.id
    )
    a.status, a.winner_org_id, a.price_fen, a.contract_id = (
        S.closed,
        winner.bidder_org_id,
        result.price_fen,
        c.id,
    )
    _record(
        uow,
        "closed",
        a,
        winner.bidder_org_id,
        winner=a.winner_org_id,
        price_fen=a.price_fen,
        contract_id=c.id,
        passed_over=passed_over,
        **summary,
    )


def due(session: Session) -> list[str]:
    """Auctions whose reveal period is over and that are not yet closed."""
    return list(
        session.scalars(
            select(Auction.id)
            .where(Auction.status.in_(OPEN), Auction.reveals_close_at <= utcnow())
            .order_by(Auction.reveals_close_at, Auction.id)
        )
    )


def close_if_due(uow: UnitOfWork, settings: Settings, auction_id: str) -> bool:
    """Close one auction if its reveal period is over (for a runner that gives each
    auction its own unit of work); whether it was closed."""
    a = uow.session.get(Auction, auction_id)
    if a is None or a.status not in OPEN or a.reveals_close_at > utcnow():
        return False
    close(uow, SYSTEM_PRINCIPAL, settings, auction_id)
    return True


def close_due(uow: UnitOfWork, settings: Settings) -> int:
    """Close every auction past its reveal period (for the scheduler); how many closed.

    Each auction is closed in a savepoint: one that cannot be closed now is left as it is
    (and tried again next run) without undoing the others.
    """
    closed = 0
    for auction_id in due(uow.session):
        mark = len(uow.records)
        savepoint = uow.session.begin_nested()
        try:
            close(uow, SYSTEM_PRINCIPAL, settings, auction_id)
        except DataBourseError:
            savepoint.rollback()
            del uow.records[mark:]
            continue
        savepoint.commit()
        closed += 1
    return closed


# Queries ----------------------------------------------------------------------------------


def get_auction(session: Session, principal: Principal, auction_id: str) -> Auction:
    authorize(principal, "auction.read")
    a = session.get(Auction, auction_id)
    if a is None:
        raise NotFound(f"auction {auction_id} not found")
    return a


def list_auctions(
    session: Session,
    principal: Principal,
    product_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Auction]:
    """Auctions, newest first; ``status`` is the phase (see ``phase``)."""
    authorize(principal, "auction.read")
    q = select(Auction)
    if product_id:
        q = q.where(Auction.product_id == product_id)
    now = utcnow()
    if status == S.bidding:
        q = q.where(Auction.status == S.bidding, Auction.bids_close_at > now)
    elif status == S.revealing:
        q = q.where(Auction.status.in_(OPEN), Auction.bids_close_at <= now)
    elif status:
        q = q.where(Auction.status == status)
    q = q.order_by(Auction.created_at.desc(), Auction.id).limit(limit).offset(offset)
    return list(session.scalars(q))


def bid_counts(session: Session, auction_ids: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(auction_ids, 0)
    rows = session.execute(
        select(Bid.auction_id, func.count())
        .where(Bid.auction_id.in_(list(auction_ids)))
        .group_by(Bid.auction_id)
    )
    counts.update({i: int(n) for i, n in rows})
    return counts


def bids_of(session: Session, principal: Principal, auction_id: str) -> list[Bid]:
    """The merchant and the exchange's staff see every bid, a bidder its own, others none.
    Amounts appear as bids are revealed, which is only after bidding closes."""
    a = get_auction(session, principal, auction_id)
    q = select(Bid).where(Bid.auction_id == a.id)
    staff = principal.kind == "system" or bool(principal.roles & STAFF)
    if not staff and principal.org_id != a.merchant_org_id:
        q = q.where(Bid.bidder_org_id == principal.org_id)
    return list(session.scalars(q.order_by(Bid.committed_at, Bid.id)))
