"""Which contract a use falls under, and whether the policy lets it happen now.

One query gathers what ``rules`` needs — the contract, its product's status and both
organisations' statuses — straight from the database, never from a cache of unknown age:
a suspension or an expiry stops the very next request on every delivery path, in every
process. (The API gateway reuses these facts only while the ledger head shows that no
state change has been committed since they were read: ``delivery.decisions``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from databourse.catalog.models import Product
from databourse.catalog.policy import UsagePolicy
from databourse.db import utcnow
from databourse.delivery import rules
from databourse.delivery.errors import NoUsableContract, UsageRefused
from databourse.market.models import Contract
from databourse.participants.models import Organisation

DEFAULT_TERRITORY = "CN"


@dataclass(frozen=True)
class Grant:
    """What a usable contract licenses, as the delivery paths need it."""

    contract_id: str
    product_id: str
    product_kind: str
    buyer_org_id: str
    merchant_org_id: str
    plan: dict[str, Any]
    policy: UsagePolicy
    purpose: str
    starts_at: datetime
    ends_at: datetime

    @property
    def unit(self) -> str | None:
        """The plan's metered or packaged unit ("call", "row", …), if it has one."""
        unit = self.plan.get("unit")
        return str(unit) if unit else None

    @property
    def package_units(self) -> int | None:
        """A package's agreed quantity: a count limit of its own."""
        if self.plan.get("model") != "package":
            return None
        agreed = self.plan.get("agreed") or {}
        quantity = agreed.get("quantity") or self.plan.get("units")
        return int(quantity) if quantity else None


_Buyer = aliased(Organisation)
_Merchant = aliased(Organisation)
_COLUMNS = (
    Contract.id,
    Contract.product_id,
    Contract.product_kind,
    Contract.buyer_org_id,
    Contract.merchant_org_id,
    Contract.plan,
    Contract.policy,
    Contract.purpose,
    Contract.starts_at,
    Contract.ends_at,
    Contract.status,
    Product.status,
    _Buyer.status,
    _Merchant.status,
)


def _query() -> Any:
    return (
        select(*_COLUMNS)
        .join(Product, Product.id == Contract.product_id)
        .join(_Buyer, _Buyer.id == Contract.buyer_org_id)
        .join(_Merchant, _Merchant.id == Contract.merchant_org_id)
    )


def _grant_and_facts(row: Any, now: datetime) -> tuple[Grant, rules.UseFacts]:
    (cid, pid, kind, buyer, merchant, plan, policy, purpose, starts, ends, status,
     product_status, buyer_status, merchant_status) = row  # fmt: skip
    parsed = UsagePolicy.model_validate(policy)
    grant = Grant(cid, pid, kind, buyer, merchant, plan, parsed, purpose, starts, ends)
    facts = rules.UseFacts(
        contract_status=status,
        buyer_status=buyer_status,
        merchant_status=merchant_status,
        product_status=product_status,
        starts_at=starts,
        ends_at=ends,
        policy=parsed,
        now=now,
    )
    return grant, facts


def grant_of(c: Contract) -> Grant:
    """A contract's grant as it stands, whether or not it can be used now (for reads)."""
    policy = UsagePolicy.model_validate(c.policy)
    return Grant(
        c.id, c.product_id, c.product_kind, c.buyer_org_id, c.merchant_org_id, c.plan,
        policy, c.purpose, c.starts_at, c.ends_at,
    )  # fmt: skip


def refuse(refusal: rules.Refusal, grant: Grant | None = None) -> UsageRefused:
    extra = {"contract_id": grant.contract_id} if grant else {}
    return UsageRefused(refusal.detail, constraint=refusal.constraint, **extra)


def grant_and_facts(
    session: Session, contract_id: str, now: datetime | None = None
) -> tuple[Grant, rules.UseFacts]:
    """The contract's grant and the facts ``rules.standing`` judges it by, not judged."""
    row = session.execute(_query().where(Contract.id == contract_id)).one_or_none()
    if row is None:
        raise NoUsableContract(f"contract {contract_id} not found")
    return _grant_and_facts(row, now or utcnow())


def usable(session: Session, contract_id: str, now: datetime | None = None) -> Grant:
    """The contract's grant if it can be used right now; ``UsageRefused`` otherwise."""
    grant, facts = grant_and_facts(session, contract_id, now)
    refusal = rules.standing(facts)
    if refusal is not None:
        raise refuse(refusal, grant)
    return grant


def for_use(
    session: Session,
    contract_id: str,
    purpose: str | None,
    territory: str | None,
    now: datetime | None = None,
) -> Grant:
    """``usable``, and the declared purpose and territory licensed."""
    grant = usable(session, contract_id, now)
    refusal = rules.declared(grant.policy, purpose, territory or DEFAULT_TERRITORY)
    if refusal is not None:
        raise refuse(refusal, grant)
    return grant


def contract_for(
    session: Session,
    buyer_org_id: str,
    product_id: str,
    contract_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """The buyer's contract to use for the product: the one named (it must be the
    buyer's, on this product), else its active contract whose term covers now (the one
    ending last when several do). ``NoUsableContract`` when there is none."""
    now = now or utcnow()
    q = select(Contract.id).where(
        Contract.buyer_org_id == buyer_org_id, Contract.product_id == product_id
    )
    if contract_id is not None:
        found = session.scalar(q.where(Contract.id == contract_id))
        if found is None:
            raise NoUsableContract(
                f"contract {contract_id} is not yours on product {product_id}",
                product_id=product_id,
            )
        return found
    found = session.scalar(
        q.where(
            and_(
                Contract.status.in_([rules.USABLE_CONTRACT, "suspended"]),
                Contract.starts_at <= now,
                Contract.ends_at > now,
            )
        ).order_by(Contract.ends_at.desc(), Contract.id)
    )
    if found is None:
        raise NoUsableContract(
            f"you hold no active contract on product {product_id}", product_id=product_id
        )
    return found


def choice_changes_at(
    session: Session, buyer_org_id: str, product_id: str, now: datetime
) -> datetime | None:
    """The first instant after ``now`` at which ``contract_for`` without a named contract
    may choose differently: the next start or end of a term of the buyer's contracts on
    the product (None: never, by time alone)."""
    q = select(Contract.starts_at, Contract.ends_at).where(
        Contract.buyer_org_id == buyer_org_id, Contract.product_id == product_id
    )
    later = [t for row in session.execute(q) for t in row if t > now]
    return min(later, default=None)
