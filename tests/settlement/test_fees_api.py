"""The fee schedule and participant tiers over HTTP, and the terms the market reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from databourse.ledger.models import LedgerEntry
from databourse.settlement import fees
from databourse.settlement.fees import FeeTerms
from tests.assets.test_asset_api import Member, Staff, ok, refused
from tests.conftest import Exchange


def terms(ex: Exchange, kind: str, org_id: str) -> FeeTerms:
    with ex.ctx.reads() as s:
        return fees.fee_terms(s, kind, org_id)


@pytest.fixture
def member_rules(staff: Staff) -> Iterator[None]:
    """The test changes the rules of the "member" tier; they are put back to the defaults
    after it (other tests' merchants are all "standard")."""
    yield
    rate, minimum = fees.DEFAULT_FEES["member"]
    for kind in ("api", "*"):
        ok(staff.op.put(f"/fee-schedule/{kind}/member", json={"rate_bp": rate, "min_fen": minimum}))


def test_tiers_and_rules_decide_a_merchants_fee(
    exchange: Exchange, staff: Staff, member_rules: None
) -> None:
    merchant = Member(exchange, ["merchant"])
    op = staff.op
    assert terms(exchange, "dataset", merchant.id) == FeeTerms(300, 100, "standard")

    refused(
        merchant.c.put(f"/orgs/{merchant.id}/tier", json={"tier": "strategic"}), 403, "forbidden"
    )
    refused(op.put(f"/orgs/{merchant.id}/tier", json={"tier": "gold"}), 422, "validation")
    refused(
        op.put("/orgs/org_00000000000000000000/tier", json={"tier": "member"}), 404, "not-found"
    )
    t = ok(op.put(f"/orgs/{merchant.id}/tier", json={"tier": "member"}))
    assert (t["org_id"], t["tier"]) == (merchant.id, "member")
    assert terms(exchange, "dataset", merchant.id) == FeeTerms(200, 100, "member")

    refused(merchant.c.put("/fee-schedule/api/member", json={"rate_bp": 1}), 403, "forbidden")
    for path, body, slug in [
        ("/fee-schedule/api/member", {"rate_bp": 5001}, "validation"),
        ("/fee-schedule/api/member", {"rate_bp": 10, "min_fen": -1}, "validation"),
        ("/fee-schedule/api/member", {"rate_bp": "10"}, "validation"),
        ("/fee-schedule/video/member", {"rate_bp": 10}, "invalid-fee-rule"),
        ("/fee-schedule/api/gold", {"rate_bp": 10}, "invalid-fee-rule"),
    ]:
        refused(op.put(path, json=body), 422, slug)
    rule = ok(op.put("/fee-schedule/api/member", json={"rate_bp": 150, "min_fen": 50}))
    assert (rule["product_kind"], rule["tier"], rule["rate_bp"], rule["min_fen"]) == (
        "api",
        "member",
        150,
        50,
    )
    assert terms(exchange, "api", merchant.id) == FeeTerms(150, 50, "member")
    assert terms(exchange, "dataset", merchant.id) == FeeTerms(200, 100, "member")
    ok(op.put("/fee-schedule/*/member", json={"rate_bp": 120}))
    assert terms(exchange, "dataset", merchant.id) == FeeTerms(120, 0, "member")  # every kind
    assert terms(exchange, "api", merchant.id) == FeeTerms(150, 50, "member")  # its own rule

    schedule = ok(merchant.c.get("/fee-schedule"))
    assert schedule["tiers"] == ["standard", "member", "strategic"]
    effective = {(e["product_kind"], e["tier"]): e for e in schedule["effective"]}
    assert len(effective) == 9
    assert effective[("api", "member")] == {
        "product_kind": "api",
        "tier": "member",
        "rate_bp": 150,
        "min_fen": 50,
        "source": "rule",
    }
    assert effective[("compute", "member")]["source"] == "rule for every kind"
    assert {r["product_kind"] for r in schedule["rules"] if r["tier"] == "member"} >= {"api", "*"}

    with exchange.ctx.reads() as s:
        entry = s.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.subject == "fee:api:member")
            .order_by(LedgerEntry.seq.desc())
        ).first()
        tier_entry = s.scalar(
            select(LedgerEntry).where(LedgerEntry.subject == f"tier:{merchant.id}")
        )
    assert entry is not None and entry.kind == "fee.updated"
    assert tier_entry is not None and tier_entry.kind == "tier.updated"
    # the organisation is a party to its tier's entry
    ok(merchant.c.get(f"/ledger/entries/{tier_entry.seq}"))


def test_the_default_schedule_when_no_rule_applies() -> None:
    assert fees.DEFAULT_FEES == {
        "standard": (300, 100),
        "member": (200, 100),
        "strategic": (100, 0),
    }
    assert set(fees.DEFAULT_FEES) == set(fees.TIERS)
