"""bench_settlement: settled trades and batched postings on PostgreSQL.

Two measurements on a throwaway PostgreSQL database (skipped with a note when the server
is unreachable):

1. **Settled trades per second.** A trade is the whole life of a fixed-price purchase as
   the exchange runs it, five units of work, each its own transaction with its ledger
   entries: the buyer's contract is drafted (``negotiation.buy``: pre-trade checks, fee
   terms, the RFC 8785 document), the buyer and the merchant sign it with their custodial
   Ed25519 keys (``contracts.sign_custodial``; the second signature verifies both and
   files the trade), the buyer pays into escrow (``trades.pay``) and accepts
   (``trades.accept``: the escrow is released to the merchant less the exchange's fee and
   the certified agent's commission, which is accrued). ``THREADS`` threads, each with its
   own funded buyer, trade with one merchant in-process through the services (no HTTP).
   The baseline is pgbench's TPC-B-like transaction (``pgbench -i -s 1``, then
   ``pgbench -c THREADS -j 2 -T 10``) on its own throwaway database of the same server,
   run just before and just after the trades; the ratio is trades/s over the mean of the
   two tps. pgbench is looked for on the PATH and under ``/usr/lib/postgresql/*/bin``;
   when it is missing the row has no baseline and a note says so.
2. **Batched postings per second.** ``settlement.services.move_many`` with batches of
   1,000 movements (half of two legs between members' available accounts, half of three
   legs that also credit the exchange's fee revenue account) across 10,000 accounts, one
   batch per unit of work (so one ledger entry per movement), from ``THREADS`` threads at
   once. The goal is absolute: ≥ 10,000 postings/s, and no deadlock (psycopg's
   ``DeadlockDetected``, counted in both measurements).
"""

from __future__ import annotations

import glob
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from rich.console import Console

from benchmarks import Outcome, Row, register
from benchmarks._stores import PG_ADMIN, StoreUnavailable, store
from benchmarks._world import registered_asset
from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal
from databourse.uow import Actor, UnitOfWork

THREADS = 4
TRADE_GOAL = 0.5  # settled trades/s ≥ 0.5 × pgbench's tps
TRADE_SECONDS = 20.0
PGBENCH_SECONDS = 10
PRICE_FEN = 123_456
COMMISSION_BP = 500
POSTING_GOAL = 10_000.0  # postings/s
BATCH = 1000  # movements per unit of work
ACCOUNTS = 10_000
POSTING_SECONDS = 20.0
SOLO_SECONDS = 8.0  # the same work from one thread, for scale
PLAN = "一口价 fixed"
KYB = {
    "method": "registry_lookup",
    "evidence_ref": "BENCH-1",
    "legal_representative_verified": True,
}


# ---------------------------------------------------------------- set-up


def _uscc(n: int) -> str:
    from databourse.participants.uscc import ALPHABET, check_character

    digits = ""
    for _ in range(9):
        n, d = divmod(n, len(ALPHABET))
        digits = ALPHABET[d] + digits
    body = "91310115" + digits
    return body + check_character(body)


def _admitted(ctx: Any, n: int, roles: list[str]) -> Principal:
    """An organisation admitted through the services, as its administrator's principal."""
    from databourse.participants import schemas
    from databourse.participants import services as participants

    email = f"bench-settlement-{n}@org.example"
    data = schemas.ApplicationIn.model_validate(
        {
            "kind": "domestic",
            "name": f"Settlement Benchmark Co. {n}",
            "uscc": _uscc(10_000 + n),
            "legal_representative": {
                "name": "Li Wei",
                "id_type": "passport",
                "id_number": "E1234567",
            },
            "contacts": [{"name": "Wang Fang", "email": email, "phone": "+86 21 5555 0101"}],
            "requested_roles": roles,
            "data_source_statement": "Self-generated sales records.",
            "compliance_commitment": True,
            "admin": {"email": email, "display_name": "Admin", "password": "bench-password-1"},
        },
        strict=False,
    )
    with UnitOfWork(ctx.writes) as uow:
        org, user = participants.apply(uow, data)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        participants.transition(uow, SYSTEM_PRINCIPAL, org.id, "start_review", "benchmark")
        kyb = schemas.KybIn.model_validate(KYB)
        participants.transition(uow, SYSTEM_PRINCIPAL, org.id, "admit", "benchmark", kyb)
        uow.commit()
    return Principal("user", user.id, org.id, "admitted", frozenset(roles), True)


def _as(p: Principal) -> Actor:
    return Actor(p.kind, p.id, p.org_id)


def _product(ctx: Any, merchant: Principal) -> str:
    """A listed API product of the merchant with one fixed-price plan."""
    from databourse.catalog import schemas as catalog_schemas
    from databourse.catalog import services as catalog

    asset_id = registered_asset(ctx, merchant, "Benchmark ridership", "transport")
    columns = ["line", "hour", "boardings"]
    product_in = {
        "kind": "api",
        "title": "Benchmark ridership API",
        "asset_ids": [asset_id],
        "description": {
            "content": "Hourly boardings per bus line.",
            "fields": [{"name": f, "type": "string", "meaning": f} for f in columns],
            "coverage": "Shanghai",
            "update_frequency": "daily",
            "scenarios": ["transport planning"],
            "restrictions": "",
        },
        "industry": "transport",
        "category": "public transport",
        "tags": ["bus"],
        "plans": [{"name": PLAN, "model": "fixed", "price_fen": PRICE_FEN}],
        "policy": {
            "purposes": ["research"],
            "term_days": 365,
            "territories": ["CN"],
            "onward": {"mode": "prohibited"},
            "duties": [],
        },
        "sample": {"columns": columns, "rows": [["71", "08:00", "1200"]]},
    }
    with UnitOfWork(ctx.writes, _as(merchant)) as uow:
        p = catalog.create(
            uow, merchant, catalog_schemas.ProductIn.model_validate(product_in, strict=False)
        )
        catalog.transition(uow, merchant, p.id, "submit", None)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        catalog.transition(uow, SYSTEM_PRINCIPAL, p.id, "approve", "benchmark")
        uow.commit()
    return str(p.id)


def _agency(ctx: Any, agent: Principal, merchant: Principal) -> None:
    from databourse.settlement import fees

    with UnitOfWork(ctx.writes, _as(agent)) as uow:
        a = fees.submit_agency(
            uow,
            agent,
            merchant.org_id,
            None,
            COMMISSION_BP,
            datetime.now(UTC) + timedelta(days=365),
            secrets.token_hex(32),
        )
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        fees.decide_agency(uow, SYSTEM_PRINCIPAL, a.id, "certify")
        uow.commit()


def _fund(ctx: Any, member: Principal, fen: int) -> None:
    """A bank-transfer deposit, requested and confirmed through the rails."""
    from databourse.settlement import rails

    registry = rails.rails(ctx.settings)
    with UnitOfWork(ctx.writes, _as(member)) as uow:
        t, _ = rails.request(
            uow, member, registry, rails.DEPOSIT, fen, "CNY", "bank_transfer", "bench"
        )
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        rails.decide(
            uow, SYSTEM_PRINCIPAL, registry, t.id, "confirm", rail_ref=f"BENCH-{t.id[-12:]}"
        )
        uow.commit()


# ---------------------------------------------------------------- errors


def _deadlock(exc: BaseException) -> bool:
    import psycopg.errors

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, psycopg.errors.DeadlockDetected) or isinstance(
            getattr(seen, "orig", None), psycopg.errors.DeadlockDetected
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class Tally:
    done: int = 0
    deadlocks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            if _deadlock(exc):
                self.deadlocks += 1
            else:
                self.errors[type(exc).__name__ + ": " + str(exc).splitlines()[0][:120]] += 1


def _threads(n: int, work: Callable[[int], None]) -> float:
    """Run ``work(i)`` in ``n`` threads started together; the wall time."""
    gate = threading.Barrier(n + 1)

    def run(i: int) -> None:
        gate.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- 1. trades


def _trade(ctx: Any, buyer: Principal, merchant: Principal, product_id: str) -> None:
    """One trade, five units of work, as the exchange runs them."""
    from databourse.market import contracts, negotiation, schemas, trades

    body = schemas.ContractIn.model_validate(
        {"product_id": product_id, "purpose": "research", "plan": PLAN}, strict=False
    )
    with UnitOfWork(ctx.writes, _as(buyer)) as uow:
        cid = negotiation.buy(uow, buyer, ctx.settings, body).id
        uow.commit()
    for signer in (buyer, merchant):
        with UnitOfWork(ctx.writes, _as(signer)) as uow:
            contracts.sign_custodial(uow, signer, ctx.custody_secret, cid)
            uow.commit()
    for step in (trades.pay, trades.accept):
        with UnitOfWork(ctx.writes, _as(buyer)) as uow:
            step(uow, buyer, cid)
            uow.commit()


@dataclass
class Market:
    merchant: Principal
    buyers: list[Principal]
    product: str


def _market(ctx: Any) -> Market:
    """A merchant with a listed product and a certified agent; one funded buyer per thread,
    each with one trade done (which also creates the custodial keys one at a time)."""
    from databourse.auth.secrets import hash_password
    from databourse.participants import services as participants

    pw_hash = hash_password("bench-password-1")
    with mock.patch.object(participants, "hash_password", lambda _pw: pw_hash):
        merchant = _admitted(ctx, 0, ["merchant"])
        agent = _admitted(ctx, 1, ["agent"])
        buyers = [_admitted(ctx, 2 + i, ["buyer"]) for i in range(THREADS)]
    product = _product(ctx, merchant)
    _agency(ctx, agent, merchant)
    for b in buyers:
        _fund(ctx, b, PRICE_FEN * 100_000)
        _trade(ctx, b, merchant, product)
    return Market(merchant, buyers, product)


def _releases(ctx: Any) -> int:
    from sqlalchemy import func, select

    from databourse.settlement.models import Journal

    with ctx.reads() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(Journal).where(Journal.kind == "escrow.release")
            )
            or 0
        )


def _trades(
    ctx: Any, m: Market, console: Console, threads: int, seconds: float
) -> tuple[float, int, dict[str, str], list[str]]:
    """Settled trades/s of ``threads`` threads over ``seconds``; deadlocks; extra; notes."""
    from databourse.settlement.services import balance_findings

    tally = Tally()
    times: list[float] = []
    released = _releases(ctx)
    deadline = time.monotonic() + seconds

    def work(i: int) -> None:
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                _trade(ctx, m.buyers[i], m.merchant, m.product)
            except Exception as exc:
                tally.failed(exc)
                continue
            with tally.lock:
                tally.done += 1
                times.append(time.perf_counter() - t)

    wall = _threads(threads, work)
    rate = tally.done / wall
    released = _releases(ctx) - released
    with ctx.reads() as s:
        findings = balance_findings(s)
    console.print(
        f"  [dim]trades, {threads} thread(s): {tally.done} in {wall:.1f} s ({rate:.1f}/s), "
        f"{tally.deadlocks} deadlocks, {sum(tally.errors.values())} errors[/dim]"
    )
    notes = []
    if findings:
        notes.append(f"trades: balance findings after the run: {findings[:5]}")
    if released != tally.done:
        notes.append(f"trades: {released} releases for {tally.done} settled trades")
    notes += [f"trades: {n} × {e}" for e, n in tally.errors.most_common(5)]
    extra = {
        "detail": f"{5 * rate:,.0f} commands/s; p50 {statistics.median(times) * 1000:.0f} ms"
        " per trade"
        if times
        else "no trade completed",
    }
    return rate, tally.deadlocks, extra, notes


# ---------------------------------------------------------------- pgbench


def _pgbench_binary() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
    )
    return candidates[-1] if candidates else None


class PgBench:
    """pgbench on its own throwaway database of the benchmark's server."""

    def __init__(self, binary: str) -> None:
        import psycopg

        self.binary = binary
        self.name = f"databourse_bench_pgbench_{secrets.token_hex(4)}"
        url = urlsplit(PG_ADMIN)
        self.args = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432)]
        self.args += ["-U", url.username or "postgres"]
        self.env = {**os.environ}
        if url.password:
            self.env["PGPASSWORD"] = url.password
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def _run(self, *args: str) -> str:
        out = subprocess.run(
            [self.binary, *self.args, *args, self.name],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return out.stdout + out.stderr

    def init(self) -> None:
        self._run("-i", "-s", "1", "-q")

    def tps(self, clients: int, seconds: int) -> float:
        out = self._run("-c", str(clients), "-j", "2", "-T", str(seconds), "-n")
        m = re.search(r"tps = ([\d.]+) \((?:without|excluding)", out) or re.search(
            r"tps = ([\d.]+)", out
        )
        if m is None:
            raise RuntimeError(f"no tps in pgbench's output: {out[-500:]}")
        return float(m.group(1))

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# ---------------------------------------------------------------- 2. postings


def _movements(rng: random.Random, owners: list[str]) -> list[Any]:
    from databourse.settlement.models import EXCHANGE, AccountKind
    from databourse.settlement.services import Leg, Movement

    out = []
    for _ in range(BATCH):
        a, b = rng.sample(owners, 2)
        amount = rng.randint(1, 10_000)
        legs = [Leg(a, AccountKind.available, -amount), Leg(b, AccountKind.available, amount)]
        if rng.random() < 0.5:
            fee = rng.randint(1, 100)
            legs[0] = Leg(a, AccountKind.available, -amount - fee)
            legs.append(Leg(EXCHANGE, AccountKind.fee_revenue, fee))
        out.append(Movement("bench.transfer", None, "CNY", tuple(legs)))
    return out


def _accounts(ctx: Any) -> list[str]:
    """``ACCOUNTS`` members' available accounts, each funded with 10^12 fen."""
    from databourse.settlement.models import AccountKind
    from databourse.settlement.services import Leg, Movement, move_many

    owners = [f"org_bench_{i:05d}" for i in range(ACCOUNTS)]
    for start in range(0, ACCOUNTS, BATCH):  # every account funded first (not timed)
        funding = [
            Movement(
                "bench.funding",
                None,
                "CNY",
                (Leg("rail:bench", AccountKind.clearing, -(10**12)), Leg(o, "available", 10**12)),
            )
            for o in owners[start : start + BATCH]
        ]
        with UnitOfWork(ctx.writes) as uow:
            move_many(uow, funding)
            uow.commit()
    return owners


def _postings(
    ctx: Any, owners: list[str], console: Console, threads: int, seconds: float
) -> tuple[float, int, dict[str, str], list[str]]:
    """Postings/s through ``move_many`` from ``threads`` threads over ``seconds``;
    deadlocks; extra columns; notes."""
    from databourse.settlement.services import move_many

    tally = Tally()
    postings = Counter[int]()
    batch_times: list[float] = []
    deadline = time.monotonic() + seconds

    def work(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < deadline:
            batch = _movements(rng, owners)
            legs = sum(len(m.legs) for m in batch)
            t = time.perf_counter()
            try:
                with UnitOfWork(ctx.writes) as uow:
                    move_many(uow, batch)
                    uow.commit()
            except Exception as exc:
                tally.failed(exc)
                continue
            with tally.lock:
                postings[i] += legs
                tally.done += 1
                batch_times.append(time.perf_counter() - t)

    wall = _threads(threads, work)
    total = sum(postings.values())
    rate = total / wall
    console.print(
        f"  [dim]postings, {threads} thread(s): {total:,} in {tally.done} batches, "
        f"{wall:.1f} s ({rate:,.0f}/s), {tally.deadlocks} deadlocks[/dim]"
    )
    extra = {
        "detail": f"{tally.done} batches of {BATCH:,} movements; p50 "
        f"{statistics.median(batch_times) * 1000:,.0f} ms per batch; "
        f"{tally.done * BATCH / wall:,.0f} ledger entries/s"
        if batch_times
        else "no batch completed",
    }
    notes = [f"postings: {n} × {e}" for e, n in tally.errors.most_common(5)]
    return rate, tally.deadlocks, extra, notes


def _measure(ctx: Any, console: Console, notes: list[str]) -> list[Row]:
    console.print("[bold]bench_settlement[/bold]: trades …")
    market = _market(ctx)
    binary = _pgbench_binary()
    bench = PgBench(binary) if binary else None
    tps: list[float] = []
    try:
        if bench is not None:
            bench.init()
            tps.append(bench.tps(THREADS, PGBENCH_SECONDS))
            console.print(f"  [dim]pgbench: {tps[-1]:,.0f} tps[/dim]")
        trades, trade_deadlocks, extra, more = _trades(ctx, market, console, THREADS, TRADE_SECONDS)
        notes += more
        if bench is not None:
            tps.append(bench.tps(THREADS, PGBENCH_SECONDS))
            console.print(f"  [dim]pgbench: {tps[-1]:,.0f} tps[/dim]")
    finally:
        if bench is not None:
            bench.drop()
    if bench is None:
        notes.append(
            "pgbench was not found (PATH, /usr/lib/postgresql/*/bin): the trades row has no "
            "baseline and no verdict"
        )
    else:
        extra["pgbench tps"] = " / ".join(f"{x:,.0f}" for x in tps)
    solo, solo_deadlocks, _, more = _trades(ctx, market, console, 1, SOLO_SECONDS)
    notes += more
    trade_deadlocks += solo_deadlocks
    extra["1 thread"] = f"{solo:.1f} trades/s"
    notes.append(
        f"trades: {THREADS} threads settle {trades / solo:.2f}× what one thread does: every "
        "release locks the merchant's, the exchange's fee and commission accounts, and every "
        "unit of work takes the ledger head at commit, so trades mostly wait on each other"
        if solo
        else "trades: none settled from one thread"
    )
    rows = [
        Row(
            f"settled trades/s, {THREADS} threads",
            trades,
            "trades/s",
            statistics.mean(tps) if tps else None,
            goal=TRADE_GOAL,
            extra=extra,
        )
    ]
    console.print("[bold]bench_settlement[/bold]: postings …")
    owners = _accounts(ctx)
    solo, posting_deadlocks, _, more = _postings(ctx, owners, console, 1, SOLO_SECONDS)
    notes += more
    postings, deadlocks, extra, more = _postings(ctx, owners, console, THREADS, POSTING_SECONDS)
    notes += more
    posting_deadlocks += deadlocks
    extra["1 thread"] = f"{solo:,.0f} postings/s"
    notes.append(
        f"postings: {THREADS} threads post {postings / solo:.2f}× what one thread does: each "
        "batch holds the exchange's fee revenue account (locked with the others up front) "
        "and the ledger head until it commits, so batches run one at a time"
        if solo
        else "postings: no batch committed from one thread"
    )
    rows.append(
        Row(
            f"move_many postings/s, {THREADS} threads",
            postings,
            "postings/s",
            POSTING_GOAL,
            goal=1.0,
            extra=extra,
        )
    )
    deadlocks = trade_deadlocks + posting_deadlocks
    rows.append(
        Row(
            "deadlocks (trades and postings)",
            deadlocks,
            "deadlocks",
            None,
            goal=0.0,
            lower_is_better=True,
            ratio_override=float(deadlocks),
            extra={"detail": f"{trade_deadlocks} in trades, {posting_deadlocks} in postings"},
        )
    )
    return rows


# ---------------------------------------------------------------- the benchmark


@register(
    title="Settlement: trades and postings per second",
    goal=f"settled trades/s ≥ {TRADE_GOAL:g} × pgbench's TPC-B tps with the same clients; "
    f"≥ {POSTING_GOAL:,.0f} postings/s through move_many and no deadlock",
)
def bench_settlement(console: Console) -> Outcome:
    from databourse.api.context import AppContext
    from databourse.settings import Settings

    rows: list[Row] = []
    notes: list[str] = []
    method = [
        f"PostgreSQL at {urlsplit(PG_ADMIN).hostname}:{urlsplit(PG_ADMIN).port or 5432}, "
        "throwaway databases, the exchange's default pool (10 + 20 overflow connections)",
        f"trades: {THREADS} threads, each its own buyer (funded through the bank-transfer "
        f"rail), one merchant, a fixed price of {PRICE_FEN:,} fen, the default fee schedule "
        f"(standard tier, 3%, minimum 1 yuan) and a certified agency of {COMMISSION_BP} bp; "
        f"one warm-up trade per buyer, then trades for {TRADE_SECONDS:.0f} s; a trade is "
        "five units of work (draft, two custodial signatures, pay, accept); *1 thread*: the "
        f"same trades from one thread for {SOLO_SECONDS:.0f} s after the second pgbench run",
        f"pgbench: `pgbench -i -s 1`, then `pgbench -c {THREADS} -j 2 -T {PGBENCH_SECONDS} -n` "
        "just before and just after the trades; the baseline is the mean of the two tps",
        f"postings: {ACCOUNTS:,} members' available accounts funded first (not timed), then "
        f"{THREADS} threads each committing batches of {BATCH:,} movements (half 2-leg, half "
        "3-leg with the exchange's fee revenue) for "
        f"{POSTING_SECONDS:.0f} s; postings/s is legs committed over wall time; the goal "
        "column is the goal itself (ratio = postings/s ÷ 10,000); *1 thread*: the same "
        f"batches from one thread for {SOLO_SECONDS:.0f} s before the threaded run",
        "deadlocks: psycopg `DeadlockDetected` raised anywhere in a trade or a batch",
    ]
    with tempfile.TemporaryDirectory(prefix="databourse-bench-") as tmp:
        try:
            with store("postgresql", Path(tmp)) as url:
                ctx = AppContext.build(Settings(data_dir=Path(tmp) / "data", database_url=url))
                try:
                    rows = _measure(ctx, console, notes)
                finally:
                    ctx.db.dispose()
        except StoreUnavailable as exc:
            notes.append(f"postgresql skipped: not reachable ({exc})")
    return Outcome(
        rows=rows,
        baseline="trades: pgbench's TPC-B-like tps on the same server with the same number "
        "of clients, measured just before and just after; postings: the goal itself "
        f"({POSTING_GOAL:,.0f} postings/s)",
        method=method,
        notes=notes,
    )
