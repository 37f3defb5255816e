"""An agent earns on a trade but never acts on it; a contract row edited outside the
exchange is found by the audit and refused before any money moves on it."""

from __future__ import annotations

from sqlalchemy import select, update

from databourse.ledger import audit
from databourse.market.models import Contract
from databourse.settlement.models import Commission
from tests.assets.test_asset_api import refused
from tests.conftest import Exchange
from tests.market import world
from tests.market.world import client, key, ok


def test_an_agent_reads_but_never_acts_on_its_principals_trades(exchange: Exchange) -> None:
    ex = exchange
    op, merchant, buyer = (world.party(ex, [r]) for r in ("operator", "merchant", "buyer"))
    agent = world.party(ex, ["agent", "merchant"])  # an agent that also sells
    world.certify_agency(ex.ctx, agent, merchant, 500)
    pid = world.list_fixed_product(ex.ctx, merchant, 50_000)
    with (
        client(ex, op) as o,
        client(ex, merchant) as m,
        client(ex, buyer) as b,
        client(ex, agent) as a,
    ):
        world.fund(o, b, 200_000)
        c = world.signed(b, m, pid)
        assert c["agent_org_id"] == agent.id
        ok(b.post(f"/contracts/{c['id']}/pay", headers=key()))
        assert ok(a.get(f"/contracts/{c['id']}"))["id"] == c["id"]
        for action, body in (("dispute", {"reason": "x"}), ("cancel", {})):
            r = a.post(f"/contracts/{c['id']}/{action}", json=body, headers=key())
            assert r.status_code == 404, r.text
        assert ok(b.get(f"/contracts/{c['id']}"))["payment_status"] == "held"


def test_an_edited_contract_is_found_and_refused_before_money_moves(exchange: Exchange) -> None:
    ex = exchange
    op, merchant, buyer = (world.party(ex, [r]) for r in ("operator", "merchant", "buyer"))
    pid = world.list_fixed_product(ex.ctx, merchant, 50_000)
    with client(ex, op) as o, client(ex, merchant) as m, client(ex, buyer) as b:
        world.fund(o, b, 100_000)
        c = world.signed(b, m, pid)
        ok(b.post(f"/contracts/{c['id']}/pay", headers=key()))
        with ex.ctx.reads() as s:
            row = s.get(Contract, c["id"])
            assert row is not None
            original = {
                "merchant_org_id": row.merchant_org_id,
                "fee_bp": row.fee_bp,
                "fee_min_fen": row.fee_min_fen,
            }
        with ex.ctx.writes() as s:  # the release redirected to the buyer, fee-free
            s.execute(
                update(Contract)
                .where(Contract.id == c["id"])
                .values(merchant_org_id=buyer.id, fee_bp=0, fee_min_fen=0)
            )
            s.commit()
        try:
            with ex.ctx.reads() as s:
                found = [f for f in audit.verify(s).findings if f.subject == c["id"]]
            assert [f.problem for f in found] == ["edited"]
            refused(b.post(f"/contracts/{c['id']}/accept", headers=key()), 409, "ledger-mismatch")
            assert ok(b.get(f"/contracts/{c['id']}"))["payment_status"] == "held"
        finally:  # put the row back: the database is shared with other tests
            with ex.ctx.writes() as s:
                s.execute(update(Contract).where(Contract.id == c["id"]).values(**original))
                s.commit()


def test_a_suspended_merchant_is_not_paid_until_reinstated(exchange: Exchange) -> None:
    ex = exchange
    op, merchant, buyer = (world.party(ex, [r]) for r in ("operator", "merchant", "buyer"))
    pid = world.list_fixed_product(ex.ctx, merchant, 50_000)
    with client(ex, op) as o, client(ex, merchant) as m, client(ex, buyer) as b:
        world.fund(o, b, 100_000)
        held = world.signed(b, m, pid)
        ok(b.post(f"/contracts/{held['id']}/pay", headers=key()))
        unpaid = world.signed(b, m, pid)
        ok(o.post(f"/organisations/{merchant.id}/suspend", json={"reason": "inquiry"}))
        try:
            refused(
                b.post(f"/contracts/{held['id']}/accept", headers=key()),
                409,
                "counterparty-suspended",
            )
            refused(
                b.post(f"/contracts/{unpaid['id']}/pay", headers=key()),
                409,
                "counterparty-suspended",
            )
            assert ok(b.get(f"/contracts/{held['id']}"))["payment_status"] == "held"
        finally:
            ok(o.post(f"/organisations/{merchant.id}/reinstate", json={"reason": "cleared"}))
        assert (
            ok(b.post(f"/contracts/{held['id']}/accept", headers=key()))["payment_status"]
            == "released"
        )


def test_an_edited_commission_is_found_and_never_paid(exchange: Exchange) -> None:
    ex = exchange
    op, merchant, buyer = (world.party(ex, [r]) for r in ("operator", "merchant", "buyer"))
    agent = world.party(ex, ["agent"])
    world.certify_agency(ex.ctx, agent, merchant, 500)
    pid = world.list_fixed_product(ex.ctx, merchant, 50_000)
    with client(ex, op) as o, client(ex, merchant) as m, client(ex, buyer) as b:
        world.fund(o, b, 100_000)
        c = world.signed(b, m, pid)
        ok(b.post(f"/contracts/{c['id']}/pay", headers=key()))
        ok(b.post(f"/contracts/{c['id']}/accept", headers=key()))
        with ex.ctx.reads() as s:
            row = s.scalars(select(Commission).where(Commission.contract_id == c["id"])).one()
            assert row.amount_fen == 2_500  # 5 % of 50,000
            com_id = row.id
        with ex.ctx.writes() as s:  # the commission redirected to the buyer
            s.execute(
                update(Commission).where(Commission.id == com_id).values(agent_org_id=buyer.id)
            )
            s.commit()
        try:
            with ex.ctx.reads() as s:
                found = [f.problem for f in audit.verify(s).findings if f.subject == com_id]
            assert found == ["edited"]
            body = {"agent_org_id": buyer.id}
            refused(o.post("/commissions/payout", json=body, headers=key()), 409, "ledger-mismatch")
        finally:
            with ex.ctx.writes() as s:
                s.execute(
                    update(Commission).where(Commission.id == com_id).values(agent_org_id=agent.id)
                )
                s.commit()
        paid = ok(o.post("/commissions/payout", json={"agent_org_id": agent.id}, headers=key()))
        assert len(paid["journal_ids"]) == 1
