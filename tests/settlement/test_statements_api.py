"""Statements: every posting with its balance and the ledger entry whose receipt proves it."""

from __future__ import annotations

from typing import Any

from databourse.ledger.receipts import verify as verify_receipt
from tests.assets.test_asset_api import Demo, Member, Staff, ok, refused
from tests.conftest import Exchange
from tests.settlement.helpers import bank_ref, deposit, key


def test_a_statement_lists_postings_whose_receipts_verify_offline(
    exchange: Exchange, staff: Staff
) -> None:
    member = Member(exchange, ["buyer"])
    m, op = member.c, staff.op
    deposit(m, op, 1000)
    w = ok(
        m.post("/withdrawals", json={"amount_fen": 300, "reference": "acct"}, headers=key()), 201
    )
    ok(op.post(f"/withdrawals/{w['id']}/confirm", json={"rail_ref": bank_ref()}, headers=key()))

    st = ok(m.get("/statements"))
    assert (st["org_id"], st["currency"], st["total"]) == (member.id, "CNY", 4)
    lines: list[dict[str, Any]] = st["lines"]
    kinds = ["deposit", "withdrawal.request", "withdrawal.request", "withdrawal.paid"]
    assert [x["journal_kind"] for x in lines] == kinds  # oldest first
    # (the postings of one journal come in account order)
    assert sorted(
        (x["journal_kind"], x["account_kind"], x["amount_fen"], x["balance_after_fen"])
        for x in lines
    ) == [
        ("deposit", "available", 1000, 1000),
        ("withdrawal.paid", "withdrawing", -300, 0),
        ("withdrawal.request", "available", -300, 700),
        ("withdrawal.request", "withdrawing", 300, 300),
    ]
    assert lines[1]["ref"] == lines[3]["ref"] == w["id"]
    balances = {b["account_kind"]: (b["opening_fen"], b["closing_fen"]) for b in st["balances"]}
    assert balances == {"available": (0, 700), "withdrawing": (0, 0)}

    # each line's journal is a ledger entry the member can prove offline
    for line in (lines[0], lines[3]):
        receipt = ok(m.get(f"/ledger/entries/{line['ledger_seq']}/receipt"))
        proved = verify_receipt(receipt, exchange.ctx.log_key.verifier)
        assert proved.entry["subject"] == line["journal_id"]
        assert proved.entry["kind"] == f"settlement.{line['journal_kind']}"
        legs = dict(proved.entry["body"]["legs"])
        assert line["amount_fen"] in legs.values()

    # a window: the balance at its start, the postings inside it
    since = lines[1]["at"]
    part = ok(m.get("/statements", params={"from": since}))
    assert part["total"] == 3
    opening = {b["account_kind"]: b["opening_fen"] for b in part["balances"]}
    assert opening == {"available": 1000, "withdrawing": 0}
    before = ok(m.get("/statements", params={"to": since}))
    assert [x["journal_kind"] for x in before["lines"]] == ["deposit"]
    page = ok(m.get("/statements", params={"limit": 1, "offset": 3}))
    assert [x["journal_kind"] for x in page["lines"]] == ["withdrawal.paid"] and page["total"] == 4
    assert ok(m.get("/statements", params={"currency": "USD"}))["lines"] == []
    refused(m.get("/statements", params={"from": "2026-01-01T00:00:00"}), 422, "validation")

    # others' statements: staff only; the exchange's own accounts: staff only
    other = Demo(exchange, "buyer_b")
    refused(other.c.get("/statements", params={"org_id": member.id}), 404, "not-found")
    assert ok(staff.reg.get("/statements", params={"org_id": member.id}))["total"] == 4
    refused(m.get("/statements", params={"org_id": "exchange"}), 404, "not-found")
    refused(m.get("/accounts", params={"org_id": "exchange"}), 404, "not-found")
    refused(m.get("/accounts", params={"org_id": "rail:bank_transfer"}), 404, "not-found")
    ok(op.get("/statements", params={"org_id": "exchange"}))
    assert {a["owner"] for a in ok(op.get("/accounts", params={"org_id": member.id}))} == {
        member.id
    }
