"""The demo world's money and trades, made through the ordinary services (idempotent).

- The two buyers deposit by bank transfer; the operator confirms the money arrived.
- The agent's agency contract with the credit-data merchant is certified (5 % commission).
- Nanfeng Consumer Finance negotiates the yearly subscription of the bus-ridership dataset
  down to ¥11,000; both sides sign, it pays into escrow, the merchant delivers, it accepts:
  settled, with the exchange's fee.
- Xishan Retail Analytics buys the risk-score API's 100k-call package at the listed price:
  paid, delivered, accepted; the agent's commission is paid out.
- Nanfeng also holds an active metered contract on the API, with recorded calls.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal
from databourse.catalog.models import Product
from databourse.catalog.vocab import Purpose
from databourse.db import utcnow
from databourse.demo_supply import principal_of
from databourse.market import contracts, negotiation, schemas, trades
from databourse.market.models import Contract
from databourse.settings import Settings
from databourse.settlement import fees, rails, usage
from databourse.uow import Actor, UnitOfWork

SUBSCRIPTION = "包年订阅 yearly"
API_PACKAGE = "10万次套餐 100k calls"
API_METERED = "按次计费 per call"


def _actor(p: Principal) -> Actor:
    return Actor(p.kind, p.id, p.org_id)


def _product(sessions: sessionmaker[Session], org_id: str, words: str) -> str:
    with sessions() as s:
        pid = s.scalar(
            select(Product.id).where(Product.org_id == org_id, Product.title.contains(words))
        )
    assert pid is not None, f"the demo product {words!r} is missing: seed the supply first"
    return pid


def _deposit(sessions: sessionmaker[Session], settings: Settings, who: Principal, fen: int) -> None:
    registry = rails.rails(settings)
    with UnitOfWork(sessions, _actor(who)) as uow:
        t, _ = rails.request(
            uow, who, registry, rails.DEPOSIT, fen, "CNY", "bank_transfer", "demo deposit"
        )
        uow.commit()
        tid = t.id
    with UnitOfWork(sessions) as uow:
        rails.decide(
            uow, SYSTEM_PRINCIPAL, registry, tid, "confirm", rail_ref=f"DEMO-{tid[4:16].upper()}"
        )
        uow.commit()


def _sign_by_both(
    sessions: sessionmaker[Session], secret: bytes, cid: str, *parties: Principal
) -> None:
    for p in parties:
        with UnitOfWork(sessions, _actor(p)) as uow:
            contracts.sign_custodial(uow, p, secret, cid)
            uow.commit()


def metered_contract(
    sessions: sessionmaker[Session],
    settings: Settings,
    secret: bytes,
    parties: tuple[Principal, Principal],
    product_id: str,
    purpose: Purpose,
    plan: str,
    term_days: int,
) -> str:
    """A metered contract (prepaid) bought at the listing's terms and signed by both."""
    buyer, merchant = parties
    with UnitOfWork(sessions, _actor(buyer)) as uow:
        c = negotiation.buy(
            uow,
            buyer,
            settings,
            schemas.ContractIn(
                product_id=product_id,
                purpose=purpose,
                plan=plan,
                term_days=term_days,
                billing="prepaid",
            ),
        )
        uow.commit()
        cid = c.id
    _sign_by_both(sessions, secret, cid, buyer, merchant)
    return cid


def _settle(
    sessions: sessionmaker[Session], cid: str, buyer: Principal, merchant: Principal
) -> None:
    for p, step in ((buyer, trades.pay), (merchant, trades.deliver), (buyer, trades.accept)):
        with UnitOfWork(sessions, _actor(p)) as uow:
            step(uow, p, cid)
            uow.commit()


def seed_trades(
    sessions: sessionmaker[Session], settings: Settings, secret: bytes, emails: dict[str, str]
) -> list[str]:
    """Create the demo trades once; returns what was created, in words."""
    buyer_a, buyer_b = (
        principal_of(sessions, emails["buyer_a"]),
        principal_of(sessions, emails["buyer_b"]),
    )
    merchant_a, merchant_b = (
        principal_of(sessions, emails["merchant_a"]),
        principal_of(sessions, emails["merchant_b"]),
    )
    agent = principal_of(sessions, emails["agent"])
    with sessions() as s:
        if s.scalar(select(Contract.id).where(Contract.buyer_org_id == buyer_a.org_id)):
            return []
    bus = _product(sessions, merchant_a.org_id, "公交")
    api = _product(sessions, merchant_b.org_id, "手机号")
    created: list[str] = []
    _deposit(sessions, settings, buyer_a, 5_000_000)
    _deposit(sessions, settings, buyer_b, 6_000_000)
    created.append("deposits of ¥50,000.00 and ¥60,000.00, confirmed")

    with UnitOfWork(sessions, _actor(agent)) as uow:
        paper = hashlib.sha256(b"demo agency contract, Beiyang for Huadong Credit").hexdigest()
        a = fees.submit_agency(
            uow, agent, merchant_b.org_id, None, 500, utcnow() + timedelta(days=730), paper
        )
        uow.commit()
        agency_id = a.id
    with UnitOfWork(sessions) as uow:
        fees.decide_agency(uow, SYSTEM_PRINCIPAL, agency_id, "certify", "demo world")
        uow.commit()
    created.append("agency contract of the agent with the credit-data merchant (5 %)")

    with UnitOfWork(sessions, _actor(buyer_a)) as uow:
        first = schemas.Terms(
            plan=SUBSCRIPTION,
            price_fen=1_000_000,
            term_days=365,
            message="Research licence for one year, please",
        )
        n = negotiation.open_negotiation(
            uow,
            buyer_a,
            settings,
            schemas.NegotiationIn(product_id=bus, purpose=Purpose.research, offer=first),
        )
        uow.commit()
        nid = n.id
    with UnitOfWork(sessions, _actor(merchant_a)) as uow:
        negotiation.counter(
            uow,
            merchant_a,
            settings,
            nid,
            schemas.Terms(
                plan=SUBSCRIPTION,
                price_fen=1_100_000,
                term_days=365,
                message="¥11,000 and it's yours",
            ),
        )
        uow.commit()
    with UnitOfWork(sessions, _actor(buyer_a)) as uow:
        _, c = negotiation.accept(uow, buyer_a, settings, nid)
        uow.commit()
        bus_contract = c.id
    _sign_by_both(sessions, secret, bus_contract, buyer_a, merchant_a)
    _settle(sessions, bus_contract, buyer_a, merchant_a)
    created.append(f"negotiated contract {bus_contract}: bus ridership, ¥11,000.00, settled")

    with UnitOfWork(sessions, _actor(buyer_b)) as uow:
        c = negotiation.buy(
            uow,
            buyer_b,
            settings,
            schemas.ContractIn(product_id=api, purpose=Purpose.risk_control, plan=API_PACKAGE),
        )
        uow.commit()
        pkg = c.id
    _sign_by_both(sessions, secret, pkg, buyer_b, merchant_b)
    _settle(sessions, pkg, buyer_b, merchant_b)
    with UnitOfWork(sessions) as uow:
        fees.payout_commissions(uow, SYSTEM_PRINCIPAL, agent.org_id)
        uow.commit()
    created.append(f"package contract {pkg}: risk-score API, ¥40,000.00, settled; commission paid")

    metered = metered_contract(
        sessions, settings, secret, (buyer_a, merchant_b), api, Purpose.credit_assessment,
        API_METERED, 90,
    )  # fmt: skip
    with UnitOfWork(sessions) as uow:
        start = uow.session.get(Contract, metered).starts_at  # type: ignore[union-attr]
        calls = [
            usage.UsageEvent(
                metered, "call", 1_000, start + timedelta(hours=h), "gateway", f"demo-{metered}-{h}"
            )
            for h in range(12)
        ]
        usage.ingest(uow, calls)
        uow.commit()
    created.append(f"metered contract {metered}: risk-score API, active, 12,000 calls recorded")
    return created
