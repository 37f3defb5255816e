"""A trade end to end over HTTP, on both stores: negotiate, sign, pay into escrow, deliver,
accept, and the statements, the exchange's fee account and the offline receipt agree;
then the branches: cancellation, dispute, the acceptance window, pre-trade refusals."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from databourse.db import advance_clock
from databourse.ledger import audit
from databourse.market import signing
from tests.assets.test_asset_api import ok, refused
from tests.conftest import Exchange

PLAN = "包年订阅 yearly"
METERED = "按行计费 metered per 1,000 rows"


@pytest.fixture
def clock() -> Iterator[None]:
    yield
    advance_clock(None)


def key() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(8)}


def bus_product(m: httpx.Client) -> str:
    return next(p["id"] for p in ok(m.get("/products")) if "公交" in p["title"])


def fund(ex: Exchange, client: httpx.Client, fen: int, op: httpx.Client | None = None) -> None:
    """A deposit by bank transfer, confirmed by the operator when the money arrives."""
    t = ok(client.post("/deposits", json={"amount_fen": fen}, headers=key()), 201)
    staff = op or ex.as_demo("operator")
    ok(
        staff.post(
            f"/deposits/{t['id']}/confirm", json={"rail_ref": "BANK-" + t["id"]}, headers=key()
        )
    )


def balances(client: httpx.Client, **params: str) -> dict[str, int]:
    return {a["kind"]: a["balance_fen"] for a in ok(client.get("/accounts", params=params))}


def signed_contract(b: httpx.Client, m: httpx.Client, product: str, price: int) -> dict[str, Any]:
    """A subscription negotiated to ``price`` and signed by both sides."""
    n = ok(
        b.post(
            "/negotiations",
            json={
                "product_id": product,
                "purpose": "research",
                "offer": {"plan": PLAN, "price_fen": price - 100_000, "term_days": 365},
            },
        ),
        201,
    )
    ok(
        m.post(
            f"/negotiations/{n['id']}/offers",
            json={"plan": PLAN, "price_fen": price, "term_days": 365},
        ),
        201,
    )
    c = ok(b.post(f"/negotiations/{n['id']}/accept"))["contract"]
    ok(b.post(f"/contracts/{c['id']}/sign"))
    return dict(ok(m.post(f"/contracts/{c['id']}/sign")))


def test_negotiated_trade_settles_and_verifies_offline(exchange: Exchange) -> None:
    ex = exchange
    with ex.as_demo("buyer_a") as b, ex.as_demo("merchant_a") as m, ex.as_demo("operator") as op:
        before_fee = balances(op, org_id="exchange").get("fee_revenue", 0)
        before_m = balances(m).get("available", 0)
        fund(ex, b, 2_000_000)
        start_b = balances(b)["available"]
        product = bus_product(m)
        c = signed_contract(b, m, product, 1_100_000)
        assert c["status"] == "signed" and c["payment_status"] == "unpaid"
        assert c["price_fen"] == 1_100_000 and c["fee_fen"] == 33_000  # 3 % standard tier
        assert {s["side"] for s in c["signatures"]} == {"buyer", "merchant"}
        cid = c["id"]
        paid = ok(b.post(f"/contracts/{cid}/pay", headers=key()))
        assert (paid["status"], paid["payment_status"]) == ("active", "held")
        assert balances(b)["escrow"] == 1_100_000
        ok(m.post(f"/contracts/{cid}/deliver"))
        done = ok(b.post(f"/contracts/{cid}/accept", headers=key()))
        assert done["payment_status"] == "released"
        assert balances(b)["available"] == start_b - 1_100_000
        assert balances(b)["escrow"] == 0
        assert balances(m)["available"] - before_m == 1_100_000 - 33_000
        assert balances(op, org_id="exchange")["fee_revenue"] - before_fee == 33_000
        # the buyer's statement shows each posting with its contract and ledger entry
        lines = ok(b.get("/statements"))["lines"]
        mine = [x for x in lines if x["ref"] == cid]
        assert sorted((x["journal_kind"], x["account_kind"], x["amount_fen"]) for x in mine) == [
            ("escrow.hold", "available", -1_100_000),
            ("escrow.hold", "escrow", 1_100_000),
            ("escrow.release", "escrow", -1_100_000),
        ]
        for line in mine:
            r = ok(b.get(f"/ledger/entries/{line['ledger_seq']}/receipt"))
            assert r["entry_json"]["subject"] == line["journal_id"]
        mlines = [x for x in ok(m.get("/statements"))["lines"] if x["ref"] == cid]
        assert [(x["journal_kind"], x["amount_fen"]) for x in mlines] == [
            ("escrow.release", 1_067_000)
        ]
        # the contract receipt verifies offline, for both parties
        for party in (b, m):
            receipt = ok(party.get(f"/contracts/{cid}/receipt"))
            doc = signing.verify_filing(receipt, ex.ctx.log_key.verifier)
            assert doc["price"] == {"amount_fen": 1_100_000, "currency": "CNY"}
        receipt["contract"]["document"] = receipt["contract"]["document"].replace(
            "1100000", "1000000"
        )
        with pytest.raises(signing.ContractReceiptError):
            signing.verify_filing(receipt, ex.ctx.log_key.verifier)
        # the database agrees with the ledger: rows, journals and balances
        # (other tests edit rows of their own on purpose in this shared database)
        with ex.ctx.reads() as session:
            findings = audit.verify(session, ex.ctx.log_key.verifier).findings
        ours = ("ctr_", "neg_", "ofr_", "jnl_", "trf_", "sgk_", "acc_", "CNY")
        assert [f for f in findings if (f.subject or "").startswith(ours)] == []
        # a third party cannot see the contract at all
        with ex.as_demo("buyer_b") as other:
            refused(other.get(f"/contracts/{cid}"), 404, "not-found")


def test_cancel_refunds_and_dispute_splits(exchange: Exchange) -> None:
    ex = exchange
    with ex.as_demo("buyer_a") as b, ex.as_demo("merchant_a") as m, ex.as_demo("operator") as op:
        fund(ex, b, 3_000_000)
        product = bus_product(m)
        c1 = signed_contract(b, m, product, 1_000_000)
        ok(b.post(f"/contracts/{c1['id']}/pay", headers=key()))
        held = balances(b)
        out = ok(
            m.post(
                f"/contracts/{c1['id']}/cancel", json={"reason": "cannot deliver"}, headers=key()
            )
        )
        assert (out["status"], out["payment_status"]) == ("terminated", "refunded")
        after = balances(b)
        assert after["available"] == held["available"] + 1_000_000
        assert after["escrow"] == held["escrow"] - 1_000_000
        c2 = signed_contract(b, m, product, 1_000_000)
        ok(b.post(f"/contracts/{c2['id']}/pay", headers=key()))
        ok(m.post(f"/contracts/{c2['id']}/deliver"))
        refused(
            m.post(f"/contracts/{c2['id']}/cancel", json={}, headers=key()),
            409,
            "invalid-transition",
        )
        ok(b.post(f"/contracts/{c2['id']}/dispute", json={"reason": "rows missing"}, headers=key()))
        refused(b.post(f"/contracts/{c2['id']}/accept", headers=key()), 409, "invalid-transition")
        refused(
            b.post(
                f"/contracts/{c2['id']}/resolve",
                json={"to_merchant_fen": 1, "reason": "x"},
                headers=key(),
            ),
            403,
            "forbidden",
        )
        before_b, before_m = balances(b), balances(m)
        r = ok(
            op.post(
                f"/contracts/{c2['id']}/resolve",
                json={"to_merchant_fen": 600_000, "reason": "60 % delivered"},
                headers=key(),
            )
        )
        assert r["payment_status"] == "resolved"
        assert balances(b)["available"] == before_b["available"] + 400_000
        assert balances(m)["available"] == before_m["available"] + 600_000 - 18_000


def test_acceptance_window_releases_on_the_scheduled_run(exchange: Exchange, clock: None) -> None:
    ex = exchange
    with ex.as_demo("buyer_a") as b, ex.as_demo("merchant_a") as m, ex.as_demo("operator") as op:
        fund(ex, b, 1_000_000)
        c = signed_contract(b, m, bus_product(m), 900_000)
        ok(b.post(f"/contracts/{c['id']}/pay", headers=key()))
        ok(m.post(f"/contracts/{c['id']}/deliver"))
        ok(op.post("/settlement/run"))
        assert ok(b.get(f"/contracts/{c['id']}"))["payment_status"] == "delivered"
        advance_clock(timedelta(days=ex.ctx.settings.acceptance_days, minutes=1))
        assert ok(op.post("/settlement/run"))["released"] >= 1
        assert ok(b.get(f"/contracts/{c['id']}"))["payment_status"] == "released"


def test_pre_trade_checks_and_terms_are_enforced(exchange: Exchange, clock: None) -> None:
    ex = exchange
    with ex.as_demo("buyer_a") as b, ex.as_demo("merchant_a") as m, ex.as_demo("regulator") as reg:
        product = bus_product(m)
        body = {
            "product_id": product,
            "purpose": "credit_assessment",
            "offer": {"plan": PLAN, "price_fen": 1, "term_days": 30},
        }
        p = refused(b.post("/negotiations", json=body), 409, "pre-trade-check-failed")
        assert [f["rule"] for f in p["failures"]] == ["purpose-allowed"]
        wide = {
            **body["offer"],
            "policy": {"purposes": ["research"], "term_days": 30, "territories": ["US"]},
        }
        refused(
            b.post("/negotiations", json={**body, "purpose": "research", "offer": wide}),
            422,
            "invalid-terms",
        )
        refused(
            b.post(
                "/negotiations",
                json={**body, "purpose": "research", "offer": {**body["offer"], "term_days": 9999}},
            ),
            422,
            "invalid-terms",
        )
        n = ok(b.post("/negotiations", json={**body, "purpose": "research"}), 201)
        refused(b.post(f"/negotiations/{n['id']}/accept"), 409, "not-your-turn")
        refused(m.post("/negotiations", json={**body, "purpose": "research"}), 403, "forbidden")
        advance_clock(timedelta(hours=ex.ctx.settings.offer_ttl_hours, minutes=1))
        refused(m.post(f"/negotiations/{n['id']}/accept"), 409, "offer-expired")
        # buying a negotiated-only plan directly, or an unknown plan, is refused
        refused(
            b.post(
                "/contracts",
                json={"product_id": product, "purpose": "research", "plan": "no such plan"},
            ),
            422,
            "invalid-terms",
        )
        # a suspended contract refuses payment
        c = ok(
            b.post("/contracts", json={"product_id": product, "purpose": "research", "plan": PLAN}),
            201,
        )
        assert c["price_fen"] == 1_200_000
        ok(reg.post(f"/contracts/{c['id']}/suspend", json={"reason": "inquiry"}))
        refused(b.post(f"/contracts/{c['id']}/sign"), 409, "invalid-transition")
        refused(b.post(f"/contracts/{c['id']}/pay", headers=key()), 409, "contract-suspended")
        refused(b.post(f"/contracts/{c['id']}/pay"), 428, "idempotency-key-required")


def test_metered_contract_bills_from_usage(exchange: Exchange, clock: None) -> None:
    ex = exchange
    with ex.as_demo("buyer_b") as b, ex.as_demo("merchant_a") as m, ex.as_demo("operator") as op:
        product = bus_product(m)
        c = ok(
            b.post(
                "/contracts",
                json={
                    "product_id": product,
                    "purpose": "research",
                    "plan": METERED,
                    "term_days": 60,
                    "billing": "invoice",
                },
            ),
            201,
        )
        assert (c["billing"], c["payment_status"]) == ("invoice", "none")
        ok(b.post(f"/contracts/{c['id']}/sign"))
        c = ok(m.post(f"/contracts/{c['id']}/sign"))
        assert c["status"] == "active"
        at = c["starts_at"]
        recs = [{"metric": "row", "quantity": 600_000, "at": at, "key": f"r{i}"} for i in range(2)]
        body = {"source": "downloads", "records": recs}
        refused(b.post(f"/contracts/{c['id']}/usage", json=body), 403, "forbidden")
        assert ok(op.post(f"/contracts/{c['id']}/usage", json=body))["stored"] == 2
        assert ok(op.post(f"/contracts/{c['id']}/usage", json=body))["stored"] == 0  # counted once
        advance_clock(timedelta(days=ex.ctx.settings.billing_period_days, minutes=1))
        ok(op.post("/settlement/run"))
        bills = ok(b.get("/bills", params={"contract_id": c["id"]}))
        assert len(bills) == 1
        bill = bills[0]
        # 1,200,000 rows: 1,000,000 at ¥0.80 per 1,000, 200,000 at ¥0.50 per 1,000
        assert (bill["units"], bill["amount_fen"], bill["status"]) == (
            1_200_000,
            90_000,
            "invoiced",
        )
        assert balances(b)["payable"] == -90_000
        fund(ex, b, 100_000, op)
        paid = ok(b.post(f"/bills/{bill['id']}/pay", headers=key()))
        assert paid["status"] == "paid"
        assert balances(b)["payable"] == 0


def test_a_package_is_bought_at_its_size_and_huge_dues_are_refused(exchange: Exchange) -> None:
    ex = exchange
    with ex.as_demo("buyer_b") as b, ex.as_demo("merchant_b") as m:
        api = next(p["id"] for p in ok(m.get("/products")) if "手机号" in p["title"])
        body = {"product_id": api, "purpose": "risk_control", "plan": "10万次套餐 100k calls"}
        p = refused(b.post("/contracts", json={**body, "quantity": 10**15}), 422, "invalid-terms")
        assert p["field"] == "quantity"
        c = ok(b.post("/contracts", json=body), 201)
        assert (c["plan"]["agreed"]["quantity"], c["price_fen"]) == (100_000, 4_000_000)
        # a negotiated price whose total would overflow what the exchange accepts
        n = {
            "product_id": api,
            "purpose": "risk_control",
            "offer": {"plan": "10万次套餐 100k calls", "price_fen": 10**15, "quantity": 1},
        }
        ok(b.post("/negotiations", json=n), 201)
