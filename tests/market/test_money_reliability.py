"""Money survives crashes: a bank test in the manner of Jepsen's, against a real process.

The exchange runs as its own uvicorn process on a throwaway PostgreSQL database. Client
threads trade through HTTP at random — deposits and their confirmation, fixed-price
purchases, both custodial signatures, payment into escrow, delivery, acceptance,
cancellation, disputes split by the operator, withdrawals confirmed or rejected,
commission payouts, and a few races (pay against cancel, accept against dispute) — every
command with its own ``Idempotency-Key``. Meanwhile a killer SIGKILLs the server at
random moments and starts it again. A client whose request fails in transit retries it
with the same key until it gets an answer, except that now and then it gives up at once,
leaving the command's outcome unknown to it.

Once the run is over and the exchange is quiescent, the database, the API and the ledger
must agree that:

a. every currency's balances sum to zero and no account that may not go negative is
   negative (``settlement.services.balance_findings``);
b. the members' balances plus the exchange's equal the confirmed deposits less the
   confirmed withdrawals (and the rail's clearing account mirrors that), escrow accounts
   hold exactly what the contracts say is in escrow, withdrawing accounts what is pending;
c. every command the client saw succeed is durable (its row, its state, its journal), and
   answers the same again, marked replayed, when retried with its key;
d. every command whose answer was lost happened exactly once or not at all: its idempotency
   record exists exactly when its effect does, and no contract has two escrow holds (or
   settlements), no transfer two journals;
e. the ledger's full audit (``databourse ledger verify``) finds nothing.

PostgreSQL only: under CI=true a missing server fails the test, elsewhere it is skipped.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from databourse.api.context import AppContext
from databourse.idempotency import IdempotencyRecord
from databourse.ledger import audit
from databourse.market.models import Contract, PaymentStatus, Signature
from databourse.settings import Settings
from databourse.settlement.models import EXCHANGE, Account, Commission, Journal, Transfer
from databourse.settlement.services import balance_findings
from tests.conftest import TLS, Exchange
from tests.market import world
from tests.market.server import ExchangeProcess, PostgresUnavailable, pg_database

pytestmark = pytest.mark.postgres

WORKERS = 10
KILLS = 3  # SIGKILLs of the server during the run (at least 3)
UP_BETWEEN_KILLS = (2.0, 6.0)  # seconds the server serves before the next kill
TAIL_SECONDS = 8.0  # the run goes on this long after the last restart
DRAIN_SECONDS = 20.0  # after the run, retries of in-flight commands stop after this
ABANDON = 0.2  # chance a client gives up on a command at its first transport error
IMPATIENT = 0.1  # chance an attempt waits only 10-300 ms for its answer (a dropped response)
REPLAY_SAMPLE = 150  # acknowledged commands sent again at the end
PRICES = (50_000, 123_456)
EXPECTED_REFUSALS = {
    "insufficient-funds",  # paying or withdrawing more than is available
    "invalid-transition",  # the other side of a race won
}
HELD = (PaymentStatus.held, PaymentStatus.delivered, PaymentStatus.frozen)


@dataclass
class Command:
    """One keyed command as its client saw it; ``status`` None: no answer ever came."""

    op: str
    who: world.Org
    key: str
    path: str
    body: dict[str, Any] | None
    target: str | None = None  # the contract or transfer it acts on
    side: str | None = None  # which party signs
    status: int | None = None
    answer: Any = None
    replayed: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def slug(self) -> str:
        if isinstance(self.answer, dict):
            return str(self.answer.get("type", "")).rsplit(":", 1)[-1]
        return ""

    def __str__(self) -> str:
        return f"{self.op} {self.path} key={self.key} -> {self.status} {self.slug}".strip()


@dataclass
class Bank:
    """The run: the market, the server, every command sent, and the stop signals."""

    ctx: AppContext
    market: world.Market
    server: ExchangeProcess
    commands: list[Command] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    give_up_at: float = float("inf")
    failures: list[str] = field(default_factory=list)  # killer or worker crashes

    # ---------------------------------------------------------------- the client side

    def send(
        self,
        http: httpx.Client,
        rng: random.Random,
        who: world.Org,
        op: str,
        path: str,
        body: dict[str, Any] | None = None,
        target: str | None = None,
        side: str | None = None,
    ) -> Command:
        """POST with a fresh key; on a transport error retry with the same key (or give up)."""
        cmd = Command(op, who, f"{op}-{secrets.token_hex(10)}", path, body, target, side)
        with self.lock:
            self.commands.append(cmd)
        headers = {"Authorization": f"Bearer {who.token}", "Idempotency-Key": cmd.key}
        while True:
            cmd.attempts += 1
            wait = rng.uniform(0.01, 0.3) if rng.random() < IMPATIENT else 10.0
            try:
                r = http.post(
                    path, json=body, headers=headers, timeout=httpx.Timeout(wait, connect=2)
                )
            except httpx.TransportError:
                if cmd.attempts == 1 and rng.random() < ABANDON:
                    return cmd  # the client gives up: the outcome stays unknown to it
                if time.monotonic() > self.give_up_at:
                    return cmd
                time.sleep(rng.uniform(0.05, 0.25))
                continue
            cmd.status = r.status_code
            try:
                cmd.answer = r.json()
            except ValueError:
                cmd.answer = r.text
            cmd.replayed = r.headers.get("idempotent-replayed") == "true"
            return cmd

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(
            verify=TLS,
            base_url=self.server.base_url + "/api/v1",
            timeout=httpx.Timeout(10, connect=2),
        ) as http:
            try:
                while not self.stop.is_set():
                    pick = rng.random()
                    if pick < 0.25:
                        self.fund(http, rng)
                    elif pick < 0.78:
                        self.trade(http, rng)
                    elif pick < 0.96:
                        self.withdraw(http, rng)
                    else:
                        self.send(
                            http, rng, self.market.operator, "payout", "/commissions/payout", {}
                        )
            except Exception as exc:  # reported by the test
                self.failures.append(f"worker {seed}: {exc!r}")

    def fund(self, http: httpx.Client, rng: random.Random) -> None:
        m = self.market
        who = rng.choice([*m.buyers, *m.buyers, m.merchant])
        amount = rng.randint(100_000, 600_000)
        req = self.send(http, rng, who, "deposit", "/deposits", {"amount_fen": amount})
        if not req.ok:
            return
        tid = req.answer["id"]
        if rng.random() < 0.9:
            body = {"rail_ref": f"BANK-{secrets.token_hex(6).upper()}"}
            self.send(
                http, rng, m.operator, "deposit.confirm", f"/deposits/{tid}/confirm", body, tid
            )
        else:
            body = {"reason": "no such credit on the statement"}
            self.send(http, rng, m.operator, "deposit.reject", f"/deposits/{tid}/reject", body, tid)

    def withdraw(self, http: httpx.Client, rng: random.Random) -> None:
        m = self.market
        who = rng.choice([*m.buyers, m.merchant, m.merchant, *([m.agent] if m.agent else [])])
        body = {"amount_fen": rng.randint(10_000, 300_000), "reference": "6222020200112233"}
        req = self.send(http, rng, who, "withdraw", "/withdrawals", body)
        if not req.ok:
            return
        tid = req.answer["id"]
        if rng.random() < 0.7:
            body = {"rail_ref": f"PAY-{secrets.token_hex(6).upper()}"}
            self.send(
                http, rng, m.operator, "withdraw.confirm", f"/withdrawals/{tid}/confirm", body, tid
            )
        else:
            body = {"reason": "the payee account is closed"}
            self.send(
                http, rng, m.operator, "withdraw.reject", f"/withdrawals/{tid}/reject", body, tid
            )

    def race(self, *steps: tuple[Any, ...]) -> list[Command]:
        """Send the commands at once, each from its own thread and client."""
        out: list[Command | None] = [None] * len(steps)

        def go(i: int, args: tuple[Any, ...]) -> None:
            with httpx.Client(
                verify=TLS,
                base_url=self.server.base_url + "/api/v1",
                timeout=httpx.Timeout(10, connect=2),
            ) as http:
                out[i] = self.send(http, *args)

        threads = [threading.Thread(target=go, args=(i, s)) for i, s in enumerate(steps)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [c for c in out if c is not None]

    def trade(self, http: httpx.Client, rng: random.Random) -> None:
        m = self.market
        buyer, merchant = rng.choice(m.buyers), m.merchant
        product_id = rng.choice(list(m.products))
        body = {"product_id": product_id, "purpose": world.PURPOSE, "plan": world.PLAN}
        bought = self.send(http, rng, buyer, "buy", "/contracts", body)
        if not bought.ok:
            return
        cid = bought.answer["id"]
        price = int(bought.answer["price_fen"])

        def act(who: world.Org, op: str, body: Any = None, side: str | None = None) -> Command:
            return self.send(http, rng, who, op, f"/contracts/{cid}/{op}", body, cid, side)

        def both(*steps: tuple[world.Org, str, Any]) -> list[Command]:
            return self.race(
                *((rng, who, op, f"/contracts/{cid}/{op}", body, cid) for who, op, body in steps)
            )

        sides = [("buyer", buyer), ("merchant", merchant)]
        rng.shuffle(sides)
        for side, who in sides:
            if self.stop.is_set() or not act(who, "sign", side=side).ok:
                return
        either = rng.choice([buyer, merchant])
        roll = rng.random()
        if roll < 0.07:
            act(either, "cancel", {})
            return
        if roll < 0.15:
            both((buyer, "pay", None), (merchant, "cancel", {"reason": "withdrawn"}))
            return
        if self.stop.is_set():
            return
        paid = act(buyer, "pay")
        if not paid.ok:
            if paid.status is not None:  # refused (not enough money): call it off
                act(buyer, "cancel", {})
            return
        roll = rng.random()
        if self.stop.is_set():
            return
        if roll < 0.55 and rng.random() < 0.8 and not act(merchant, "deliver").ok:
            return
        if roll < 0.35:
            act(buyer, "accept")
        elif roll < 0.45:  # refused once delivered
            act(either, "cancel", {"reason": "changed mind"})
        elif roll < 0.55:
            won = both((buyer, "accept", None), (merchant, "dispute", {"reason": "late"}))
            if any(c.op == "dispute" and c.ok for c in won):
                self.resolve(http, rng, cid, price)
        elif roll < 0.8 and act(either, "dispute", {"reason": "not as described"}).ok:
            self.resolve(http, rng, cid, price)
        # else: left held or delivered, as some trades are

    def resolve(self, http: httpx.Client, rng: random.Random, cid: str, price: int) -> None:
        if self.stop.is_set():
            return
        body = {"to_merchant_fen": rng.randint(0, price), "reason": "split after review"}
        path = f"/contracts/{cid}/resolve"
        self.send(http, rng, self.market.operator, "resolve", path, body, cid)

    # ---------------------------------------------------------------- the killer

    def killer(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(KILLS):
                time.sleep(rng.uniform(*UP_BETWEEN_KILLS))
                self.server.kill()
                time.sleep(rng.uniform(0, 0.5))
                self.server.start()
        except Exception as exc:  # reported by the test
            self.failures.append(f"killer: {exc!r}")


# -------------------------------------------------------------------- the checks


def _journals(s: Session) -> dict[tuple[str, str], int]:
    """(kind, ref) → how many journals."""
    rows = s.execute(
        select(Journal.kind, Journal.ref, func.count()).group_by(Journal.kind, Journal.ref)
    )
    return {(k, r): n for k, r, n in rows}


def conservation(s: Session) -> list[str]:
    """(a) and (b): balances sum to zero, none negative that may not be, money conserved."""
    problems = [f"{what}: {detail}" for what, detail in balance_findings(s)]
    by_owner: Counter[str] = Counter()
    by_kind: Counter[tuple[str, str]] = Counter()
    for acc in s.scalars(select(Account)):
        group = (
            "exchange"
            if acc.owner == EXCHANGE
            else "rail"
            if acc.owner.startswith("rail:")
            else "member"
        )
        by_owner[group] += acc.balance_fen
        by_kind[(acc.owner, acc.kind)] += acc.balance_fen
    confirmed: Counter[str] = Counter()
    pending: Counter[str] = Counter()
    for t in s.scalars(select(Transfer)):
        if t.status == "confirmed":
            confirmed[t.direction] += t.amount_fen
        if t.direction == "withdrawal" and t.status == "requested":
            pending[t.org_id] += t.amount_fen
    net = confirmed["deposit"] - confirmed["withdrawal"]
    if by_owner["member"] + by_owner["exchange"] != net:
        problems.append(
            f"members {by_owner['member']} + exchange {by_owner['exchange']} fen, but confirmed "
            f"deposits - withdrawals = {net}"
        )
    if by_owner["rail"] != -net:
        problems.append(f"the rail's clearing holds {by_owner['rail']}, not {-net}")
    escrow: Counter[str] = Counter()
    for c in s.scalars(select(Contract)):
        escrow[c.buyer_org_id] += c.escrow_fen
        want = c.price_fen if c.payment_status in HELD else 0
        if c.escrow_fen != want:
            problems.append(f"{c.id} is {c.payment_status} with {c.escrow_fen} fen in escrow")
    for (owner, kind), balance in by_kind.items():
        if kind == "escrow" and balance != escrow[owner]:
            problems.append(
                f"{owner}'s escrow account {balance}, its contracts hold {escrow[owner]}"
            )
        if kind == "withdrawing" and balance != pending[owner]:
            problems.append(f"{owner} is withdrawing {balance}, pending requests {pending[owner]}")
    owed = s.scalar(
        select(func.coalesce(func.sum(Commission.amount_fen), 0)).where(
            Commission.payout_journal_id.is_(None)
        )
    )
    payable = by_kind[(EXCHANGE, "commission_payable")]
    if payable != owed:
        problems.append(f"commission payable {payable}, unpaid commissions {owed}")
    return problems


CLOSING = ("escrow.release", "escrow.refund", "escrow.split")


def journals_match_states(s: Session) -> list[str]:
    """(d), globally: one hold per paid contract, at most one settlement, one journal per
    transfer step, each agreeing with the row's state."""
    problems: list[str] = []
    j = _journals(s)
    for c in s.scalars(select(Contract)):
        holds = j.get(("escrow.hold", c.id), 0)
        closes = {k: j.get((k, c.id), 0) for k in CLOSING}
        want_hold = 0 if c.payment_status == PaymentStatus.unpaid else 1
        want = {
            PaymentStatus.released: "escrow.release",
            PaymentStatus.refunded: "escrow.refund",
            PaymentStatus.resolved: "escrow.split",
        }.get(PaymentStatus(c.payment_status))
        if holds != want_hold:
            problems.append(f"{c.id} ({c.payment_status}) has {holds} escrow.hold journals")
        for k, n in closes.items():
            if n != (1 if k == want else 0):
                problems.append(f"{c.id} ({c.payment_status}) has {n} {k} journals")
    for t in s.scalars(select(Transfer)):
        steps = {
            ("deposit", "requested"): {},
            ("deposit", "rejected"): {},
            ("deposit", "confirmed"): {"deposit": 1},
            ("withdrawal", "requested"): {"withdrawal.request": 1},
            ("withdrawal", "confirmed"): {"withdrawal.request": 1, "withdrawal.paid": 1},
            ("withdrawal", "rejected"): {"withdrawal.request": 1, "withdrawal.returned": 1},
        }[(t.direction, t.status)]
        for k in ("deposit", "withdrawal.request", "withdrawal.paid", "withdrawal.returned"):
            if j.get((k, t.id), 0) != steps.get(k, 0):
                problems.append(f"{t.direction} {t.id} ({t.status}) has {j.get((k, t.id), 0)} {k}")
    return problems


def effect(s: Session, cmd: Command, j: dict[tuple[str, str], int]) -> bool:
    """Whether the effect of a command on a contract or a transfer is in the database."""
    t = cmd.target
    assert t is not None, cmd
    if cmd.op == "sign":
        return s.get(Signature, (t, cmd.side)) is not None
    journal = {
        "pay": "escrow.hold",
        "accept": "escrow.release",
        "resolve": "escrow.split",
        "deposit.confirm": "deposit",
        "withdraw.confirm": "withdrawal.paid",
        "withdraw.reject": "withdrawal.returned",
    }.get(cmd.op)
    if journal is not None:
        return j.get((journal, t), 0) > 0
    if cmd.op == "deposit.reject":
        transfer = s.get(Transfer, t)
        assert transfer is not None, cmd
        return transfer.status == "rejected"
    c = s.get(Contract, t)
    assert c is not None, cmd
    return {
        "deliver": c.delivered_at is not None,
        "cancel": c.status == "terminated",
        "dispute": c.payment_status in (PaymentStatus.frozen, PaymentStatus.resolved),
    }[cmd.op]


def outcomes(s: Session, commands: list[Command]) -> list[str]:
    """(c) and (d) command by command, and creations matched one to one with their keys."""
    problems: list[str] = []
    j = _journals(s)
    records = {(r.owner, r.key): r for r in s.scalars(select(IdempotencyRecord))}
    created: dict[str, set[str]] = {"buy": set(), "deposit": set(), "withdraw": set()}
    for cmd in commands:
        rec = records.get((cmd.who.ref, cmd.key))
        if cmd.status is not None and not cmd.ok:
            if rec is not None:
                problems.append(f"refused but recorded: {cmd}")
            continue
        if cmd.ok and rec is None:
            problems.append(f"acknowledged but no idempotency record: {cmd}")
        if rec is None:
            continue
        if not 200 <= rec.status_code < 300:
            problems.append(f"recorded with status {rec.status_code}: {cmd}")
        if cmd.op in created:
            created[cmd.op].add(json.loads(rec.response)["id"])
        elif cmd.op == "payout":
            for jid in json.loads(rec.response)["journal_ids"]:
                if s.get(Journal, jid) is None:
                    problems.append(f"payout journal {jid} missing: {cmd}")
    for cmd in commands:
        if cmd.op in created or cmd.op == "payout" or (cmd.status is not None and not cmd.ok):
            continue
        has_record = (cmd.who.ref, cmd.key) in records
        if effect(s, cmd, j) != has_record:
            state = "acknowledged" if cmd.ok else "unacknowledged"
            problems.append(
                f"{state} {cmd}: idempotency record {'present' if has_record else 'absent'}, "
                f"effect {'absent' if has_record else 'present'}"
            )
    contracts = set(s.scalars(select(Contract.id)))
    if contracts != created["buy"]:
        problems.append(
            f"contracts without a buy command: {sorted(contracts - created['buy'])}; "
            f"recorded buys without a contract: {sorted(created['buy'] - contracts)}"
        )
    for direction, op in (("deposit", "deposit"), ("withdrawal", "withdraw")):
        rows = set(s.scalars(select(Transfer.id).where(Transfer.direction == direction)))
        if rows != created[op]:
            problems.append(
                f"{direction}s without a command: {sorted(rows - created[op])}; "
                f"recorded without a row: {sorted(created[op] - rows)}"
            )
    return problems


def replays(base_url: str, commands: list[Command], rng: random.Random) -> list[str]:
    """(c) again: acknowledged commands sent again with their key answer the same."""
    problems: list[str] = []
    done = [c for c in commands if c.ok]
    with httpx.Client(base_url=base_url + "/api/v1", timeout=30, verify=TLS) as http:
        for cmd in rng.sample(done, min(REPLAY_SAMPLE, len(done))):
            headers = {"Authorization": f"Bearer {cmd.who.token}", "Idempotency-Key": cmd.key}
            r = http.post(cmd.path, json=cmd.body, headers=headers)
            if (r.status_code, r.json()) != (cmd.status, cmd.answer):
                problems.append(f"replay of {cmd} answered {r.status_code} {r.text[:200]}")
            elif r.headers.get("idempotent-replayed") != "true":
                problems.append(f"replay of {cmd} not marked Idempotent-Replayed")
    return problems


def through_the_api(base_url: str, market: world.Market, s: Session) -> list[str]:
    """What the API shows agrees with the rows: accounts of every party, every contract."""
    problems: list[str] = []
    orgs = [market.merchant, *market.buyers, *([market.agent] if market.agent else [])]
    with httpx.Client(base_url=base_url + "/api/v1", timeout=30, verify=TLS) as http:
        for org in orgs:
            r = http.get("/accounts", headers={"Authorization": f"Bearer {org.token}"})
            shown = (
                {a["kind"]: a["balance_fen"] for a in r.json()} if r.status_code == 200 else r.text
            )
            rows = {
                a.kind: a.balance_fen
                for a in s.scalars(select(Account).where(Account.owner == org.id))
            }
            if shown != rows:
                problems.append(f"GET /accounts of {org.id}: {shown} but the rows say {rows}")
        op = {"Authorization": f"Bearer {market.operator.token}"}
        for c in s.scalars(select(Contract)):
            got = http.get(f"/contracts/{c.id}", headers=op).json()
            if (got.get("payment_status"), got.get("escrow_fen"), got.get("status")) != (
                c.payment_status,
                c.escrow_fen,
                c.status,
            ):
                problems.append(
                    f"GET /contracts/{c.id}: {got} but the row is {c.status}/{c.payment_status}"
                )
    return problems


# -------------------------------------------------------------------- the test


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[Bank]:
    """The market seeded through the services and its exchange process; the process and
    the database are removed whatever happens."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(pg_database())
        except PostgresUnavailable as exc:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"PostgreSQL is required under CI=true: {exc}")
            pytest.skip(f"PostgreSQL not available: {exc}")
        ctx = AppContext.build(Settings(data_dir=tmp_path, database_url=url))  # makes the keys
        stack.callback(ctx.db.dispose)
        server = ExchangeProcess(tmp_path, url, checkpoint_interval_seconds=1)
        stack.callback(server.stop)
        starting = threading.Thread(target=server.start)  # it starts while we seed
        starting.start()
        try:
            ex = Exchange(server.base_url, ctx, {}, "postgresql")
            market = world.build(ex, buyers=4, prices=PRICES, commission_bp=500)
        finally:
            starting.join()
        assert server.proc is not None and server.proc.poll() is None, server.tail()
        yield Bank(ctx, market, server)


def test_money_is_conserved_across_crashes(bank: Bank) -> None:
    ctx = bank.ctx
    seed = int(os.environ.get("DATABOURSE_TEST_SEED", secrets.randbelow(2**31)))
    rng = random.Random(seed)
    started = time.monotonic()
    workers = [
        threading.Thread(target=bank.worker, args=(rng.randrange(2**31),), daemon=True)
        for _ in range(WORKERS)
    ]
    killer = threading.Thread(target=bank.killer, args=(rng.randrange(2**31),), daemon=True)
    for t in [*workers, killer]:
        t.start()
    killer.join()
    time.sleep(TAIL_SECONDS)
    bank.give_up_at = time.monotonic() + DRAIN_SECONDS
    bank.stop.set()
    for t in workers:
        t.join(DRAIN_SECONDS + 30)
    run_seconds = time.monotonic() - started
    assert not any(t.is_alive() for t in workers), "a client is stuck"
    assert not bank.failures, bank.failures
    assert bank.server.kills >= KILLS

    cmds = bank.commands
    answered = [c for c in cmds if c.status is not None]
    server_errors = [str(c) for c in answered if (c.status or 0) >= 500]
    unexpected = sorted(
        {f"{c.op}: {c.status} {c.slug}" for c in answered if 400 <= (c.status or 0) < 500}
        - {f"{c.op}: {c.status} {c.slug}" for c in answered if c.slug in EXPECTED_REFUSALS}
    )
    stats = Counter(
        "unacknowledged"
        if c.status is None
        else "replayed"
        if c.replayed
        else "ok"
        if c.ok
        else "refused"
        for c in cmds
    )
    retried = sum(c.attempts > 1 for c in cmds)
    print(
        f"\nseed {seed}: {len(cmds)} commands in {run_seconds:.0f} s, {bank.server.kills} kills; "
        f"starts took {[round(x, 1) for x in bank.server.start_seconds]} s; "
        f"{dict(stats)}; {retried} retried; by op {dict(Counter(c.op for c in cmds))}"
    )
    assert not server_errors, (
        f"server errors (seed {seed}): {server_errors[:20]}\n{bank.server.tail()}"
    )
    assert not unexpected, f"unexpected refusals (seed {seed}): {unexpected}"
    assert retried > 0, "no command was ever cut off: the run tested nothing"
    assert stats["replayed"] > 0, "no retry was ever answered from its idempotency record"
    assert sum(c.ok for c in cmds if c.op == "pay") > 0, "no trade was ever paid"

    problems: list[str] = []
    with ctx.reads() as s:
        problems += conservation(s)
        problems += journals_match_states(s)
        problems += outcomes(s, cmds)
        problems += through_the_api(bank.server.base_url, bank.market, s)
        report = audit.verify(s, ctx.log_key.verifier)
        kept = {
            (o, k) for o, k in s.execute(select(IdempotencyRecord.owner, IdempotencyRecord.key))
        }
    problems += replays(bank.server.base_url, cmds, rng)
    problems += [f"ledger verify: {f}" for f in report.findings]
    lost = [c for c in cmds if c.status is None]
    print(
        f"unacknowledged: {sum((c.who.ref, c.key) in kept for c in lost)} happened, "
        f"{sum((c.who.ref, c.key) not in kept for c in lost)} did not; ledger: "
        f"{report.entries} entries, {report.checkpoints} checkpoints, {report.rows} rows"
    )
    assert not problems, f"seed {seed}: " + "\n".join(problems[:50])
