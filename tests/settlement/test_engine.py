"""The posting engine on both stores: balanced journals under row locks, nothing half done.

Each test moves money in a currency of its own (``Z``-codes no one else uses) between
owners of its own, so the shared database's other contents never disturb its sums.
"""

from __future__ import annotations

import random
import secrets
import string
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from databourse.ledger.models import LedgerEntry, LedgerEntryParty
from databourse.settlement import money, services
from databourse.settlement.errors import InsufficientFunds
from databourse.settlement.models import Account, AccountKind, Journal, Posting
from databourse.settlement.services import Leg, Movement
from databourse.uow import UnitOfWork

AVAILABLE, CLEARING = AccountKind.available, AccountKind.clearing
RAIL = "rail:test"
_used: set[str] = set()


def currency() -> str:
    """A currency code of this test alone."""
    while True:
        code = "Z" + "".join(random.choices(string.ascii_uppercase, k=2))
        if code not in _used:
            _used.add(code)
            return code


def owner() -> str:
    return f"org_{secrets.token_hex(10)}"


def apply(writes: sessionmaker[Session], *movements: Movement) -> list[str]:
    with UnitOfWork(writes) as uow:
        ids = services.move_many(uow, movements)
        uow.commit()
    return ids


def fund(writes: sessionmaker[Session], who: str, cur: str, amount: int) -> str:
    legs = (Leg(RAIL, CLEARING, -amount), Leg(who, AVAILABLE, amount))
    return apply(writes, Movement("deposit", None, cur, legs))[0]


def pay(who: str, to: str, cur: str, amount: int, ref: str | None = None) -> Movement:
    return Movement(
        "transfer", ref, cur, (Leg(who, AVAILABLE, -amount), Leg(to, AVAILABLE, amount))
    )


def currency_total(session: Session, cur: str) -> int:
    total = session.scalar(select(func.sum(Account.balance_fen)).where(Account.currency == cur))
    return int(total or 0)


def test_a_balanced_movement_is_applied_and_filed(writes: sessionmaker[Session]) -> None:
    cur, a, b = currency(), owner(), owner()
    fund(writes, a, cur, 1000)
    [jid] = apply(writes, pay(a, b, cur, 400, ref="ctr_test"))
    with writes() as s:
        assert services.balance_of(s, a, AVAILABLE, cur) == 600
        assert services.balance_of(s, b, AVAILABLE, cur) == 400
        assert services.balance_of(s, RAIL, CLEARING, cur) < 0  # clearing may go negative
        journal = s.get(Journal, jid)
        assert journal is not None and (journal.kind, journal.ref) == ("transfer", "ctr_test")
        postings = s.scalars(select(Posting).where(Posting.journal_id == jid)).all()
        assert sorted(
            (p.account_id, p.amount_fen, p.balance_after_fen) for p in postings
        ) == sorted(
            [
                (services.account_id(a, AVAILABLE, cur), -400, 600),
                (services.account_id(b, AVAILABLE, cur), 400, 400),
            ]
        )
        entry = s.scalar(select(LedgerEntry).where(LedgerEntry.subject == jid))
        assert entry is not None and entry.kind == "settlement.transfer"
        parties = s.scalars(
            select(LedgerEntryParty.org_id).where(LedgerEntryParty.seq == entry.seq)
        )
        assert sorted(parties) == sorted([a, b])
        assert entry.state_hash is not None
        assert services.journal_states(s, [jid])[jid]["legs"] == sorted(
            [
                [services.account_id(a, AVAILABLE, cur), -400],
                [services.account_id(b, AVAILABLE, cur), 400],
            ]
        )
        assert currency_total(s, cur) == 0


def _nothing_written(writes: sessionmaker[Session], who: str, ref: str) -> None:
    with writes() as s:
        assert s.scalar(select(func.count()).select_from(Journal).where(Journal.ref == ref)) == 0
        assert s.scalar(select(func.count()).select_from(Account).where(Account.owner == who)) == 0


def test_an_unbalanced_movement_is_refused_with_nothing_written(
    writes: sessionmaker[Session],
) -> None:
    cur, a, ref = currency(), owner(), f"ref_{secrets.token_hex(6)}"
    legs = (Leg(RAIL, CLEARING, -100), Leg(a, AVAILABLE, 99))
    with pytest.raises(money.Unbalanced):
        apply(writes, Movement("deposit", ref, cur, legs))
    _nothing_written(writes, a, ref)


def test_insufficient_funds_leave_nothing_written(writes: sessionmaker[Session]) -> None:
    cur, a, b, ref = currency(), owner(), owner(), f"ref_{secrets.token_hex(6)}"
    with pytest.raises(InsufficientFunds) as caught:
        # the first movement alone would succeed: the unit of work is all or nothing
        apply(
            writes,
            Movement("deposit", ref, cur, (Leg(RAIL, CLEARING, -50), Leg(b, AVAILABLE, 50))),
            pay(a, b, cur, 1, ref=ref),
        )
    assert caught.value.extra["needed_fen"] == 1
    _nothing_written(writes, a, ref)
    _nothing_written(writes, b, ref)


def test_balances_sum_to_zero_and_match_their_postings(writes: sessionmaker[Session]) -> None:
    cur, people = currency(), [owner() for _ in range(4)]
    for who in people:
        fund(writes, who, cur, 10_000)
    rng = random.Random(7)
    for _ in range(20):
        a, b = rng.sample(people, 2)
        apply(writes, pay(a, b, cur, rng.randint(1, 500)))
    with writes() as s:
        assert currency_total(s, cur) == 0
        assert sum(services.balance_of(s, w, AVAILABLE, cur) for w in people) == 40_000
        mine = {services.account_id(w, AVAILABLE, cur) for w in people}
        assert not [f for f in services.balance_findings(s) if f[0] in mine | {cur}]


def test_balance_findings_catch_a_balance_edited_by_sql(writes: sessionmaker[Session]) -> None:
    cur, a = currency(), owner()
    fund(writes, a, cur, 500)
    acc = services.account_id(a, AVAILABLE, cur)
    edit = text("UPDATE accounts SET balance_fen = balance_fen + :d WHERE id = :id")
    with writes.begin() as s:
        s.execute(edit, {"d": 1, "id": acc})
    try:
        with writes() as s:
            found = dict(services.balance_findings(s))
        assert found[acc] == "balance 501 but postings sum to 500"
        assert found[cur] == f"{cur} balances sum to 1, not 0"
    finally:
        with writes.begin() as s:
            s.execute(edit, {"d": -1, "id": acc})
    with writes() as s:
        assert not [f for f in services.balance_findings(s) if f[0] in (acc, cur)]


def test_concurrent_movements_conserve_money_without_deadlocks(
    writes: sessionmaker[Session], store_url: str
) -> None:
    """16 threads × 15 movements between 5 accounts in random directions, at once."""
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: no two movements ever overlap")
    cur, people = currency(), [owner() for _ in range(5)]
    for who in people:
        fund(writes, who, cur, 1000)

    def worker(seed: int) -> tuple[int, int]:
        rng = random.Random(seed)
        done = refused = 0
        for _ in range(15):
            a, b = rng.sample(people, 2)
            # several legs in both directions: each movement locks accounts in id order
            c = rng.choice([w for w in people if w not in (a, b)])
            legs: tuple[Leg, ...] = (
                Leg(a, AVAILABLE, -rng.randint(1, 150)),
                Leg(c, AVAILABLE, -rng.randint(1, 150)),
            )
            legs += (Leg(b, AVAILABLE, -sum(leg.amount for leg in legs)),)
            try:
                apply(writes, Movement("transfer", None, cur, legs))
                done += 1
            except InsufficientFunds:
                refused += 1
        return done, refused

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(worker, range(16)))  # any other error fails the test
    assert sum(d for d, _ in results) + sum(r for _, r in results) == 16 * 15
    assert sum(d for d, _ in results) > 0
    with writes() as s:
        balances = [services.balance_of(s, w, AVAILABLE, cur) for w in people]
        assert sum(balances) == 5000 and min(balances) >= 0
        assert currency_total(s, cur) == 0
        mine = {services.account_id(w, AVAILABLE, cur) for w in people}
        assert not [f for f in services.balance_findings(s) if f[0] in mine | {cur}]
        journals = s.scalar(
            select(func.count(func.distinct(Posting.journal_id))).where(
                Posting.account_id.in_(mine)
            )
        )
        assert journals == 5 + sum(d for d, _ in results)
