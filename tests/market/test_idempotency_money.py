"""Idempotency of the commands that move money, on both stores, over real HTTP.

- a response lost in transit (the client timed out, or hung up) and the request retried
  with the same key: the first result again, marked ``Idempotent-Replayed: true``, and
  the money moved once;
- fifty copies of one payment (and of one deposit confirmation) sent at once with one key:
  fifty identical answers, one executed and forty-nine replayed, one journal;
- the same key with another request: ``422 idempotency-key-reused``, nothing done;
- a money command without a key: ``428 idempotency-key-required``, nothing done.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from databourse.idempotency import IdempotencyRecord
from databourse.market.models import Contract
from databourse.settlement.models import Journal, Transfer
from tests.conftest import TLS, Exchange
from tests.market import world
from tests.market.world import balances, fund, key, ok, signed

PROBLEM = "urn:databourse:problem:"
PRICE = 88_000
COPIES = 50


@dataclass
class Member:
    org: world.Org
    c: httpx.Client


@dataclass
class Desk:
    """The module's market: the operator, a merchant with a listed product, new buyers."""

    ex: Exchange
    operator: world.Org
    op: httpx.Client
    merchant: Member
    product: str

    def buyer(self, funds: int = 0) -> Member:
        org = world.party(self.ex, ["buyer"])
        m = Member(org, world.client(self.ex, org))
        if funds:
            fund(self.op, m.c, funds)
        return m


@pytest.fixture(scope="module")
def desk(exchange: Exchange) -> Iterator[Desk]:
    operator = world.party(exchange, ["operator"])
    merchant = world.party(exchange, ["merchant"])
    product = world.list_fixed_product(exchange.ctx, merchant, PRICE)
    with (
        world.client(exchange, operator) as op,
        world.client(exchange, merchant) as m,
    ):
        yield Desk(exchange, operator, op, Member(merchant, m), product)


def journals(ex: Exchange, kind: str, ref: str) -> int:
    with ex.ctx.reads() as s:
        return int(
            s.scalar(select(func.count()).where(Journal.kind == kind, Journal.ref == ref)) or 0
        )


def recorded(ex: Exchange, owner: str, k: str) -> IdempotencyRecord | None:
    with ex.ctx.reads() as s:
        return s.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.owner == owner, IdempotencyRecord.key == k
            )
        )


def wait_recorded(ex: Exchange, owner: str, k: str, seconds: float) -> bool:
    """Whether the command under this key completed (its result kept) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rec = recorded(ex, owner, k)
        if rec is not None and rec.status_code:
            return True
        time.sleep(0.02)
    return False


def refused(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"] == PROBLEM + slug, r.text


# ---------------------------------------------------------------- lost answers


def lose_answer(ex: Exchange, token: str, path: str, headers: dict[str, str], how: str) -> None:
    """Send ``POST path`` and never read the answer: time out at once, or hang up."""
    if how == "timeout":
        with (
            httpx.Client(
                verify=TLS,
                base_url=ex.base_url + "/api/v1",
                headers={"Authorization": f"Bearer {token}", **headers},
                timeout=httpx.Timeout(10, read=0.001),
            ) as c,
            pytest.raises(httpx.ReadTimeout),
        ):
            c.post(path)
        return
    url = urlsplit(ex.base_url)
    lines = [
        f"POST /api/v1{path} HTTP/1.1",
        f"Host: {url.netloc}",
        f"Authorization: Bearer {token}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "Content-Length: 0",
        "Connection: close",
    ]
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    # closed without reading a byte of the answer


@pytest.mark.parametrize("how", ["timeout", "disconnect"])
def test_a_payment_whose_answer_was_lost_is_replayed_on_retry(desk: Desk, how: str) -> None:
    ex = desk.ex
    buyer = desk.buyer(funds=200_000)
    c = signed(buyer.c, desk.merchant.c, desk.product)
    path = f"/contracts/{c['id']}/pay"
    k = key()
    lose_answer(ex, buyer.org.token, path, k, how)
    # a command the server received runs to its end, whether or not its client waits
    assert wait_recorded(ex, buyer.org.ref, k["Idempotency-Key"], 15), "never completed"

    retry = buyer.c.post(path, headers=k)
    assert retry.status_code == 200, retry.text
    assert retry.json()["payment_status"] == "held"
    assert retry.headers.get("idempotent-replayed") == "true"
    again = buyer.c.post(path, headers=k)
    assert (again.status_code, again.json()) == (200, retry.json())
    assert again.headers.get("idempotent-replayed") == "true"

    assert journals(ex, "escrow.hold", c["id"]) == 1
    assert balances(buyer.c) == {"available": 200_000 - PRICE, "escrow": PRICE}


def test_a_deposit_request_whose_answer_was_lost_creates_one_transfer(desk: Desk) -> None:
    ex = desk.ex
    buyer = desk.buyer()
    k = key()
    body = {"amount_fen": 12_345, "reference": "6222 0202 0011 2233"}
    with (
        httpx.Client(
            verify=TLS,
            base_url=ex.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {buyer.org.token}"},
            timeout=httpx.Timeout(10, read=0.001),
        ) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post("/deposits", json=body, headers=k)
    assert wait_recorded(ex, buyer.org.ref, k["Idempotency-Key"], 15)
    retry = buyer.c.post("/deposits", json=body, headers=k)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("idempotent-replayed") == "true"
    with ex.ctx.reads() as s:
        ids = list(s.scalars(select(Transfer.id).where(Transfer.org_id == buyer.org.id)))
    assert ids == [retry.json()["id"]]


# ---------------------------------------------------------------- duplicates at once


def copies(
    ex: Exchange, token: str, path: str, headers: dict[str, str], body: Any = None
) -> list[tuple[int, Any, bool]]:
    """``COPIES`` identical requests released at the same moment, one client each."""
    gate = threading.Barrier(COPIES)

    def send(_: int) -> tuple[int, Any, bool]:
        with world.client(ex, token, timeout=120) as c:
            gate.wait()
            r = c.post(path, json=body, headers=headers)
            return r.status_code, r.json(), r.headers.get("idempotent-replayed") == "true"

    with ThreadPoolExecutor(COPIES) as pool:
        return list(pool.map(send, range(COPIES)))


def assert_one_answer(results: list[tuple[int, Any, bool]], status: int) -> Any:
    assert {s for s, _, _ in results} == {status}, [b for s, b, _ in results if s != status][:3]
    bodies = [b for _, b, _ in results]
    assert all(b == bodies[0] for b in bodies)
    assert sum(not replayed for _, _, replayed in results) == 1  # one ran, the rest replayed
    return bodies[0]


def test_fifty_copies_of_one_payment_pay_once(desk: Desk) -> None:
    ex = desk.ex
    buyer = desk.buyer(funds=150_000)
    c = signed(buyer.c, desk.merchant.c, desk.product)
    answer = assert_one_answer(copies(ex, buyer.org.token, f"/contracts/{c['id']}/pay", key()), 200)
    assert (answer["payment_status"], answer["escrow_fen"]) == ("held", PRICE)
    assert journals(ex, "escrow.hold", c["id"]) == 1
    assert balances(buyer.c) == {"available": 150_000 - PRICE, "escrow": PRICE}


def test_fifty_copies_of_one_deposit_confirmation_credit_once(desk: Desk) -> None:
    ex = desk.ex
    buyer = desk.buyer()
    t = ok(buyer.c.post("/deposits", json={"amount_fen": 70_000}, headers=key()), 201)
    body = {"rail_ref": f"BANK-{secrets.token_hex(6).upper()}"}
    answer = assert_one_answer(
        copies(ex, desk.operator.token, f"/deposits/{t['id']}/confirm", key(), body), 200
    )
    assert answer["status"] == "confirmed"
    assert journals(ex, "deposit", t["id"]) == 1
    assert balances(buyer.c) == {"available": 70_000}


def test_concurrent_payments_under_different_keys_pay_once(desk: Desk) -> None:
    """Two clicks, two keys: the contract's state machine lets one through."""
    ex = desk.ex
    buyer = desk.buyer(funds=3 * PRICE)
    c = signed(buyer.c, desk.merchant.c, desk.product)
    path = f"/contracts/{c['id']}/pay"
    gate = threading.Barrier(10)

    def send(_: int) -> httpx.Response:
        with world.client(ex, buyer.org, timeout=120) as cl:
            gate.wait()
            return cl.post(path, headers=key())

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(send, range(10)))
    assert sorted(r.status_code for r in results) == [200] + [409] * 9, [
        r.text for r in results if r.status_code not in (200, 409)
    ]
    for r in results:
        if r.status_code == 409:
            assert r.json()["type"] == PROBLEM + "invalid-transition"
    assert journals(ex, "escrow.hold", c["id"]) == 1
    assert balances(buyer.c) == {"available": 2 * PRICE, "escrow": PRICE}


# ---------------------------------------------------------------- one key, another request


def test_a_key_reused_with_another_amount_is_refused(desk: Desk) -> None:
    buyer = desk.buyer()
    k = key()
    first = ok(buyer.c.post("/deposits", json={"amount_fen": 10_000}, headers=k), 201)
    refused(
        buyer.c.post("/deposits", json={"amount_fen": 20_000}, headers=k),
        422,
        "idempotency-key-reused",
    )
    with desk.ex.ctx.reads() as s:
        rows = s.scalars(select(Transfer).where(Transfer.org_id == buyer.org.id)).all()
    assert [(t.id, t.amount_fen) for t in rows] == [(first["id"], 10_000)]


def test_a_key_reused_on_another_contract_is_refused(desk: Desk) -> None:
    buyer = desk.buyer(funds=3 * PRICE)
    a = signed(buyer.c, desk.merchant.c, desk.product)
    b = signed(buyer.c, desk.merchant.c, desk.product)
    k = key()
    ok(buyer.c.post(f"/contracts/{a['id']}/pay", headers=k))
    refused(buyer.c.post(f"/contracts/{b['id']}/pay", headers=k), 422, "idempotency-key-reused")
    assert journals(desk.ex, "escrow.hold", b["id"]) == 0
    assert balances(buyer.c) == {"available": 2 * PRICE, "escrow": PRICE}


def test_a_key_reused_with_another_split_is_refused(desk: Desk) -> None:
    buyer = desk.buyer(funds=PRICE)
    c = signed(buyer.c, desk.merchant.c, desk.product)
    ok(buyer.c.post(f"/contracts/{c['id']}/pay", headers=key()))
    ok(buyer.c.post(f"/contracts/{c['id']}/dispute", json={"reason": "late"}, headers=key()))
    k = key()
    path = f"/contracts/{c['id']}/resolve"
    first = ok(desk.op.post(path, json={"to_merchant_fen": 1000, "reason": "split"}, headers=k))
    other = desk.op.post(path, json={"to_merchant_fen": PRICE, "reason": "split"}, headers=k)
    refused(other, 422, "idempotency-key-reused")
    assert first["payment_status"] == "resolved"
    assert journals(desk.ex, "escrow.split", c["id"]) == 1
    assert balances(buyer.c)["available"] == PRICE - 1000


# ---------------------------------------------------------------- no key


@pytest.fixture
def pending(desk: Desk) -> Iterator[dict[str, Any]]:
    """A buyer with money, a signed contract, one paid and disputed, a deposit and a
    withdrawal awaiting the operator: every money command has something to act on."""
    buyer = desk.buyer(funds=5 * PRICE)
    unpaid = signed(buyer.c, desk.merchant.c, desk.product)
    held = signed(buyer.c, desk.merchant.c, desk.product)
    ok(buyer.c.post(f"/contracts/{held['id']}/pay", headers=key()))
    frozen = signed(buyer.c, desk.merchant.c, desk.product)
    ok(buyer.c.post(f"/contracts/{frozen['id']}/pay", headers=key()))
    ok(buyer.c.post(f"/contracts/{frozen['id']}/dispute", json={"reason": "x"}, headers=key()))
    deposit = ok(buyer.c.post("/deposits", json={"amount_fen": 1000}, headers=key()), 201)
    body = {"amount_fen": 1000, "reference": "6222020200112233"}
    withdrawal = ok(buyer.c.post("/withdrawals", json=body, headers=key()), 201)
    yield {
        "buyer": buyer,
        "unpaid": unpaid["id"],
        "held": held["id"],
        "frozen": frozen["id"],
        "deposit": deposit["id"],
        "withdrawal": withdrawal["id"],
    }


MONEY_COMMANDS = [
    ("buyer", "/deposits", {"amount_fen": 1000}),
    ("buyer", "/withdrawals", {"amount_fen": 1000, "reference": "6222020200112233"}),
    ("op", "/deposits/{deposit}/confirm", {"rail_ref": "BANK-NOKEY-1"}),
    ("op", "/deposits/{deposit}/reject", {"reason": "no credit"}),
    ("op", "/withdrawals/{withdrawal}/confirm", {"rail_ref": "PAY-NOKEY-1"}),
    ("op", "/withdrawals/{withdrawal}/reject", {"reason": "closed"}),
    ("buyer", "/contracts/{unpaid}/pay", None),
    ("buyer", "/contracts/{held}/accept", None),
    ("buyer", "/contracts/{held}/cancel", {}),
    ("buyer", "/contracts/{held}/dispute", {"reason": "late"}),
    ("op", "/contracts/{frozen}/resolve", {"to_merchant_fen": 0, "reason": "refund"}),
    ("op", "/contracts/{held}/terminate", {"reason": "ordered"}),
    ("op", "/commissions/payout", {}),
]


@pytest.mark.parametrize(
    ("who", "path", "body"), MONEY_COMMANDS, ids=[p for _, p, _ in MONEY_COMMANDS]
)
def test_a_money_command_without_a_key_is_refused(
    desk: Desk, pending: dict[str, Any], who: str, path: str, body: Any
) -> None:
    buyer: Member = pending["buyer"]
    caller = buyer.c if who == "buyer" else desk.op
    before = snapshot(desk.ex, buyer)
    r = caller.post(path.format(**pending), json=body)
    refused(r, 428, "idempotency-key-required")
    assert snapshot(desk.ex, buyer) == before


def snapshot(ex: Exchange, buyer: Member) -> tuple[Any, ...]:
    """The buyer's balances, contracts and transfers, and how many journals there are."""
    with ex.ctx.reads() as s:
        return (
            balances(buyer.c),
            s.scalar(select(func.count()).select_from(Journal)),
            s.execute(
                select(Contract.id, Contract.status, Contract.payment_status)
                .where(Contract.buyer_org_id == buyer.org.id)
                .order_by(Contract.id)
            ).all(),
            s.execute(
                select(Transfer.id, Transfer.status)
                .where(Transfer.org_id == buyer.org.id)
                .order_by(Transfer.id)
            ).all(),
        )
