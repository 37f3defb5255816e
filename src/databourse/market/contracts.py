"""Contracts (数据交易合约): drafted after the pre-trade checks, signed by both parties with
Ed25519, filed on the ledger (交易备案), and governed through their life.

States: ``awaiting_signatures → signed → active → expired | terminated | suspended``; a
contract not signed by both before ``sign_by`` becomes ``void``. A contract with a price is
``signed`` until the buyer pays into escrow, then ``active``; one without (free, metered)
is ``active`` as soon as both have signed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from databourse.assets.models import DataAsset
from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog import services as catalog
from databourse.catalog.models import Product
from databourse.db import new_id, utcnow
from databourse.errors import Forbidden, InvalidTransition, NotFound
from databourse.ledger.models import LedgerEntry
from databourse.ledger.writer import assert_untampered
from databourse.market import checks, keys, signing
from databourse.market.errors import InvalidSignature, PreTradeCheckFailed
from databourse.market.models import (
    Contract,
    ContractStatus,
    PaymentStatus,
    Signature,
    SigningKey,
)
from databourse.market.terms import Agreed
from databourse.participants.models import Organisation
from databourse.settings import Settings
from databourse.settlement import fees
from databourse.settlement.money import shares
from databourse.uow import UnitOfWork

ACTIVE_STATES = frozenset({ContractStatus.signed, ContractStatus.active})
AGENT_READS = frozenset({"contract.read", "contract.receipt"})


def contract_state(c: Contract, sides: list[tuple[str, ...]] | None = None) -> dict[str, Any]:
    """What the ledger commits to for a contract: its document's hash and every column
    that changes over its life, with the key id of each side's signature."""
    if sides is None:
        from sqlalchemy.orm import object_session

        session = object_session(c)
        assert session is not None
        sides = list(
            session.execute(
                select(Signature.side, Signature.key_id, Signature.signature).where(
                    Signature.contract_id == c.id
                )
            ).all()
        )
    return {
        "id": c.id,
        "document_hash": c.document_hash,
        # the bytes themselves, so an edit of the stored document is found by the audit
        "document_sha256": hashlib.sha256(c.document.encode()).hexdigest(),
        # every column the money code reads, so an edit of one is found before it is used
        "product_id": c.product_id,
        "buyer_org_id": c.buyer_org_id,
        "merchant_org_id": c.merchant_org_id,
        "agent_org_id": c.agent_org_id,
        "plan": c.plan,
        "billing": c.billing,
        "price_fen": c.price_fen,
        "currency": c.currency,
        "fee_bp": c.fee_bp,
        "fee_min_fen": c.fee_min_fen,
        "fee_fen": c.fee_fen,
        "commission_bp": c.commission_bp,
        "commission_fen": c.commission_fen,
        "purpose": c.purpose,
        "policy": c.policy,
        "starts_at": c.starts_at,
        "ends_at": c.ends_at,
        "sign_by": c.sign_by,
        "acceptance_days": c.acceptance_days,
        "status": c.status,
        "payment_status": c.payment_status,
        "escrow_fen": c.escrow_fen,
        "delivered_at": c.delivered_at,
        "accept_by": c.accept_by,
        "billed_until": c.billed_until,
        "suspended_from": c.suspended_from,
        "reason": c.reason,
        "signatures": sorted([list(s) for s in sides]),
    }


def parties(c: Contract) -> tuple[str, ...]:
    return tuple(p for p in (c.buyer_org_id, c.merchant_org_id, c.agent_org_id) if p)


def record(uow: UnitOfWork, kind: str, c: Contract, **body: Any) -> None:
    c.updated_at = utcnow()
    uow.session.flush()
    uow.record(
        f"contract.{kind}",
        c.id,
        {"status": c.status, "payment_status": c.payment_status, **body},
        contract_state(c),
        parties(c),
    )


# Pre-trade checks -------------------------------------------------------------------------


def _party(session: Session, org_id: str) -> checks.PartyFacts:
    org = session.get(Organisation, org_id)
    if org is None:
        return checks.PartyFacts(org_id, "unknown", frozenset(), {})
    return checks.PartyFacts(org.id, org.status, frozenset(org.role_names), org.kyb or {})


def check_trade(session: Session, product: Product, buyer_org_id: str, purpose: str) -> None:
    """Raise ``PreTradeCheckFailed`` listing every rule the trade breaks (DSL art. 33)."""
    asset_ids = catalog.asset_ids_of(session, product.id)
    assets = session.scalars(select(DataAsset).where(DataAsset.id.in_(asset_ids))).all()
    facts = checks.TradeFacts(
        buyer=_party(session, buyer_org_id),
        merchant=_party(session, product.org_id),
        product_id=product.id,
        product_status=product.status,
        assets=[checks.AssetFacts(a.id, a.status, a.source or {}) for a in assets],
        purpose=purpose,
        allowed_purposes=[str(p) for p in catalog.policy_of(product).purposes],
    )
    failed = checks.failures(facts)
    if failed:
        raise PreTradeCheckFailed(
            "; ".join(f.detail for f in failed),
            failures=[{"rule": f.rule, "detail": f.detail} for f in failed],
        )


def _refuse_if_exclusive(session: Session, product_id: str, auction_id: str | None) -> None:
    """An exclusive licence won at auction excludes every other contract on the product
    while it is in force."""
    held = session.scalar(
        select(Contract.id).where(
            Contract.product_id == product_id,
            Contract.auction_id.is_not(None),
            Contract.auction_id != (auction_id or ""),
            Contract.status.in_(
                [ContractStatus.awaiting_signatures, *ACTIVE_STATES, ContractStatus.suspended]
            ),
            Contract.ends_at > utcnow(),
        )
    )
    if held is not None:
        raise PreTradeCheckFailed(
            "the product is licensed exclusively under another contract",
            failures=[{"rule": "exclusive-licence", "detail": f"contract {held} holds it"}],
        )


def visible_product(session: Session, principal: Principal, product_id: str) -> Product:
    """A product the buyer may trade: one it can see in the catalog."""
    product = catalog.get(session, principal, product_id)
    if product.org_id == principal.org_id:
        raise PreTradeCheckFailed(
            "an organisation cannot trade with itself",
            failures=[{"rule": "distinct-parties", "detail": "the product is your own"}],
        )
    return product


# Drafting ---------------------------------------------------------------------------------


def _org_ref(session: Session, org_id: str) -> dict[str, str]:
    org = session.get(Organisation, org_id)
    assert org is not None
    return {"org_id": org.id, "name": org.name, "identifier": org.identifier}


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def draft(
    uow: UnitOfWork,
    settings: Settings,
    product: Product,
    buyer_org_id: str,
    purpose: str,
    agreed: Agreed,
    *,
    negotiation_id: str | None = None,
    auction_id: str | None = None,
) -> Contract:
    """Run the pre-trade checks and draft the contract both parties will sign."""
    session = uow.session
    # the product is the business object of a draft: locked, so two drafts (a buy and an
    # auction's close) cannot both pass the exclusive-licence check
    session.execute(select(Product.id).where(Product.id == product.id).with_for_update())
    check_trade(session, product, buyer_org_id, purpose)
    _refuse_if_exclusive(session, product.id, auction_id)
    now = utcnow().replace(microsecond=0)
    terms = fees.fee_terms(session, product.kind, product.org_id)
    agency = fees.agency_for(session, product.org_id, product.id, now)
    commission_bp = agency.commission_bp if agency else 0
    split = shares(agreed.price_fen, terms.rate_bp, commission_bp, terms.min_fen)
    not_before = agreed.policy.not_before
    starts = (
        max(now, datetime(not_before.year, not_before.month, not_before.day, tzinfo=now.tzinfo))
        if not_before
        else now
    )
    ends = starts + timedelta(days=agreed.term_days)
    c = Contract(
        id=new_id("ctr"),
        product_id=product.id,
        product_version=product.version,
        product_kind=product.kind,
        buyer_org_id=buyer_org_id,
        merchant_org_id=product.org_id,
        agent_org_id=agency.agent_org_id if agency else None,
        plan=agreed.plan,
        billing=agreed.billing,
        price_fen=agreed.price_fen,
        currency=product.currency,
        fee_bp=terms.rate_bp,
        fee_min_fen=terms.min_fen,
        fee_fen=split.fee,
        commission_bp=commission_bp,
        commission_fen=split.commission,
        purpose=purpose,
        policy=agreed.policy.model_dump(mode="json"),
        starts_at=starts,
        ends_at=ends,
        sign_by=now + timedelta(days=settings.sign_within_days),
        acceptance_days=settings.acceptance_days,
        status=ContractStatus.awaiting_signatures,
        payment_status=PaymentStatus.unpaid if agreed.billing == "upfront" else PaymentStatus.none,
        escrow_fen=0,
        negotiation_id=negotiation_id,
        auction_id=auction_id,
        created_at=now,
        updated_at=now,
        document="",
        document_hash="",
    )
    doc = {
        "type": signing.DOCUMENT_TYPE,
        "id": c.id,
        "exchange": settings.ledger_origin,
        "issued_at": _iso(now),
        "buyer": _org_ref(session, buyer_org_id),
        "merchant": _org_ref(session, product.org_id),
        "agent": (
            {
                **_org_ref(session, agency.agent_org_id),
                "agency_id": agency.agency_id,
                "commission_bp": commission_bp,
                "commission_fen": split.commission,
            }
            if agency
            else None
        ),
        "product": {
            "id": product.id,
            "version": product.version,
            "kind": product.kind,
            "title": product.title,
        },
        "plan": agreed.plan,
        "price": {"amount_fen": agreed.price_fen, "currency": product.currency},
        "billing": agreed.billing,
        "term": {"starts_at": _iso(starts), "ends_at": _iso(ends), "days": agreed.term_days},
        "purpose": purpose,
        "policy": c.policy,
        "fee": {
            "tier": terms.tier,
            "rate_bp": terms.rate_bp,
            "min_fen": terms.min_fen,
            "amount_fen": split.fee,
        },
        "acceptance_days": settings.acceptance_days,
        "sign_by": _iso(c.sign_by),
        "origin": {"negotiation_id": negotiation_id, "auction_id": auction_id},
    }
    c.document = signing.document_bytes(doc).decode()
    c.document_hash = signing.document_hash(doc)
    session.add(c)
    session.flush()
    uow.record(
        "contract.drafted",
        c.id,
        {
            "document_hash": c.document_hash,
            "product_id": c.product_id,
            "buyer": c.buyer_org_id,
            "merchant": c.merchant_org_id,
            "price_fen": c.price_fen,
            "currency": c.currency,
            "status": c.status,
        },
        contract_state(c, []),
        parties(c),
    )
    return c


def document(c: Contract) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(c.document)
    return doc


# Access -----------------------------------------------------------------------------------


def side_of(principal: Principal, c: Contract) -> str | None:
    if principal.org_id == c.buyer_org_id:
        return "buyer"
    if principal.org_id == c.merchant_org_id:
        return "merchant"
    return None


def authorize_on(principal: Principal, action: str, c: Contract, side: str | None = None) -> str:
    """Allow a party (acting on its own side, when ``side`` is given) or the exchange's
    staff; anyone else is told the contract does not exist."""
    mine = side_of(principal, c)
    # the agent of a trade reads it and its receipt; it never acts on it
    agent = principal.org_id == c.agent_org_id and action in AGENT_READS
    owner = principal.org_id if (mine or agent) else c.merchant_org_id
    try:
        reach = authorize(principal, action, owner)
    except NotFound:
        raise NotFound(f"contract {c.id} not found") from None
    except Forbidden:
        if mine is None and not agent:
            raise NotFound(f"contract {c.id} not found") from None
        raise
    if reach is Reach.OWN and side is not None and mine != side:
        raise Forbidden(f"only the {side} may do this")
    return mine or ("agent" if agent else "exchange")


def load(uow: UnitOfWork, contract_id: str) -> Contract:
    """The contract, locked: first in the exchange's lock order (see settlement.services)."""
    c = uow.session.get(Contract, contract_id, with_for_update=True, populate_existing=True)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    assert_untampered(uow, c.id, contract_state(c))
    return c


def get(session: Session, principal: Principal, contract_id: str) -> Contract:
    c = session.get(Contract, contract_id)
    if c is None:
        raise NotFound(f"contract {contract_id} not found")
    authorize_on(principal, "contract.read", c)
    return c


def list_contracts(
    session: Session, principal: Principal, status: str | None, limit: int, offset: int
) -> list[Contract]:
    q = select(Contract)
    if authorize(principal, "contract.read") is Reach.OWN:
        me = principal.org_id
        q = q.where(
            or_(
                Contract.buyer_org_id == me,
                Contract.merchant_org_id == me,
                Contract.agent_org_id == me,
            )
        )
    if status:
        q = q.where(Contract.status == status)
    return list(
        session.scalars(
            q.order_by(Contract.created_at.desc(), Contract.id).limit(limit).offset(offset)
        )
    )


def signatures(session: Session, contract_ids: list[str]) -> dict[str, list[Signature]]:
    out: dict[str, list[Signature]] = {i: [] for i in contract_ids}
    for s in session.scalars(
        select(Signature).where(Signature.contract_id.in_(contract_ids)).order_by(Signature.side)
    ):
        out[s.contract_id].append(s)
    return out


# Signing ----------------------------------------------------------------------------------


def _refuse_unless_signable(c: Contract) -> None:
    if c.status != ContractStatus.awaiting_signatures:
        raise InvalidTransition(
            f"the contract is {c.status}; nothing to sign", current_status=c.status
        )
    if utcnow() > c.sign_by:
        raise InvalidTransition(
            "the time to sign this contract has passed", current_status=c.status
        )


def _add_signature(
    uow: UnitOfWork, c: Contract, side: str, key: SigningKey, sig: str, principal: Principal
) -> None:
    if uow.session.get(Signature, (c.id, side)) is not None:
        raise InvalidTransition(f"the {side} has already signed", current_status=c.status)
    uow.session.add(
        Signature(
            contract_id=c.id,
            side=side,
            org_id=key.org_id,
            key_id=key.id,
            signature=sig,
            custodial=key.custodial,
            signed_by=principal.ref,
            signed_at=utcnow(),
        )
    )
    uow.session.flush()
    signed = signatures(uow.session, [c.id])[c.id]
    if len(signed) < 2:
        record(uow, "signed", c, side=side, key_id=key.id)
        return
    doc = document(c)
    for s in signed:  # the exchange checks both before filing the trade
        k = keys.get_key(uow.session, s.key_id)
        if k is None or not signing.verify(k.public_key, doc, s.signature):
            raise InvalidSignature(f"the {s.side}'s signature does not verify")
    c.status = ContractStatus.active if c.billing != "upfront" else ContractStatus.signed
    record(
        uow,
        "filed",
        c,
        document_hash=c.document_hash,
        signatures=[{"side": s.side, "key_id": s.key_id, "signature": s.signature} for s in signed],
    )


def sign_custodial(
    uow: UnitOfWork, principal: Principal, secret: bytes, contract_id: str
) -> Contract:
    """Sign for the caller's organisation with the key the exchange holds for it."""
    c = load(uow, contract_id)
    side = authorize_on(principal, "contract.sign", c)
    if side not in signing.SIDES:
        raise Forbidden("only the parties sign a contract")
    _refuse_unless_signable(c)
    key, private = keys.custodial_key(uow, secret, principal.org_id)
    _add_signature(uow, c, side, key, signing.sign(private, document(c)), principal)
    return c


def sign_with(
    uow: UnitOfWork, principal: Principal, contract_id: str, key_id: str, signature: str
) -> Contract:
    """File a signature made client-side with the organisation's registered key."""
    c = load(uow, contract_id)
    side = authorize_on(principal, "contract.sign", c)
    if side not in signing.SIDES:
        raise Forbidden("only the parties sign a contract")
    _refuse_unless_signable(c)
    key = keys.verifies(uow.session, key_id, principal.org_id, document(c), signature)
    _add_signature(uow, c, side, key, signature, principal)
    return c


# Governance -------------------------------------------------------------------------------


def suspend(uow: UnitOfWork, principal: Principal, contract_id: str, reason: str) -> Contract:
    """Stop the contract at once (叫停): every delivery path refuses its next request."""
    c = load(uow, contract_id)
    authorize_on(principal, "contract.suspend", c)
    if c.status not in (ContractStatus.awaiting_signatures, *ACTIVE_STATES):
        raise InvalidTransition(
            f"cannot suspend a contract that is {c.status}", current_status=c.status
        )
    c.suspended_from, c.status, c.reason = c.status, ContractStatus.suspended, reason
    record(uow, "suspended", c, reason_given=True)
    return c


def reinstate(uow: UnitOfWork, principal: Principal, contract_id: str, reason: str) -> Contract:
    c = load(uow, contract_id)
    authorize_on(principal, "contract.reinstate", c)
    if c.status != ContractStatus.suspended:
        raise InvalidTransition(
            f"cannot reinstate a contract that is {c.status}", current_status=c.status
        )
    c.status, c.suspended_from, c.reason = c.suspended_from or ContractStatus.active, None, reason
    record(uow, "reinstated", c)
    return c


def filing_seq(session: Session, c: Contract) -> int:
    seq = session.scalar(
        select(LedgerEntry.seq).where(
            LedgerEntry.subject == c.id, LedgerEntry.kind == "contract.filed"
        )
    )
    if seq is None:
        raise InvalidTransition(
            "the contract is not filed until both parties have signed", current_status=c.status
        )
    return int(seq)


def public_keys(session: Session, sigs: list[Signature]) -> dict[str, str]:
    ids = [s.key_id for s in sigs]
    return dict(
        session.execute(
            select(SigningKey.id, SigningKey.public_key).where(SigningKey.id.in_(ids))
        ).all()
    )


def receipt(
    uow: UnitOfWork, principal: Principal, log_key: Any, contract_id: str
) -> dict[str, Any]:
    """The trade filing (交易备案) as one document to verify offline: the ledger receipt of
    the ``contract.filed`` entry, plus the signed document and both signatures with their
    public keys (``signing.verify_filing`` checks it)."""
    from databourse.ledger import services as ledger

    c = get(uow.session, principal, contract_id)
    authorize_on(principal, "contract.receipt", c)
    seq = filing_seq(uow.session, c)
    sigs = signatures(uow.session, [c.id])[c.id]
    pks = public_keys(uow.session, sigs)
    out = ledger.receipt(uow, principal, log_key, seq)
    out["contract"] = {
        "document": c.document,
        "document_hash": c.document_hash,
        "signatures": [
            {
                "side": s.side,
                "org_id": s.org_id,
                "key_id": s.key_id,
                "public_key": pks[s.key_id],
                "signature": s.signature,
            }
            for s in sigs
        ],
    }
    return out
