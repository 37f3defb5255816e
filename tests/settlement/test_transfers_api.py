"""Deposits and withdrawals over HTTP: idempotent, operator-confirmed, on the ledger."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from databourse.ledger.models import LedgerEntry
from databourse.settlement.models import Journal
from databourse.settlement.rails import BankTransferRail, InvalidRailReference
from tests.assets.test_asset_api import Member, Staff, ok, refused
from tests.conftest import Exchange
from tests.settlement.helpers import balances, bank_ref, deposit, key

ACCOUNT_NO = "6222 0210 0123 4567 890"


@pytest.fixture
def member(exchange: Exchange) -> Member:
    return Member(exchange, ["buyer"])


def entries_of(ex: Exchange, subject: str) -> list[LedgerEntry]:
    with ex.ctx.reads() as s:
        return list(
            s.scalars(
                select(LedgerEntry).where(LedgerEntry.subject == subject).order_by(LedgerEntry.seq)
            )
        )


def kinds_seq(ex: Exchange, subject: str) -> list[int]:
    return [e.seq for e in entries_of(ex, subject)]


def test_a_deposit_is_idempotent_and_counts_once_confirmed(
    exchange: Exchange, member: Member, staff: Staff
) -> None:
    m, op = member.c, staff.op
    body = {"amount_fen": 125_000, "reference": ACCOUNT_NO}
    refused(m.post("/deposits", json=body), 428, "idempotency-key-required")
    k = key()
    t = ok(m.post("/deposits", json=body, headers=k), 201)
    assert (t["status"], t["direction"], t["currency"], t["rail"]) == (
        "requested",
        "deposit",
        "CNY",
        "bank_transfer",
    )
    how = t["instructions"]
    assert how["pay_to"] == exchange.ctx.settings.bank_account
    assert (how["reference"], how["amount_fen"]) == (t["id"], 125_000)
    again = m.post("/deposits", json=body, headers=k)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == t["id"]
    refused(
        m.post("/deposits", json={**body, "amount_fen": 1}, headers=k),
        422,
        "idempotency-key-reused",
    )
    assert balances(m) == {}  # nothing counts before the operator sees the money

    confirm = {"rail_ref": " bk 2026 0301 77 "}
    refused(m.post(f"/deposits/{t['id']}/confirm", json=confirm, headers=key()), 403, "forbidden")
    refused(op.post(f"/deposits/{t['id']}/confirm", json=confirm), 428, "idempotency-key-required")
    refused(
        op.post(f"/withdrawals/{t['id']}/confirm", json=confirm, headers=key()), 404, "not-found"
    )
    done = ok(op.post(f"/deposits/{t['id']}/confirm", json=confirm, headers=key()))
    assert (done["status"], done["rail_ref"]) == ("confirmed", "BK20260301" + "77")
    assert done["decided_by"].startswith("user:")
    assert balances(m)["available"] == 125_000
    refused(
        op.post(f"/deposits/{t['id']}/confirm", json=confirm, headers=key()),
        409,
        "invalid-transition",
    )

    # the same bank transaction cannot be credited twice
    second = ok(m.post("/deposits", json=body, headers=key()), 201)
    refused(
        op.post(f"/deposits/{second['id']}/confirm", json=confirm, headers=key()),
        409,
        "rail-reference-used",
    )
    refused(
        op.post(f"/deposits/{second['id']}/reject", json={"reason": ""}, headers=key()),
        422,
        "validation",
    )
    r = ok(
        op.post(
            f"/deposits/{second['id']}/reject", json={"reason": "no such credit"}, headers=key()
        )
    )
    assert (r["status"], r["reason"]) == ("rejected", "no such credit")
    assert balances(m)["available"] == 125_000

    # the ledger has the transfer's life and the movement, with the account number hashed
    kinds = [e.kind for e in entries_of(exchange, t["id"])]
    assert kinds == ["deposit.requested", "deposit.confirmed"]
    for e in entries_of(exchange, t["id"]):
        assert ACCOUNT_NO.encode() not in e.entry and b"6222" not in e.entry
    with exchange.ctx.reads() as s:
        [jid] = s.scalars(select(Journal.id).where(Journal.ref == t["id"])).all()
    [moved] = entries_of(exchange, jid)
    assert moved.kind == "settlement.deposit" and moved.seq > kinds_seq(exchange, t["id"])[0]


def test_deposit_requests_are_checked(exchange: Exchange, member: Member) -> None:
    m = member.c
    for amount in (0, -5, 10**15 + 1, True, "100"):
        refused(m.post("/deposits", json={"amount_fen": amount}, headers=key()), 422, "validation")
    refused(
        m.post("/deposits", json={"amount_fen": 1, "currency": "cny"}, headers=key()),
        422,
        "validation",
    )
    refused(
        m.post("/deposits", json={"amount_fen": 1, "rail": "carrier_pigeon"}, headers=key()),
        422,
        "unknown-payment-rail",
    )
    r = refused(
        m.post("/deposits", json={"amount_fen": 1, "rail": "digital_rmb"}, headers=key()),
        503,
        "payment-rail-unavailable",
    )
    assert "wallet provider" in r["detail"]
    assert ok(m.get("/transfers")) == []
    ok(m.post("/deposits", json={"amount_fen": 1, "currency": "USD"}, headers=key()), 201)


def test_a_withdrawal_sets_money_aside_until_paid_or_returned(
    exchange: Exchange, member: Member, staff: Staff
) -> None:
    m, op = member.c, staff.op
    deposit(m, op, 1000)
    body = {"amount_fen": 1001, "reference": ACCOUNT_NO}
    refused(m.post("/withdrawals", json=body), 428, "idempotency-key-required")
    r = refused(m.post("/withdrawals", json=body, headers=key()), 409, "insufficient-funds")
    assert (r["balance_fen"], r["needed_fen"]) == (1000, 1001)
    assert [t["direction"] for t in ok(m.get("/transfers"))] == ["deposit"]  # nothing kept
    refused(m.post("/withdrawals", json={"amount_fen": 5}, headers=key()), 422, "validation")

    w = ok(m.post("/withdrawals", json={**body, "amount_fen": 300}, headers=key()), 201)
    assert w["instructions"]["pay_to"] == ACCOUNT_NO  # for the operator paying it
    assert balances(m) == {"available": 700, "withdrawing": 300}
    clearing = balances(op, "rail:bank_transfer")["clearing"]
    done = ok(
        op.post(f"/withdrawals/{w['id']}/confirm", json={"rail_ref": bank_ref()}, headers=key())
    )
    assert done["status"] == "confirmed"
    assert balances(m) == {"available": 700, "withdrawing": 0}
    assert balances(op, "rail:bank_transfer")["clearing"] == clearing + 300

    back = ok(m.post("/withdrawals", json={**body, "amount_fen": 200}, headers=key()), 201)
    assert balances(m)["available"] == 500
    r2 = ok(
        op.post(
            f"/withdrawals/{back['id']}/reject",
            json={"reason": "payee name differs"},
            headers=key(),
        )
    )
    assert r2["status"] == "rejected"
    assert balances(m) == {"available": 700, "withdrawing": 0}
    kinds = [e.kind for e in entries_of(exchange, back["id"])]
    assert kinds == ["withdrawal.requested", "withdrawal.rejected"]


def test_withdrawals_need_an_administrator_and_confirmations_an_operator(
    exchange: Exchange, member: Member, staff: Staff
) -> None:
    from tests.assets.test_asset_api import Demo

    other = Demo(exchange, "buyer_b")
    m = member.c
    deposit(m, staff.op, 500)
    w = ok(m.post("/withdrawals", json={"amount_fen": 100, "reference": "x"}, headers=key()), 201)
    refused(
        other.c.post(
            f"/withdrawals/{w['id']}/confirm", json={"rail_ref": bank_ref()}, headers=key()
        ),
        403,
        "forbidden",
    )
    refused(
        staff.reg.post(f"/withdrawals/{w['id']}/reject", json={"reason": "x"}, headers=key()),
        403,
        "forbidden",
    )
    # transfers are listed to their organisation and to the exchange's staff
    assert [t["id"] for t in ok(other.c.get("/transfers")) if t["id"] == w["id"]] == []
    refused(other.c.get("/transfers", params={"org_id": member.id}), 404, "not-found")
    seen = ok(staff.reg.get("/transfers", params={"org_id": member.id, "direction": "withdrawal"}))
    assert [t["id"] for t in seen] == [w["id"]]
    assert ok(m.get("/transfers", params={"status": "requested"}))[0]["id"] == w["id"]


def test_the_bank_rail_normalises_its_references() -> None:
    rail = BankTransferRail("acct")
    assert rail.confirm(None, " ab-12/34 ") == "AB-12/34"
    for bad in ("", "ab", "x" * 65, "中文参考号", "ab;cd"):
        with pytest.raises(InvalidRailReference):
            rail.confirm(None, bad)
