"""Commands and queries of the demands domain: posting demands and matching them (撮合).

Matching runs both ways: a new demand is ranked against the listed products (candidates
come from the search index, then ``matching`` scores them with its reasons), and a newly
listed product against the open demands. Each side of a good match gets a notice, written
in the same transaction as the change that produced it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog.facts import ListingFacts
from databourse.catalog.indexer import CatalogSearch
from databourse.catalog.search import SearchQuery
from databourse.db import new_id, utcnow
from databourse.demands import matching, schemas
from databourse.demands.facts import DemandFacts
from databourse.demands.models import Demand, DemandStatus, MatchNotice
from databourse.errors import InvalidTransition, NotFound
from databourse.ledger.writer import assert_untampered
from databourse.uow import UnitOfWork

CANDIDATES = 100  # listings fetched from the index per demand before scoring
NOTIFY = 10  # best matches notified per new demand or newly listed product
OPEN_DEMANDS = 5000  # most recent open demands scored against a newly listed product


def demand_state(d: Demand) -> dict[str, Any]:
    return {
        "id": d.id,
        "org_id": d.org_id,
        "title": d.title,
        "need": d.need,
        "scenario": d.scenario,
        "purpose": d.purpose,
        "kinds": d.kinds,
        "industry": d.industry,
        "budget_max_fen": d.budget_max_fen,
        "currency": d.currency,
        "term_days": d.term_days,
        "required_fields": d.required_fields,
        "status": d.status,
    }


def facts(d: Demand) -> DemandFacts:
    return DemandFacts(
        id=d.id,
        org_id=d.org_id,
        title=d.title,
        need=d.need,
        scenario=d.scenario,
        purpose=d.purpose,
        kinds=tuple(d.kinds),
        industry=d.industry,
        budget_max_fen=d.budget_max_fen,
        currency=d.currency,
        term_days=d.term_days,
        required_fields=tuple(d.required_fields),
        created_at=d.created_at,
    )


def candidates(session: Session, search: CatalogSearch, demand: DemandFacts) -> list[ListingFacts]:
    """Listed products worth scoring for a demand: the index's best text matches."""
    text = " ".join([demand.title, demand.need, demand.scenario, *demand.required_fields])
    result = search.search(
        session, SearchQuery(text=text, kinds=tuple(demand.kinds), limit=CANDIDATES, facets=False)
    )
    return [search.facts[h.id] for h in result.hits if h.id in search.facts]


def _notify(session: Session, m: matching.Match, buyer: str, merchant: str) -> int:
    """Tell both sides of a match, once per pair (a repeated match is not a new notice)."""
    reasons = [{"factor": r.factor, "score": r.score, "detail": r.detail} for r in m.reasons]
    sent = 0
    for org_id, side in ((buyer, "buyer"), (merchant, "merchant")):
        seen = session.scalar(
            select(MatchNotice.id).where(
                MatchNotice.org_id == org_id,
                MatchNotice.demand_id == m.demand_id,
                MatchNotice.product_id == m.product_id,
            )
        )
        if seen is None:
            session.add(
                MatchNotice(
                    org_id=org_id,
                    demand_id=m.demand_id,
                    product_id=m.product_id,
                    side=side,
                    score=round(m.score, 6),
                    reasons=reasons,
                )
            )
            sent += 1
    return sent


def post(
    uow: UnitOfWork, principal: Principal, search: CatalogSearch, data: schemas.DemandIn
) -> tuple[Demand, list[matching.Match]]:
    """A buyer posts a demand; the best listed matches are notified to both sides."""
    authorize(principal, "demand.create", principal.org_id)
    d = Demand(
        id=new_id("dmd"),
        org_id=principal.org_id,
        title=data.title,
        need=data.need,
        scenario=data.scenario,
        purpose=data.purpose,
        kinds=sorted({str(k) for k in data.kinds}),
        industry=data.industry,
        budget_max_fen=data.budget_max_fen,
        currency=data.currency,
        term_days=data.term_days,
        required_fields=list(dict.fromkeys(data.required_fields)),
        status=DemandStatus.open,
        created_at=utcnow(),
    )
    uow.session.add(d)
    uow.session.flush()
    f = facts(d)
    matches = matching.rank_products(f, candidates(uow.session, search, f), limit=NOTIFY)
    owners = {m.product_id: search.facts[m.product_id].org_id for m in matches}
    notices = sum(_notify(uow.session, m, d.org_id, owners[m.product_id]) for m in matches)
    uow.record(
        "demand.posted",
        d.id,
        {"org_id": d.org_id, "status": d.status, "matches": len(matches), "notices": notices},
        demand_state(d),
        (d.org_id,),
    )
    return d, matches


def on_listed(uow: UnitOfWork, listing: ListingFacts) -> int:
    """A product was listed: notify the buyers of the open demands it matches best."""
    rows = list(
        uow.session.scalars(
            select(Demand)
            .where(Demand.status == DemandStatus.open, Demand.org_id != listing.org_id)
            .order_by(Demand.created_at.desc())
            .limit(OPEN_DEMANDS)
        )
    )
    matches = matching.rank_demands(listing, [facts(d) for d in rows], limit=NOTIFY)
    buyers = {d.id: d.org_id for d in rows}
    return sum(_notify(uow.session, m, buyers[m.demand_id], listing.org_id) for m in matches)


def transition(uow: UnitOfWork, principal: Principal, demand_id: str, action: str) -> Demand:
    """The buyer closes (satisfied) or withdraws an open demand."""
    d = uow.session.get(Demand, demand_id, with_for_update=True, populate_existing=True)
    if d is None:
        raise NotFound(f"demand {demand_id} not found")
    authorize(principal, f"demand.{action}", d.org_id)
    assert_untampered(uow, d.id, demand_state(d))
    if d.status != DemandStatus.open:
        raise InvalidTransition(
            f"cannot {action} a demand that is {d.status}", current_status=d.status
        )
    d.status = DemandStatus.closed if action == "close" else DemandStatus.withdrawn
    uow.session.flush()
    uow.record(
        f"demand.{d.status}",
        d.id,
        {"org_id": d.org_id, "status": d.status},
        demand_state(d),
        (d.org_id,),
    )
    return d


def get(session: Session, principal: Principal, demand_id: str) -> Demand:
    """A demand is readable by its buyer and the exchange's staff, and by merchants while it
    is open (the demand board, 需求大厅)."""
    d = session.get(Demand, demand_id)
    if d is None:
        raise NotFound(f"demand {demand_id} not found")
    if d.status == DemandStatus.open and "merchant" in principal.roles:
        authorize(principal, "demand.browse")
    else:
        authorize(principal, "demand.read", d.org_id)
    return d


def list_demands(
    session: Session, principal: Principal, status: str | None, limit: int, offset: int
) -> list[Demand]:
    """A buyer's own demands; every demand for the exchange's staff."""
    q = select(Demand)
    if authorize(principal, "demand.list") is Reach.OWN:
        q = q.where(Demand.org_id == principal.org_id)
    if status:
        q = q.where(Demand.status == status)
    q = q.order_by(Demand.created_at.desc(), Demand.id).limit(limit).offset(offset)
    return list(session.scalars(q))


def board(session: Session, principal: Principal, limit: int, offset: int) -> list[Demand]:
    """The demand board (需求大厅): open demands, newest first, for merchants to answer."""
    authorize(principal, "demand.browse")
    q = (
        select(Demand)
        .where(Demand.status == DemandStatus.open)
        .order_by(Demand.created_at.desc(), Demand.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(q))


def matches_for_demand(
    session: Session, principal: Principal, search: CatalogSearch, demand_id: str, limit: int
) -> list[matching.Match]:
    d = session.get(Demand, demand_id)
    if d is None:
        raise NotFound(f"demand {demand_id} not found")
    authorize(principal, "demand.matches", d.org_id)
    f = facts(d)
    return matching.rank_products(f, candidates(session, search, f), limit=limit)


def matches_for_product(
    session: Session, principal: Principal, search: CatalogSearch, product_id: str, limit: int
) -> list[matching.Match]:
    """Open demands a merchant's listed product could serve, best first."""
    from databourse.catalog.models import Product
    from databourse.catalog.services import listing_facts

    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, "product.matches", product.org_id)
    listing = listing_facts(session, [product_id]).get(product_id)
    if listing is None:
        return []
    rows = list(
        session.scalars(
            select(Demand)
            .where(Demand.status == DemandStatus.open, Demand.org_id != product.org_id)
            .order_by(Demand.created_at.desc())
            .limit(OPEN_DEMANDS)
        )
    )
    return matching.rank_demands(listing, [facts(r) for r in rows], limit=limit)


def notices(
    session: Session, principal: Principal, unread: bool, limit: int, offset: int
) -> list[MatchNotice]:
    authorize(principal, "notice.list", principal.org_id)
    q = select(MatchNotice).where(MatchNotice.org_id == principal.org_id)
    if unread:
        q = q.where(MatchNotice.read_at.is_(None))
    q = q.order_by(MatchNotice.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(q))


def mark_read(uow: UnitOfWork, principal: Principal, notice_id: int) -> MatchNotice:
    n = uow.session.get(MatchNotice, notice_id)
    if n is None:
        raise NotFound(f"notice {notice_id} not found")
    authorize(principal, "notice.read", n.org_id)
    if n.read_at is None:
        n.read_at = utcnow()
    return n
