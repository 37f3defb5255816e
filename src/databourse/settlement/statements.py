"""Accounts and statements: what an organisation (or the exchange) holds and every posting
that changed it.

Each line of a statement names the ledger entry of its journal, so the party can fetch
``/api/v1/ledger/entries/{seq}/receipt`` and check offline that the movement is in the
exchange's log as shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.errors import NotFound
from databourse.ledger.models import LedgerEntry
from databourse.settlement import services
from databourse.settlement.models import EXCHANGE, Account, Journal, Posting


def owner_for(principal: Principal, org_id: str | None) -> str:
    """Whose accounts a request means: the caller's organisation unless it names one."""
    return org_id or principal.org_id


def accounts(session: Session, principal: Principal, org_id: str | None = None) -> list[Account]:
    """An organisation's accounts (its own; any, and the exchange's, for staff)."""
    owner = owner_for(principal, org_id)
    _authorize(principal, "account.list", owner)
    return services.balances(session, owner)


def _authorize(principal: Principal, action: str, owner: str) -> None:
    """Members reach their own organisation; the exchange's and the rails' accounts are
    for its staff only."""
    reach = authorize(principal, action, owner)
    if (owner == EXCHANGE or owner.startswith("rail:")) and reach is not Reach.ANY:
        raise NotFound(f"no accounts of {owner}")


@dataclass(frozen=True)
class Line:
    posting_id: int
    at: datetime
    journal_id: str
    journal_kind: str
    ref: str | None
    account_kind: str
    amount_fen: int
    balance_after_fen: int
    ledger_seq: int | None  # the journal's ledger entry: its receipt proves the movement


@dataclass(frozen=True)
class Balance:
    account_kind: str
    opening_fen: int
    closing_fen: int


@dataclass
class Statement:
    owner: str
    currency: str
    start: datetime | None
    end: datetime | None
    balances: list[Balance]
    lines: list[Line] = field(default_factory=list)
    total: int = 0  # lines in the window (the page holds ``lines``)


def _sums(session: Session, ids: list[str], before: datetime | None) -> dict[str, int]:
    """Each account's postings summed over journals before ``before`` (None: all)."""
    q = (
        select(Posting.account_id, func.sum(Posting.amount_fen))
        .join(Journal, Journal.id == Posting.journal_id)
        .where(Posting.account_id.in_(ids))
        .group_by(Posting.account_id)
    )
    if before is not None:
        q = q.where(Journal.created_at < before)
    return {a: int(n or 0) for a, n in session.execute(q).all()}


def statement(
    session: Session,
    principal: Principal,
    org_id: str | None,
    currency: str = "CNY",
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Statement:
    """Every posting to the owner's accounts in ``currency`` with ``start <= at < end``,
    oldest first, with each account's balance at the start and at the end of the window."""
    owner = owner_for(principal, org_id)
    _authorize(principal, "statement.read", owner)
    accs = {
        a.id: a
        for a in session.scalars(
            select(Account).where(Account.owner == owner, Account.currency == currency)
        )
    }
    ids = sorted(accs)
    opening = _sums(session, ids, start) if start is not None and ids else {}
    closing = _sums(session, ids, end) if ids else {}
    balances = [
        Balance(accs[i].kind, opening.get(i, 0), closing.get(i, 0))
        for i in sorted(ids, key=lambda i: accs[i].kind)
    ]
    out = Statement(owner, currency, start, end, balances)
    if not ids:
        return out
    where: list[ColumnElement[bool]] = [Posting.account_id.in_(ids)]
    if start is not None:
        where.append(Journal.created_at >= start)
    if end is not None:
        where.append(Journal.created_at < end)
    joined = select(Posting.id).join(Journal, Journal.id == Posting.journal_id).where(*where)
    out.total = int(session.scalar(select(func.count()).select_from(joined.subquery())) or 0)
    rows = session.execute(
        select(Posting, Journal)
        .join(Journal, Journal.id == Posting.journal_id)
        .where(*where)
        .order_by(Journal.created_at, Posting.id)
        .limit(limit)
        .offset(offset)
    ).all()
    journal_ids = list({j.id for _, j in rows})
    seqs = (
        dict(
            session.execute(
                select(LedgerEntry.subject, LedgerEntry.seq).where(
                    LedgerEntry.subject.in_(journal_ids)
                )
            ).all()
        )
        if journal_ids
        else {}
    )
    out.lines = [
        Line(
            posting_id=p.id,
            at=j.created_at,
            journal_id=j.id,
            journal_kind=j.kind,
            ref=j.ref,
            account_kind=accs[p.account_id].kind,
            amount_fen=p.amount_fen,
            balance_after_fen=p.balance_after_fen,
            ledger_seq=seqs.get(j.id),
        )
        for p, j in rows
    ]
    return out


def exchange_statement(
    session: Session,
    principal: Principal,
    currency: str = "CNY",
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Statement:
    """The exchange's own accounts (fee revenue, commission payable, tax payable): staff."""
    return statement(session, principal, EXCHANGE, currency, start, end, limit, offset)
