"""The posting engine: every movement of money is a balanced journal, applied to the
accounts under row locks and filed on the ledger in the same transaction.

Lock order (the whole exchange keeps it, so concurrent commands never deadlock):
1. the one business object the command acts on (a contract, a transfer, a bill),
2. the accounts it moves, in account-id order (``money.merge`` sorts the legs),
3. the ledger head, taken last by the unit of work's commit.
Account ids are derived from (owner, kind, currency), so the order is known before any
account row is read, and a missing account is created without a race.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from databourse.db import new_id, utcnow
from databourse.settlement import money
from databourse.settlement.errors import InsufficientFunds, InvalidAmount
from databourse.settlement.models import (
    EXCHANGE,
    MAY_BE_NEGATIVE,
    Account,
    Journal,
    Posting,
)
from databourse.uow import UnitOfWork


def account_id(owner: str, kind: str, currency: str) -> str:
    """Stable ids: the lock order of accounts is known without reading them."""
    digest = hashlib.sha256(f"{owner}\x00{kind}\x00{currency}".encode()).hexdigest()
    return f"acc_{digest[:20]}"


@dataclass(frozen=True)
class Leg:
    """``amount`` fen added to ``owner``'s account of ``kind`` (negative: taken from it)."""

    owner: str
    kind: str
    amount: int

    def account(self, currency: str) -> str:
        return account_id(self.owner, self.kind, currency)


@dataclass(frozen=True)
class Movement:
    kind: str  # escrow.hold, escrow.release, deposit, … (the entry kind is settlement.<kind>)
    ref: str | None
    currency: str
    legs: tuple[Leg, ...]
    memo: str = ""


def journal_state(
    journal_id: str, kind: str, ref: str | None, currency: str, legs: Iterable[tuple[str, int]]
) -> dict[str, Any]:
    """What a journal's ledger entry commits to: its postings, by account id."""
    return {
        "id": journal_id,
        "kind": kind,
        "ref": ref,
        "currency": currency,
        "legs": [[a, n] for a, n in sorted(legs)],
    }


def _ensure(session: Session, rows: list[dict[str, Any]]) -> None:
    """Create missing accounts; a concurrent creator's row wins, ours is skipped."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert(Account) if dialect == "postgresql" else sqlite.insert(Account)
    session.execute(ins.values(rows).on_conflict_do_nothing())


def lock_accounts(session: Session, specs: dict[str, tuple[str, str, str]]) -> dict[str, Account]:
    """The accounts (id → (owner, kind, currency)), created if missing, locked in id order."""
    ids = sorted(specs)
    have = set(session.scalars(select(Account.id).where(Account.id.in_(ids))))
    now = utcnow()
    _ensure(
        session,
        [
            {
                "id": i,
                "owner": specs[i][0],
                "kind": specs[i][1],
                "currency": specs[i][2],
                "balance_fen": 0,
                "allow_negative": specs[i][1] in MAY_BE_NEGATIVE,
                "created_at": now,
            }
            for i in ids
            if i not in have
        ],
    )
    rows = session.scalars(
        select(Account)
        .where(Account.id.in_(ids))
        .order_by(Account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {a.id: a for a in rows}


def move_many(uow: UnitOfWork, movements: Sequence[Movement]) -> list[str]:
    """Apply movements in order, all or nothing; returns their journal ids.

    Every account any movement touches is locked once, up front, in id order. A movement
    that would take an account below zero (unless its kind allows it) raises
    ``InsufficientFunds`` and the whole unit of work rolls back.
    """
    specs: dict[str, tuple[str, str, str]] = {}
    for mv in movements:
        for leg in mv.legs:
            if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
                raise InvalidAmount("amounts are integers of minor units")
            specs[leg.account(mv.currency)] = (leg.owner, leg.kind, mv.currency)
    accounts = lock_accounts(uow.session, specs)
    now = utcnow()
    journals: list[dict[str, Any]] = []
    postings: list[dict[str, Any]] = []
    ids: list[str] = []
    for mv in movements:
        merged = money.merge([money.Leg(x.account(mv.currency), x.amount) for x in mv.legs])
        money.check_balanced(merged)
        jid = new_id("jnl")
        for m in merged:
            acc = accounts[m.account_id]
            after = acc.balance_fen + m.amount
            if after < 0 and not acc.allow_negative:
                raise InsufficientFunds(
                    f"the {acc.kind} account of {acc.owner} holds {acc.balance_fen} fen; "
                    f"{-m.amount} fen are needed",
                    account=acc.id,
                    kind=acc.kind,
                    balance_fen=acc.balance_fen,
                    needed_fen=-m.amount,
                )
            acc.balance_fen = after
            postings.append(
                {
                    "journal_id": jid,
                    "account_id": acc.id,
                    "amount_fen": m.amount,
                    "balance_after_fen": after,
                }
            )
        journals.append(
            {
                "id": jid,
                "kind": mv.kind,
                "ref": mv.ref,
                "currency": mv.currency,
                "memo": mv.memo[:300],
                "created_at": now,
            }
        )
        owners = {accounts[m.account_id].owner for m in merged}
        parties = tuple(sorted(o for o in owners if o != EXCHANGE and not o.startswith("rail:")))
        state = journal_state(
            jid, mv.kind, mv.ref, mv.currency, [(m.account_id, m.amount) for m in merged]
        )
        uow.record(
            f"settlement.{mv.kind}",
            jid,
            {"ref": mv.ref, "currency": mv.currency, "legs": state["legs"]},
            state,
            parties,
        )
        ids.append(jid)
    if journals:
        uow.session.execute(insert(Journal), journals)
        uow.session.execute(insert(Posting), postings)
    return ids


def move(uow: UnitOfWork, movement: Movement) -> str:
    return move_many(uow, [movement])[0]


def balances(session: Session, owner: str) -> list[Account]:
    return list(
        session.scalars(
            select(Account).where(Account.owner == owner).order_by(Account.currency, Account.kind)
        )
    )


def balance_of(session: Session, owner: str, kind: str, currency: str) -> int:
    acc = session.get(Account, account_id(owner, kind, currency))
    return acc.balance_fen if acc else 0


def journal_states(session: Session, journal_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Journals' ledger states rebuilt from their rows (for the ledger's audit)."""
    out: dict[str, dict[str, Any]] = {}
    if not journal_ids:
        return out
    legs: dict[str, list[tuple[str, int]]] = {j: [] for j in journal_ids}
    for jid, acc, amount in session.execute(
        select(Posting.journal_id, Posting.account_id, Posting.amount_fen).where(
            Posting.journal_id.in_(list(journal_ids))
        )
    ):
        legs[jid].append((acc, amount))
    for j in session.scalars(select(Journal).where(Journal.id.in_(list(journal_ids)))):
        out[j.id] = journal_state(j.id, j.kind, j.ref, j.currency, legs[j.id])
    return out


def balance_findings(session: Session) -> list[tuple[str, str]]:
    """(account id, problem) where a balance is not the sum of its postings, and
    (currency, problem) where a currency's balances do not sum to zero."""
    found: list[tuple[str, str]] = []
    sums = dict(
        session.execute(
            select(Posting.account_id, func.sum(Posting.amount_fen)).group_by(Posting.account_id)
        ).all()
    )
    totals: dict[str, int] = {}
    for acc in session.scalars(select(Account)):
        posted = int(sums.get(acc.id) or 0)
        if acc.balance_fen != posted:
            found.append((acc.id, f"balance {acc.balance_fen} but postings sum to {posted}"))
        if acc.balance_fen < 0 and not acc.allow_negative:
            found.append((acc.id, f"balance {acc.balance_fen} is negative"))
        totals[acc.currency] = totals.get(acc.currency, 0) + acc.balance_fen
    found += [(c, f"{c} balances sum to {t}, not 0") for c, t in totals.items() if t != 0]
    return found
