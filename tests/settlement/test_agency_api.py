"""Agency contracts (submitted by the agent, certified by the exchange) and the payout of
the commissions they earn."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from databourse.db import utcnow
from databourse.settlement import fees, services
from databourse.settlement.errors import InvalidAmount
from databourse.settlement.fees import AgencyTerms
from databourse.settlement.models import EXCHANGE, AccountKind, Commission
from databourse.settlement.services import Leg, Movement
from databourse.uow import UnitOfWork
from tests import factories
from tests.assets.test_asset_api import Member, Staff, ok, refused, registered_asset
from tests.conftest import Exchange
from tests.settlement.helpers import balances, key


@pytest.fixture(scope="module")
def agent(exchange: Exchange) -> Member:
    return Member(exchange, ["agent"])


@pytest.fixture(scope="module")
def merchant(exchange: Exchange) -> Member:
    return Member(exchange, ["merchant"])


def draft_product(m: Member, staff: Staff) -> str:
    asset_id = registered_asset(m.c, staff.op)
    body = factories.product(
        [asset_id], ["a"], kind="api", plans=[{"name": "free", "model": "free"}]
    )
    body["policy"] = {k: v for k, v in factories.POLICY.items() if k != "count"}
    return str(ok(m.c.post("/products", json=body), 201)["id"])


def contract(principal: str, **over: Any) -> dict[str, Any]:
    signed_pdf = secrets.token_bytes(64)
    body = {
        "principal_org_id": principal,
        "commission_bp": 500,
        "not_after": (datetime.now(UTC) + timedelta(days=90)).isoformat(),
        "document_hash": hashlib.sha256(signed_pdf).hexdigest(),
    }
    return body | over


def terms(ex: Exchange, merchant: str, product: str) -> AgencyTerms | None:
    with ex.ctx.reads() as s:
        return fees.agency_for(s, merchant, product, utcnow())


def test_the_agency_lifecycle(
    exchange: Exchange, agent: Member, merchant: Member, staff: Staff
) -> None:
    a, op = agent.c, staff.op
    product, other_product = draft_product(merchant, staff), "prd_any_other_product"
    buyer = Member(exchange, ["buyer"])
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused(buyer.c.post("/agency-contracts", json=contract(merchant.id)), 403, "forbidden")
    for body, field in [
        (contract(buyer.id), "principal_org_id"),  # not a merchant
        (contract(agent.id), "principal_org_id"),
        (contract(merchant.id, product_id="prd_00000000000000000000"), "product_id"),
        (contract(merchant.id, not_after=past), "not_after"),
    ]:
        assert (
            refused(a.post("/agency-contracts", json=body), 422, "invalid-agency-contract")["field"]
            == field
        )
    for bad in ({"commission_bp": 3001}, {"commission_bp": 0}, {"document_hash": "ab" * 31}):
        refused(a.post("/agency-contracts", json=contract(merchant.id, **bad)), 422, "validation")

    specific = ok(a.post("/agency-contracts", json=contract(merchant.id, product_id=product)), 201)
    general = ok(a.post("/agency-contracts", json=contract(merchant.id, commission_bp=300)), 201)
    assert (specific["status"], specific["agent_org_id"]) == ("submitted", agent.id)
    assert terms(exchange, merchant.id, product) is None  # not certified yet

    refused(a.post(f"/agency-contracts/{specific['id']}/certify", json={}), 403, "forbidden")
    c = ok(op.post(f"/agency-contracts/{specific['id']}/certify", json={}))
    assert (c["status"], c["decided_by"][:5]) == ("certified", "user:")
    assert terms(exchange, merchant.id, product) == AgencyTerms(specific["id"], agent.id, 500)
    assert terms(exchange, merchant.id, other_product) is None
    ok(op.post(f"/agency-contracts/{general['id']}/certify", json={}))
    # a contract naming the product wins over a general one; other products get the general
    assert terms(exchange, merchant.id, product) == AgencyTerms(specific["id"], agent.id, 500)
    assert terms(exchange, merchant.id, other_product) == AgencyTerms(general["id"], agent.id, 300)
    with exchange.ctx.reads() as s:
        later = utcnow() + timedelta(days=91)
        assert fees.agency_for(s, merchant.id, product, later) is None  # expired by then

    refused(op.post(f"/agency-contracts/{specific['id']}/revoke", json={}), 422, "validation")
    r = ok(op.post(f"/agency-contracts/{specific['id']}/revoke", json={"reason": "ended early"}))
    assert r["status"] == "revoked"
    assert terms(exchange, merchant.id, product) == AgencyTerms(general["id"], agent.id, 300)
    refused(
        op.post(f"/agency-contracts/{specific['id']}/certify", json={}), 409, "invalid-transition"
    )
    third = ok(a.post("/agency-contracts", json=contract(merchant.id)), 201)
    rej = ok(op.post(f"/agency-contracts/{third['id']}/reject", json={"reason": "unsigned"}))
    assert rej["status"] == "rejected"

    # who sees which contracts
    mine = {x["id"] for x in ok(a.get("/agency-contracts"))}
    assert mine == {specific["id"], general["id"], third["id"]}
    assert {x["id"] for x in ok(merchant.c.get("/agency-contracts"))} == mine
    refused(buyer.c.get("/agency-contracts"), 403, "forbidden")
    staff_view = {x["id"] for x in ok(op.get("/agency-contracts", params={"limit": 500}))}
    assert mine <= staff_view
    assert [x["id"] for x in ok(a.get("/agency-contracts", params={"status": "rejected"}))] == [
        third["id"]
    ]

    # both parties may read the contract's ledger entries
    from databourse.ledger.models import LedgerEntry

    with exchange.ctx.reads() as s:
        seqs = list(
            s.scalars(
                select(LedgerEntry.seq)
                .where(LedgerEntry.subject == specific["id"])
                .order_by(LedgerEntry.seq)
            )
        )
    assert len(seqs) == 3  # submitted, certified, revoked
    for party in (a, merchant.c):
        assert ok(party.get(f"/ledger/entries/{seqs[-1]}"))["kind"] == "agency.revoked"
    refused(buyer.c.get(f"/ledger/entries/{seqs[-1]}"), 404, "ledger-entry-not-found")


def earn(ex: Exchange, agent_id: str, *amounts: int) -> None:
    """Commissions as a settlement would leave them: the money in the exchange's
    commission_payable account, one Commission row per trade."""
    contract_id = f"ctr_{secrets.token_hex(10)}"
    total = sum(amounts)
    with UnitOfWork(ex.ctx.writes) as uow:
        legs = (
            Leg("rail:test", AccountKind.clearing, -total),
            Leg(EXCHANGE, AccountKind.commission_payable, total),
        )
        jid = services.move(uow, Movement("escrow.release", contract_id, "CNY", legs))
        for amount in amounts:
            fees.accrue_commission(uow, agent_id, contract_id, jid, amount, "CNY")
        uow.commit()


def test_the_operator_pays_out_commissions_once(
    exchange: Exchange, agent: Member, staff: Staff
) -> None:
    op = staff.op
    earn(exchange, agent.id, 300, 200)
    body = {"agent_org_id": agent.id}
    refused(op.post("/commissions/payout", json=body), 428, "idempotency-key-required")
    refused(agent.c.post("/commissions/payout", json=body, headers=key()), 403, "forbidden")
    before = balances(agent.c).get("available", 0)
    k = key()
    [jid] = ok(op.post("/commissions/payout", json=body, headers=k))["journal_ids"]
    assert balances(agent.c)["available"] == before + 500
    replay = op.post("/commissions/payout", json=body, headers=k)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["journal_ids"] == [jid]
    assert ok(op.post("/commissions/payout", json=body, headers=key()))["journal_ids"] == []
    assert balances(agent.c)["available"] == before + 500
    with exchange.ctx.reads() as s:
        paid = s.scalars(select(Commission).where(Commission.agent_org_id == agent.id)).all()
    assert sorted(c.amount_fen for c in paid) == [200, 300]
    assert {c.payout_journal_id for c in paid} == {jid}
    with pytest.raises(InvalidAmount), UnitOfWork(exchange.ctx.writes) as uow:
        fees.accrue_commission(uow, agent.id, "ctr_x", jid, 0, "CNY")
