"""Sealed-bid second-price auctions: the pure outcome, and whole auctions over HTTP.

The HTTP tests move the exchange's clock (``advance_clock``) through bidding and revealing
instead of waiting, and always put it back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from databourse.auth.policy import SYSTEM_PRINCIPAL
from databourse.db import advance_clock
from databourse.hashing import state_hash
from databourse.ledger.models import LedgerEntry
from databourse.ledger.writer import last_state_hashes
from databourse.market import auction, bidding
from databourse.market.auction import SealedBid, commitment, outcome
from databourse.market.models import Auction, Bid, Contract
from databourse.participants import services as participants
from databourse.uow import UnitOfWork
from tests import factories
from tests.assets.test_asset_api import (
    COLUMNS,
    Demo,
    Member,
    Staff,
    list_product,
    ok,
    refused,
    registered_asset,
    staff_for,
)
from tests.catalog.test_listing_flow import gbk_csv, upload
from tests.conftest import Exchange

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RESERVE = 100_000
PLAN = "独家许可拍卖 exclusive licence auction"
AUCTION_PLAN = {"name": PLAN, "model": "auction", "reserve_fen": RESERVE, "bidding_days": 3}
FIXED_PLAN = {"name": "一口价 fixed", "model": "fixed", "price_fen": 500_000}


def sealed(bidder: str, amount: int | None, minute: int = 0) -> SealedBid:
    return SealedBid(bidder, T0 + timedelta(minutes=minute), amount)


# ---------------------------------------------------------------- the pure outcome


def test_the_highest_bid_wins_at_the_second_price() -> None:
    o = outcome([sealed("a", 300), sealed("b", 500), sealed("c", 400)], 100)
    assert (o.winner, o.price_fen) == ("b", 400)
    assert o.ranking == (("b", 500), ("c", 400), ("a", 300))


def test_the_reserve_is_a_floor_and_a_threshold() -> None:
    assert outcome([sealed("a", 99), sealed("b", 50)], 100).winner is None
    o = outcome([sealed("a", 250), sealed("b", 80)], 100)  # b is below the reserve
    assert (o.winner, o.price_fen, o.ranking) == ("a", 100, (("a", 250),))
    o = outcome([sealed("a", 100)], 100)  # exactly the reserve is enough
    assert (o.winner, o.price_fen) == ("a", 100)


def test_one_bidder_pays_the_reserve() -> None:
    o = outcome([sealed("only", 1_000_000)], 120_000)
    assert (o.winner, o.price_fen) == ("only", 120_000)


def test_a_tie_goes_to_the_earlier_commitment_at_that_amount() -> None:
    o = outcome(
        [sealed("late", 300, minute=5), sealed("early", 300, minute=1), sealed("low", 200)], 100
    )
    assert (o.winner, o.price_fen) == ("early", 300)


def test_unrevealed_bids_do_not_count() -> None:
    o = outcome([sealed("hidden", None), sealed("a", 200), sealed("b", 150)], 100)
    assert (o.winner, o.price_fen) == ("a", 150)
    assert outcome([sealed("hidden", None)], 100) == auction.Outcome(None, None, ())
    assert outcome([], 100).winner is None


def test_a_commitment_binds_every_input() -> None:
    nonce = "ab" * 16
    base = commitment("auc_1", "org_1", 500, nonce)
    assert len(base) == 64 and base == commitment("auc_1", "org_1", 500, nonce)
    others = {
        commitment("auc_2", "org_1", 500, nonce),
        commitment("auc_1", "org_2", 500, nonce),
        commitment("auc_1", "org_1", 501, nonce),
        commitment("auc_1", "org_1", 500, "cd" * 16),
    }
    assert base not in others and len(others) == 4
    for bad in ("ab" * 15, "AB" * 16, "zz" * 16):
        with pytest.raises(ValueError):
            commitment("auc_1", "org_1", 500, bad)


amounts = st.integers(min_value=0, max_value=10_000)
bids_st = st.lists(st.one_of(st.none(), amounts), min_size=0, max_size=8)


@given(bids_st, amounts)
def test_the_price_lies_between_the_reserve_and_the_winning_bid(
    values: list[int | None], reserve: int
) -> None:
    bids = [sealed(f"b{i}", v, minute=i) for i, v in enumerate(values)]
    o = outcome(bids, reserve)
    valid = [v for v in values if v is not None and v >= reserve]
    if not valid:
        assert o.winner is None and o.price_fen is None
        return
    won = next(b.amount_fen for b in bids if b.bidder == o.winner)
    assert won is not None and won == max(valid)
    assert o.price_fen is not None and reserve <= o.price_fen <= won
    second = sorted(valid, reverse=True)[1] if len(valid) > 1 else reserve
    assert o.price_fen == max(second, reserve)


def _utility(value: int, mine: int, others: list[int | None], reserve: int, minute: int) -> int:
    """What bidding ``mine`` is worth to a bidder who values the licence at ``value``."""
    bids = [sealed(f"o{i}", v, minute=i if i < minute else i + 1) for i, v in enumerate(others)]
    o = outcome([*bids, sealed("me", mine, minute=minute)], reserve)
    return value - (o.price_fen or 0) if o.winner == "me" else 0


@given(
    amounts,
    amounts,
    st.lists(st.one_of(st.none(), amounts), max_size=5),
    amounts,
    st.integers(min_value=0, max_value=5),
)
def test_bidding_ones_true_value_is_never_worse(
    value: int, deviation: int, others: list[int | None], reserve: int, minute: int
) -> None:
    """Vickrey's dominant strategy: whatever the others bid, and whenever one commits."""
    minute = min(minute, len(others))
    truthful = _utility(value, value, others, reserve, minute)
    assert truthful >= 0
    assert truthful >= _utility(value, deviation, others, reserve, minute)


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def clock() -> Iterator[Callable[[timedelta], None]]:
    try:
        yield advance_clock
    finally:
        advance_clock(None)


@pytest.fixture(scope="module")
def staff(exchange: Exchange) -> Iterator[Staff]:
    yield from staff_for(exchange)


@pytest.fixture(scope="module")
def merchant(exchange: Exchange) -> Member:
    return Member(exchange, ["merchant"])


def auction_product(m: httpx.Client, op: httpx.Client) -> str:
    """A listed dataset with an auction plan and a fixed-price plan, for research,
    statistics or marketing, licensed for at most 365 days."""
    asset_id = registered_asset(m, op)
    ok(upload(m, asset_id, gbk_csv()), 201)
    body = factories.product([asset_id], COLUMNS, plans=[AUCTION_PLAN, FIXED_PLAN])
    return list_product(m, op, body)


@dataclass
class Bidder:
    member: Member
    amount: int
    nonce: str

    @property
    def c(self) -> httpx.Client:
        return self.member.c

    def commit(self, auction_id: str, purpose: str = "research") -> httpx.Response:
        sealed_amount = commitment(auction_id, self.member.id, self.amount, self.nonce)
        return self.c.post(
            f"/auctions/{auction_id}/bids", json={"purpose": purpose, "commitment": sealed_amount}
        )

    def reveal(self, auction_id: str, amount: int | None = None) -> httpx.Response:
        body = {"amount_fen": self.amount if amount is None else amount, "nonce": self.nonce}
        return self.c.post(f"/auctions/{auction_id}/reveal", json=body)


def bidders(ex: Exchange, *amounts: int) -> list[Bidder]:
    return [Bidder(Member(ex, ["buyer"]), a, secrets.token_hex(16)) for a in amounts]


def open_auction(m: httpx.Client, product_id: str, term_days: int = 180) -> dict[str, Any]:
    body = {"product_id": product_id, "plan": PLAN, "term_days": term_days}
    a: dict[str, Any] = ok(m.post("/auctions", json=body), 201)
    return a


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_whole_auction(
    exchange: Exchange, merchant: Member, staff: Staff, clock: Callable[[timedelta], None]
) -> None:
    m, op = merchant.c, staff.op
    pid = auction_product(m, op)
    refused(
        m.post("/auctions", json={"product_id": pid, "plan": FIXED_PLAN["name"], "term_days": 30}),
        422,
        "invalid-terms",
    )
    refused(
        m.post("/auctions", json={"product_id": pid, "plan": PLAN, "term_days": 400}),
        422,
        "invalid-terms",
    )
    a = open_auction(m, pid)
    aid = a["id"]
    assert (a["status"], a["reserve_fen"], a["currency"], a["bids"]) == (
        "bidding",
        RESERVE,
        "CNY",
        0,
    )
    closes = _when(a["bids_close_at"])
    assert abs(closes - datetime.now(UTC) - timedelta(days=3)) < timedelta(minutes=1)
    assert _when(a["reveals_close_at"]) - closes == timedelta(
        hours=exchange.ctx.settings.auction_reveal_hours
    )
    refused(
        m.post("/auctions", json={"product_id": pid, "plan": PLAN, "term_days": 90}),
        409,
        "conflict",
    )  # one auction of a product at a time

    low, high, middle = bidders(exchange, 300_000, 500_000, 400_000)
    refused(
        low.c.post("/auctions", json={"product_id": pid, "plan": PLAN, "term_days": 30}),
        403,
        "forbidden",
    )  # only merchants auction
    refused(
        m.post(f"/auctions/{aid}/bids", json={"purpose": "research", "commitment": "0" * 64}),
        403,
        "forbidden",
    )
    refused(low.commit(aid, purpose="credit_assessment"), 409, "pre-trade-check-failed")
    for b in (low, high, middle):
        bid = ok(b.commit(aid), 201)
        assert bid["amount_fen"] is None and bid["bidder_org_id"] == b.member.id
    # a second bid replaces the first: the lowest bidder first committed to another amount
    first = ok(low.commit(aid), 201)
    assert ok(low.c.get(f"/auctions/{aid}"))["bids"] == 3

    mine = ok(low.c.get(f"/auctions/{aid}/bids"))
    assert [b["id"] for b in mine] == [first["id"]]
    every = ok(m.get(f"/auctions/{aid}/bids"))
    assert len(every) == 3 and all(b["amount_fen"] is None for b in every)
    assert len(ok(op.get(f"/auctions/{aid}/bids"))) == 3
    onlooker = Demo(exchange, "buyer_a")
    assert ok(onlooker.c.get(f"/auctions/{aid}/bids")) == []
    assert ok(onlooker.c.get(f"/auctions/{aid}"))["status"] == "bidding"
    assert aid in [
        x["id"]
        for x in ok(onlooker.c.get("/auctions", params={"product_id": pid, "status": "bidding"}))
    ]

    refused(high.reveal(aid), 409, "auction-phase")  # no amount before bidding closes
    refused(m.post(f"/auctions/{aid}/close"), 409, "auction-phase")

    clock(timedelta(days=3, minutes=1))
    late = bidders(exchange, 900_000)[0]
    refused(late.commit(aid), 409, "auction-phase")
    assert ok(m.get(f"/auctions/{aid}"))["status"] == "revealing"
    wrong = refused(high.reveal(aid, amount=high.amount + 1), 422, "invalid-bid")
    assert "does not match your commitment" in wrong["detail"]
    refused(late.reveal(aid), 404, "not-found")  # no bid to reveal
    assert ok(high.reveal(aid))["amount_fen"] == high.amount
    assert ok(high.reveal(aid))["amount_fen"] == high.amount  # the same opening: unchanged
    ok(low.reveal(aid))
    refused(m.post(f"/auctions/{aid}/close"), 409, "auction-phase")  # one bid still sealed
    ok(middle.reveal(aid))
    refused(low.c.post(f"/auctions/{aid}/close"), 403, "forbidden")
    refused(Demo(exchange, "merchant_a").c.post(f"/auctions/{aid}/close"), 404, "not-found")

    done = ok(m.post(f"/auctions/{aid}/close"))  # every bid revealed: no need to wait
    assert (done["status"], done["winner_org_id"], done["price_fen"]) == (
        "closed",
        high.member.id,
        middle.amount,
    )
    refused(m.post(f"/auctions/{aid}/close"), 409, "auction-phase")
    amounts = {b["bidder_org_id"]: b["amount_fen"] for b in ok(m.get(f"/auctions/{aid}/bids"))}
    assert amounts == {b.member.id: b.amount for b in (low, high, middle)}

    with exchange.ctx.reads() as s:
        c = s.get(Contract, done["contract_id"])
        assert c is not None
        assert (c.status, c.payment_status, c.buyer_org_id, c.merchant_org_id) == (
            "awaiting_signatures",
            "unpaid",
            high.member.id,
            merchant.id,
        )
        assert (c.price_fen, c.auction_id, c.purpose) == (middle.amount, aid, "research")
        assert c.plan["model"] == "auction" and c.plan["agreed"]["price_fen"] == middle.amount
        assert c.policy["term_days"] == 180 and (c.ends_at - c.starts_at).days == 180
    # the exclusive licence now binds the product: no new auction while it is in force
    refused(
        m.post("/auctions", json={"product_id": pid, "plan": PLAN, "term_days": 90}),
        409,
        "conflict",
    )
    assert_on_the_ledger(exchange, aid)


def assert_on_the_ledger(ex: Exchange, auction_id: str) -> None:
    """The auction and its bids are as their last ledger entries say (what the ledger audit
    checks), and the auction's life is there: opened, bids committed (one replaced),
    revealed, closed."""
    with ex.ctx.reads() as s:
        a = s.get(Auction, auction_id)
        bids = list(s.scalars(select(Bid).where(Bid.auction_id == auction_id)))
        assert a is not None
        rows = {a.id: bidding.auction_state(a)} | {b.id: bidding.bid_state(b) for b in bids}
        recorded = last_state_hashes(s, list(rows))
        kinds = list(
            s.scalars(
                select(LedgerEntry.kind)
                .where(LedgerEntry.subject.in_(list(rows)))
                .order_by(LedgerEntry.seq)
            )
        )
    assert recorded == {i: state_hash(state) for i, state in rows.items()}
    assert kinds[0] == "auction.opened" and kinds[-1] == "auction.closed"
    assert (kinds.count("bid.committed"), kinds.count("bid.replaced")) == (3, 1)
    assert (kinds.count("bid.revealed"), kinds.count("auction.revealing")) == (3, 1)


def test_an_auction_with_no_bid_at_the_reserve_fails(
    exchange: Exchange, merchant: Member, staff: Staff, clock: Callable[[timedelta], None]
) -> None:
    pid = auction_product(merchant.c, staff.op)
    aid = open_auction(merchant.c, pid)["id"]
    below, sealed_only = bidders(exchange, RESERVE - 1, 2 * RESERVE)
    for b in (below, sealed_only):
        ok(b.commit(aid), 201)
    clock(timedelta(days=3, minutes=1))
    ok(below.reveal(aid))  # the higher bidder never reveals
    refused(merchant.c.post(f"/auctions/{aid}/close"), 409, "auction-phase")
    with UnitOfWork(exchange.ctx.writes) as uow:  # not due while a bid may still be revealed
        assert not bidding.close_if_due(uow, exchange.ctx.settings, aid)
    clock(timedelta(hours=exchange.ctx.settings.auction_reveal_hours))
    refused(sealed_only.reveal(aid), 409, "auction-phase")
    with UnitOfWork(exchange.ctx.writes) as uow:
        assert aid in bidding.due(uow.session)
        assert bidding.close_due(uow, exchange.ctx.settings) >= 1
        uow.commit()
    a = ok(merchant.c.get(f"/auctions/{aid}"))
    assert (a["status"], a["winner_org_id"], a["price_fen"], a["contract_id"]) == (
        "failed",
        None,
        None,
        None,
    )
    with exchange.ctx.reads() as s:
        assert s.query(Contract).filter(Contract.auction_id == aid).count() == 0
    # the product is free to be auctioned again
    assert open_auction(merchant.c, pid)["status"] == "bidding"


def test_a_winner_failing_the_checks_at_close_is_passed_over(
    exchange: Exchange, merchant: Member, staff: Staff, clock: Callable[[timedelta], None]
) -> None:
    pid = auction_product(merchant.c, staff.op)
    aid = open_auction(merchant.c, pid, term_days=365)["id"]
    top, second, third = bidders(exchange, 600_000, 500_000, 200_000)
    for b in (top, second, third):
        ok(b.commit(aid, purpose="statistics"), 201)
    clock(timedelta(days=3, minutes=1))
    for b in (top, second, third):
        ok(b.reveal(aid))
    with UnitOfWork(exchange.ctx.writes) as uow:  # the top bidder is suspended before close
        participants.transition(uow, SYSTEM_PRINCIPAL, top.member.id, "suspend", "test")
        uow.commit()
    set_amount(exchange, aid, third.member.id, 450_000)  # an edit outside the exchange
    refused(staff.op.post(f"/auctions/{aid}/close"), 409, "ledger-mismatch")
    set_amount(exchange, aid, third.member.id, third.amount)
    done = ok(staff.op.post(f"/auctions/{aid}/close"))  # the operator may close any auction
    assert (done["status"], done["winner_org_id"]) == ("closed", second.member.id)
    assert done["price_fen"] == third.amount  # the second price among the remaining bids
    with exchange.ctx.reads() as s:
        c = s.get(Contract, done["contract_id"])
        assert c is not None and (c.buyer_org_id, c.price_fen) == (second.member.id, 200_000)


def set_amount(ex: Exchange, auction_id: str, bidder_org_id: str, amount: int) -> None:
    with ex.ctx.writes() as s, s.begin():
        s.execute(
            update(Bid)
            .where(Bid.auction_id == auction_id, Bid.bidder_org_id == bidder_org_id)
            .values(amount_fen=amount)
        )
