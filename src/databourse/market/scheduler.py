"""The market's scheduled work, run by ``databourse trade run`` or POST /settlement/run:
expire standing offers, void unsigned contracts, expire contracts past their term, release
escrow whose acceptance window lapsed, bill finished metered periods, close auctions.

Each item is its own unit of work, so one failure (logged) does not hold up the rest, and
running it twice does nothing more (every step checks the state under the row lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from databourse.db import utcnow
from databourse.errors import DataBourseError
from databourse.market import billing, negotiation, trades
from databourse.market.models import (
    Contract,
    ContractStatus,
    Negotiation,
    NegotiationStatus,
    PaymentStatus,
)
from databourse.settings import Settings
from databourse.uow import SYSTEM, UnitOfWork

log = logging.getLogger("databourse.market")


@dataclass
class RunResult:
    offers_expired: int = 0
    contracts_voided: int = 0
    contracts_expired: int = 0
    released: int = 0
    bills: int = 0
    auctions: int = 0


def _each(
    writes: sessionmaker[Session], ids: list[str], step: Callable[[UnitOfWork, str], object]
) -> list[object]:
    out = []
    for i in ids:
        try:
            with UnitOfWork(writes, SYSTEM) as uow:
                out.append(step(uow, i))
                uow.commit()
        except DataBourseError as exc:
            log.warning("scheduled step failed", extra={"subject": i, "problem": exc.slug})
        except Exception:  # one bad item (or a lost serialisation race) must not stop the rest
            log.exception("scheduled step failed", extra={"subject": i})
    return out


def run_due(
    writes: sessionmaker[Session], reads: sessionmaker[Session], settings: Settings
) -> RunResult:
    now, r = utcnow(), RunResult()
    with reads() as s:
        negs = list(
            s.scalars(select(Negotiation.id).where(Negotiation.status == NegotiationStatus.open))
        )
        lapsing = list(
            s.scalars(
                select(Contract.id).where(
                    or_(
                        (
                            Contract.status.in_(
                                [ContractStatus.awaiting_signatures, ContractStatus.signed]
                            )
                        )
                        & (Contract.sign_by <= now),
                        (Contract.status == ContractStatus.active) & (Contract.ends_at <= now),
                    )
                )
            )
        )
        due = list(
            s.scalars(
                select(Contract.id).where(
                    Contract.payment_status == PaymentStatus.delivered, Contract.accept_by <= now
                )
            )
        )
        metered = list(
            s.scalars(
                select(Contract.id).where(
                    Contract.billing.in_(["prepaid", "invoice"]),
                    Contract.status.in_(list(billing.BILLED)),
                    or_(Contract.billed_until.is_(None), Contract.billed_until < Contract.ends_at),
                )
            )
        )
    r.offers_expired = sum(bool(x) for x in _each(writes, negs, negotiation.expire_if_due))
    r.released = sum(bool(x) for x in _each(writes, due, trades.release_if_due))
    for what in _each(writes, lapsing, trades.lapse_if_due):
        if what == "voided":
            r.contracts_voided += 1
        elif what == "expired":
            r.contracts_expired += 1
    billed = _each(writes, metered, lambda uow, i: billing.bill_due(uow, settings, i))
    r.bills = sum(x for x in billed if isinstance(x, int))
    from databourse.market import bidding

    with UnitOfWork(writes, SYSTEM) as uow:
        r.auctions = bidding.close_due(uow, settings)
        uow.commit()
    return r
