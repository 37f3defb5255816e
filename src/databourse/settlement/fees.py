"""The fee schedule, participant tiers, agency contracts and commissions (BRIEF §9).

The exchange's fee on a trade depends on the product's kind and the merchant's tier. The
schedule is rows of ``FeeRule`` set by the operator; a (kind, tier) without a rule falls
back to the tier's rule for every kind (``*``), then to ``DEFAULT_FEES``. The defaults are
only the starting schedule: the operator changes any of them with
``PUT /fee-schedule/{kind}/{tier}`` (or ``databourse money set-fee``), kind ``*`` to change
a tier's fee for every kind.

An agent earns a commission on its principal's trades under an agency contract the
exchange has certified: the market calls ``agency_for`` at settlement, credits the
commission to the exchange's ``commission_payable`` account and calls
``accrue_commission``; the operator pays out what is owed with ``payout_commissions``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog.pricing import MAX_FEN
from databourse.catalog.vocab import ProductKind
from databourse.db import new_id, utcnow
from databourse.errors import InvalidTransition, NotFound, ValidationFailed
from databourse.ledger.writer import assert_untampered
from databourse.settlement import services
from databourse.settlement.errors import InvalidAgencyContract, InvalidAmount, InvalidFeeRule
from databourse.settlement.models import (
    EXCHANGE,
    AccountKind,
    AgencyContract,
    AgencyStatus,
    Commission,
    FeeRule,
    ParticipantTier,
)
from databourse.settlement.services import Leg, Movement
from databourse.uow import UnitOfWork

#: Participant tiers, lowest fee last. An organisation without a tier row is "standard".
TIERS = ("standard", "member", "strategic")
DEFAULT_TIER = "standard"
ANY_KIND = "*"
#: The starting schedule, per tier: (rate in basis points, minimum fee in fen). Rules the
#: operator sets override it (see the module's docstring).
DEFAULT_FEES: dict[str, tuple[int, int]] = {
    "standard": (300, 100),
    "member": (200, 100),
    "strategic": (100, 0),
}
MAX_RATE_BP = 5000  # a fee above half the price is a typing error
MAX_COMMISSION_BP = 3000
DOCUMENT_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FeeTerms:
    rate_bp: int
    min_fen: int
    tier: str


@dataclass(frozen=True)
class AgencyTerms:
    agency_id: str
    agent_org_id: str
    commission_bp: int


# ---------------------------------------------------------------- fee schedule and tiers


def tier_of(session: Session, org_id: str) -> str:
    row = session.get(ParticipantTier, org_id)
    return row.tier if row is not None else DEFAULT_TIER


def fee_terms(session: Session, product_kind: str, merchant_org_id: str) -> FeeTerms:
    """The fee on a trade of a product of ``product_kind`` sold by the merchant."""
    tier = tier_of(session, merchant_org_id)
    rules = {
        r.product_kind: r
        for r in session.scalars(
            select(FeeRule).where(
                FeeRule.tier == tier, FeeRule.product_kind.in_([product_kind, ANY_KIND])
            )
        )
    }
    rule = rules.get(product_kind) or rules.get(ANY_KIND)
    if rule is not None:
        return FeeTerms(rule.rate_bp, rule.min_fen, tier)
    rate, minimum = DEFAULT_FEES[tier]
    return FeeTerms(rate, minimum, tier)


@dataclass(frozen=True)
class Effective:
    product_kind: str
    tier: str
    rate_bp: int
    min_fen: int
    source: str  # "rule" | "rule for every kind" | "default"


def schedule(session: Session, principal: Principal) -> tuple[list[FeeRule], list[Effective]]:
    """The operator's rules, and the fee in force for every kind and tier."""
    authorize(principal, "fee.read")
    rules = list(session.scalars(select(FeeRule).order_by(FeeRule.product_kind, FeeRule.tier)))
    by_key = {(r.product_kind, r.tier): r for r in rules}
    effective = []
    for kind in ProductKind:
        for tier in TIERS:
            rule, source = by_key.get((kind.value, tier)), "rule"
            if rule is None:
                rule, source = by_key.get((ANY_KIND, tier)), "rule for every kind"
            if rule is not None:
                effective.append(Effective(kind.value, tier, rule.rate_bp, rule.min_fen, source))
            else:
                rate, minimum = DEFAULT_FEES[tier]
                effective.append(Effective(kind.value, tier, rate, minimum, "default"))
    return rules, effective


M = TypeVar("M", FeeRule, ParticipantTier)


def _lock_or_create(
    session: Session, model: type[M], key: Any, values: dict[str, Any], by: str, at: datetime
) -> tuple[M, bool]:
    """The row of ``key`` locked FOR UPDATE, inserted first if missing; and whether this
    command created it (two operators creating the same row: one inserts, the other waits
    and then finds it)."""
    row = session.get(model, key, with_for_update=True, populate_existing=True)
    if row is not None:
        return row, False
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = session.execute(
        insert(model).values(**values, updated_by=by, updated_at=at).on_conflict_do_nothing()
    )
    row = session.get(model, key, with_for_update=True, populate_existing=True)
    assert row is not None
    return row, getattr(result, "rowcount", 0) == 1


def fee_state(rule: FeeRule) -> dict[str, Any]:
    return {
        "product_kind": rule.product_kind,
        "tier": rule.tier,
        "rate_bp": rule.rate_bp,
        "min_fen": rule.min_fen,
        "updated_by": rule.updated_by,
    }


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise InvalidFeeRule(f"tier must be one of {', '.join(TIERS)}", field="tier")


def put_fee_rule(
    uow: UnitOfWork,
    principal: Principal,
    product_kind: str,
    tier: str,
    rate_bp: int,
    min_fen: int = 0,
) -> FeeRule:
    """The operator sets the fee for a product kind (or ``*``: every kind) and tier."""
    authorize(principal, "fee.update")
    if product_kind != ANY_KIND and product_kind not in {k.value for k in ProductKind}:
        raise InvalidFeeRule(
            f"product kind must be one of {', '.join(ProductKind)} or '*'", field="product_kind"
        )
    _check_tier(tier)
    for name, value, top in (("rate_bp", rate_bp, MAX_RATE_BP), ("min_fen", min_fen, MAX_FEN)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise InvalidFeeRule(f"{name} must be an integer from 0 to {top}", field=name)
    subject = f"fee:{product_kind}:{tier}"
    now = utcnow()
    rule, created = _lock_or_create(
        uow.session,
        FeeRule,
        (product_kind, tier),
        {"product_kind": product_kind, "tier": tier, "rate_bp": rate_bp, "min_fen": min_fen},
        principal.ref,
        now,
    )
    previous = None
    if not created:
        assert_untampered(uow, subject, fee_state(rule))
        previous = {"rate_bp": rule.rate_bp, "min_fen": rule.min_fen}
    rule.rate_bp, rule.min_fen = rate_bp, min_fen
    rule.updated_by, rule.updated_at = principal.ref, now
    uow.session.flush()
    uow.record(
        "fee.updated",
        subject,
        {**fee_state(rule), "previous": previous},
        fee_state(rule),
    )
    return rule


def tier_state(row: ParticipantTier) -> dict[str, Any]:
    return {"org_id": row.org_id, "tier": row.tier, "updated_by": row.updated_by}


def set_tier(uow: UnitOfWork, principal: Principal, org_id: str, tier: str) -> ParticipantTier:
    """The operator puts an organisation in a tier of the fee schedule."""
    from databourse.participants.models import Organisation

    authorize(principal, "tier.update", org_id)
    _check_tier(tier)
    if uow.session.get(Organisation, org_id) is None:
        raise NotFound(f"organisation {org_id} not found")
    subject = f"tier:{org_id}"
    now = utcnow()
    row, created = _lock_or_create(
        uow.session, ParticipantTier, org_id, {"org_id": org_id, "tier": tier}, principal.ref, now
    )
    previous = None
    if not created:
        assert_untampered(uow, subject, tier_state(row))
        previous = row.tier
    row.tier, row.updated_by, row.updated_at = tier, principal.ref, now
    uow.session.flush()
    uow.record(
        "tier.updated",
        subject,
        {**tier_state(row), "previous": previous},
        tier_state(row),
        (org_id,),
    )
    return row


# ---------------------------------------------------------------- agency contracts


def agency_state(a: AgencyContract) -> dict[str, Any]:
    return {
        "id": a.id,
        "agent_org_id": a.agent_org_id,
        "principal_org_id": a.principal_org_id,
        "product_id": a.product_id,
        "commission_bp": a.commission_bp,
        "not_after": a.not_after,
        "document_hash": a.document_hash,
        "status": a.status,
        "decided_by": a.decided_by,
    }


def _record_agency(uow: UnitOfWork, a: AgencyContract, **extra: Any) -> None:
    uow.record(
        f"agency.{a.status}",
        a.id,
        {**agency_state(a), **extra},
        agency_state(a),
        (a.agent_org_id, a.principal_org_id),
    )


def submit_agency(
    uow: UnitOfWork,
    principal: Principal,
    principal_org_id: str,
    product_id: str | None,
    commission_bp: int,
    not_after: datetime,
    document_hash: str,
) -> AgencyContract:
    """An agent files its signed contract with a merchant, for the exchange to certify."""
    from databourse.catalog.models import Product
    from databourse.participants.models import Organisation, OrgStatus

    authorize(principal, "agency.create", principal.org_id)
    merchant = uow.session.get(Organisation, principal_org_id)
    if (
        merchant is None
        or merchant.status != OrgStatus.admitted
        or "merchant" not in merchant.role_names
    ):
        raise InvalidAgencyContract(
            "the principal must be an admitted merchant", field="principal_org_id"
        )
    if principal_org_id == principal.org_id:
        raise InvalidAgencyContract(
            "an organisation cannot be its own agent", field="principal_org_id"
        )
    if product_id is not None:
        product = uow.session.get(Product, product_id)
        if product is None or product.org_id != principal_org_id:
            raise InvalidAgencyContract(
                "the product must be one of the principal's", field="product_id"
            )
    if isinstance(commission_bp, bool) or not 1 <= commission_bp <= MAX_COMMISSION_BP:
        raise InvalidAgencyContract(
            f"commission_bp must be from 1 to {MAX_COMMISSION_BP}", field="commission_bp"
        )
    if not_after.tzinfo is None or not_after <= utcnow():
        raise InvalidAgencyContract(
            "not_after must be a future time with its time zone", field="not_after"
        )
    document_hash = document_hash.lower()
    if not DOCUMENT_HASH.fullmatch(document_hash):
        raise InvalidAgencyContract(
            "document_hash is the SHA-256 (64 hex digits) of the signed contract",
            field="document_hash",
        )
    a = AgencyContract(
        id=new_id("agy"),
        agent_org_id=principal.org_id,
        principal_org_id=principal_org_id,
        product_id=product_id,
        commission_bp=commission_bp,
        not_after=not_after.astimezone(UTC),
        status=AgencyStatus.submitted,
        document_hash=document_hash,
        decided_by=None,
        created_at=utcnow(),
    )
    uow.session.add(a)
    uow.session.flush()
    _record_agency(uow, a)
    return a


#: step → (the states it leaves, the state it reaches, a reason required)
AGENCY_STEPS: dict[str, tuple[frozenset[str], str, bool]] = {
    "certify": (frozenset({AgencyStatus.submitted}), AgencyStatus.certified, False),
    "reject": (frozenset({AgencyStatus.submitted}), AgencyStatus.rejected, True),
    "revoke": (frozenset({AgencyStatus.certified}), AgencyStatus.revoked, True),
}


def decide_agency(
    uow: UnitOfWork, principal: Principal, agency_id: str, step: str, reason: str | None = None
) -> AgencyContract:
    """The operator certifies or rejects a submitted contract, or revokes a certified one.
    The reason is kept in the decision's ledger entry."""
    sources, target, needs_reason = AGENCY_STEPS[step]
    a = uow.session.get(AgencyContract, agency_id, with_for_update=True, populate_existing=True)
    if a is None:
        raise NotFound(f"agency contract {agency_id} not found")
    authorize(principal, f"agency.{step}", a.principal_org_id)
    assert_untampered(uow, a.id, agency_state(a))
    if a.status not in sources:
        raise InvalidTransition(
            f"cannot {step} an agency contract that is {a.status}", current_status=a.status
        )
    reason = (reason or "").strip() or None
    if needs_reason and reason is None:
        raise ValidationFailed(f"{step} needs a reason", field="reason")
    if step == "certify" and a.not_after <= utcnow():
        raise InvalidAgencyContract("the contract has expired", field="not_after")
    a.status, a.decided_by = target, principal.ref
    uow.session.flush()
    _record_agency(
        uow,
        a,
        # free text stays out of the log (it may name people): only its hash is filed
        reason_sha256=hashlib.sha256(reason.encode()).hexdigest() if reason else None,
    )
    return a


def list_agencies(
    session: Session,
    principal: Principal,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AgencyContract]:
    """An agent's own contracts and a merchant's as principal; all of them for staff."""
    q = select(AgencyContract)
    if authorize(principal, "agency.list") is Reach.OWN:
        me = principal.org_id
        q = q.where(or_(AgencyContract.agent_org_id == me, AgencyContract.principal_org_id == me))
    if status:
        q = q.where(AgencyContract.status == status)
    q = q.order_by(AgencyContract.created_at.desc(), AgencyContract.id).limit(limit).offset(offset)
    return list(session.scalars(q))


def agency_for(
    session: Session, merchant_org_id: str, product_id: str, at: datetime
) -> AgencyTerms | None:
    """The certified contract covering a trade of the merchant's product at ``at``: one
    naming the product is preferred to a general one, then the most recent."""
    rows = session.scalars(
        select(AgencyContract).where(
            AgencyContract.principal_org_id == merchant_org_id,
            AgencyContract.status == AgencyStatus.certified,
            AgencyContract.not_after > at,
            or_(AgencyContract.product_id == product_id, AgencyContract.product_id.is_(None)),
        )
    ).all()
    if not rows:
        return None
    best = max(rows, key=lambda a: (a.product_id is not None, a.created_at, a.id))
    return AgencyTerms(best.id, best.agent_org_id, best.commission_bp)


# ---------------------------------------------------------------- commissions


def accrue_commission(
    uow: UnitOfWork,
    agent_org_id: str,
    contract_id: str,
    journal_id: str,
    amount_fen: int,
    currency: str,
) -> None:
    """Note a commission the agent earned; the settlement journal ``journal_id`` has
    already credited it to the exchange's commission_payable account."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
        raise InvalidAmount("a commission is a positive whole number of fen")
    c = Commission(
        id=new_id("com"),
        agent_org_id=agent_org_id,
        contract_id=contract_id,
        journal_id=journal_id,
        amount_fen=amount_fen,
        currency=currency,
        payout_journal_id=None,
    )
    uow.session.add(c)
    uow.session.flush()
    uow.record(
        "commission.accrued",
        c.id,
        {"contract_id": contract_id, "amount_fen": amount_fen, "currency": currency},
        commission_state(c),
        (agent_org_id,),
    )


def commission_state(c: Commission) -> dict[str, Any]:
    """Every column: the payout pays the agent these say, this much."""
    return {
        "id": c.id,
        "agent_org_id": c.agent_org_id,
        "contract_id": c.contract_id,
        "journal_id": c.journal_id,
        "amount_fen": c.amount_fen,
        "currency": c.currency,
        "payout_journal_id": c.payout_journal_id,
    }


def payout_commissions(
    uow: UnitOfWork, principal: Principal, agent_org_id: str | None = None
) -> list[str]:
    """Pay every agent (or the one named) what it is owed: per agent and currency, one
    ``commission.payout`` movement from the exchange's commission_payable account to the
    agent's available account. Returns the journal ids."""
    authorize(principal, "commission.payout")
    q = select(Commission).where(Commission.payout_journal_id.is_(None))
    if agent_org_id is not None:
        q = q.where(Commission.agent_org_id == agent_org_id)
    unpaid = uow.session.scalars(
        q.order_by(Commission.id).with_for_update().execution_options(populate_existing=True)
    ).all()
    groups: dict[tuple[str, str], list[Commission]] = defaultdict(list)
    for c in unpaid:
        assert_untampered(uow, c.id, commission_state(c))  # never pay on an edited row
        groups[(c.agent_org_id, c.currency)].append(c)
    keys = sorted(groups)
    movements = []
    for agent, currency in keys:
        total = sum(c.amount_fen for c in groups[(agent, currency)])
        movements.append(
            Movement(
                "commission.payout",
                agent,
                currency,
                (
                    Leg(EXCHANGE, AccountKind.commission_payable, -total),
                    Leg(agent, AccountKind.available, total),
                ),
                memo=f"{len(groups[(agent, currency)])} commissions",
            )
        )
    journal_ids = services.move_many(uow, movements) if movements else []
    for key, jid in zip(keys, journal_ids, strict=True):
        for c in groups[key]:
            c.payout_journal_id = jid
    uow.session.flush()
    for key in keys:
        for c in groups[key]:
            uow.record(
                "commission.paid",
                c.id,
                {"payout_journal_id": c.payout_journal_id},
                commission_state(c),
                (c.agent_org_id,),
            )
    return journal_ids
