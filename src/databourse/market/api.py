"""HTTP routes of the market (under /api/v1): signing keys, negotiations, contracts and
their money, usage records and bills, and the scheduled run."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.auth.policy import authorize
from databourse.market import billing, contracts, keys, negotiation, scheduler, schemas, trades
from databourse.market.models import Contract
from databourse.settlement import usage
from databourse.uow import UnitOfWork

router = APIRouter(tags=["market"])
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


def _out(session: Session, c: Contract) -> schemas.ContractOut:
    out = schemas.ContractOut.model_validate(c)
    out.signatures = [
        schemas.SignatureOut.model_validate(s) for s in contracts.signatures(session, [c.id])[c.id]
    ]
    return out


def _neg_out(session: Session, n: Any) -> schemas.NegotiationOut:
    out = schemas.NegotiationOut.model_validate(n)
    out.offers = [schemas.OfferOut.model_validate(o) for o in negotiation.offers(session, n.id)]
    return out


# Signing keys -----------------------------------------------------------------------------


@router.get(
    "/signing-keys",
    response_model=list[schemas.SigningKeyOut],
    openapi_extra=action("signing_key.list"),
)
def list_signing_keys(
    caller: Caller, session: ReadSession, org_id: Annotated[str | None, Query(max_length=40)] = None
) -> Any:
    """The organisation's contract-signing keys (custodial or registered)."""
    return keys.list_keys(session, caller, org_id)


@router.post(
    "/signing-keys",
    status_code=201,
    response_model=schemas.SigningKeyOut,
    openapi_extra=action("signing_key.register"),
)
def register_signing_key(body: schemas.SigningKeyIn, caller: Caller, cmd: Cmd) -> Any:
    """Register the organisation's own Ed25519 public key to sign contracts client-side."""
    return cmd.run(
        lambda uow: schemas.SigningKeyOut.model_validate(
            keys.register(uow, caller, body.public_key)
        ),
        body,
        status_code=201,
    )


@router.post(
    "/signing-keys/{signing_key_id}/revoke",
    response_model=schemas.SigningKeyOut,
    openapi_extra=action("signing_key.revoke"),
)
def revoke_signing_key(signing_key_id: str, caller: Caller, cmd: Cmd) -> Any:
    return cmd.run(
        lambda uow: schemas.SigningKeyOut.model_validate(keys.revoke(uow, caller, signing_key_id))
    )


# Negotiations -----------------------------------------------------------------------------


@router.post(
    "/negotiations",
    status_code=201,
    response_model=schemas.NegotiationOut,
    openapi_extra=action("negotiation.open"),
)
def open_negotiation(body: schemas.NegotiationIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> Any:
    """Open an inquiry on a listed product with a first offer (pre-trade checks first)."""
    return cmd.run(
        lambda uow: _neg_out(
            uow.session, negotiation.open_negotiation(uow, caller, ctx.settings, body)
        ),
        body,
        status_code=201,
    )


@router.get(
    "/negotiations",
    response_model=list[schemas.NegotiationOut],
    openapi_extra=action("negotiation.read"),
)
def list_negotiations(
    caller: Caller,
    session: ReadSession,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    return [
        _neg_out(session, n)
        for n in negotiation.list_negotiations(session, caller, status, limit, offset)
    ]


@router.get(
    "/negotiations/{negotiation_id}",
    response_model=schemas.NegotiationOut,
    openapi_extra=action("negotiation.read"),
)
def get_negotiation(negotiation_id: str, caller: Caller, session: ReadSession) -> Any:
    return _neg_out(session, negotiation.get(session, caller, negotiation_id))


@router.post(
    "/negotiations/{negotiation_id}/offers",
    status_code=201,
    response_model=schemas.NegotiationOut,
    openapi_extra=action("negotiation.offer"),
)
def counter_offer(
    negotiation_id: str, body: schemas.Terms, caller: Caller, ctx: Ctx, cmd: Cmd
) -> Any:
    """A counter-offer: it supersedes the standing offer."""
    return cmd.run(
        lambda uow: _neg_out(
            uow.session, negotiation.counter(uow, caller, ctx.settings, negotiation_id, body)
        ),
        body,
        status_code=201,
    )


class AgreedOut(BaseModel):
    negotiation: schemas.NegotiationOut
    contract: schemas.ContractOut


@router.post(
    "/negotiations/{negotiation_id}/accept",
    response_model=AgreedOut,
    openapi_extra=action("negotiation.accept"),
)
def accept_offer(negotiation_id: str, caller: Caller, ctx: Ctx, cmd: Cmd) -> Any:
    """Accept the other side's standing offer: the contract is drafted for signing."""

    def run(uow: UnitOfWork) -> AgreedOut:
        n, c = negotiation.accept(uow, caller, ctx.settings, negotiation_id)
        return AgreedOut(negotiation=_neg_out(uow.session, n), contract=_out(uow.session, c))

    return cmd.run(run)


@router.post(
    "/negotiations/{negotiation_id}/withdraw",
    response_model=schemas.NegotiationOut,
    openapi_extra=action("negotiation.withdraw"),
)
def withdraw_negotiation(negotiation_id: str, caller: Caller, cmd: Cmd) -> Any:
    return cmd.run(
        lambda uow: _neg_out(uow.session, negotiation.withdraw(uow, caller, negotiation_id))
    )


# Contracts --------------------------------------------------------------------------------


@router.post(
    "/contracts",
    status_code=201,
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.create"),
)
def buy(body: schemas.ContractIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> Any:
    """Buy at the listing's terms (fixed, subscription, package, metered, free plans)."""
    return cmd.run(
        lambda uow: _out(uow.session, negotiation.buy(uow, caller, ctx.settings, body)),
        body,
        status_code=201,
    )


@router.get(
    "/contracts", response_model=list[schemas.ContractOut], openapi_extra=action("contract.read")
)
def list_contracts(
    caller: Caller,
    session: ReadSession,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    rows = contracts.list_contracts(session, caller, status, limit, offset)
    sigs = contracts.signatures(session, [c.id for c in rows])
    out = []
    for c in rows:
        o = schemas.ContractOut.model_validate(c)
        o.signatures = [schemas.SignatureOut.model_validate(s) for s in sigs[c.id]]
        out.append(o)
    return out


@router.get(
    "/contracts/{contract_id}",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.read"),
)
def get_contract(contract_id: str, caller: Caller, session: ReadSession) -> Any:
    return _out(session, contracts.get(session, caller, contract_id))


@router.get("/contracts/{contract_id}/document", openapi_extra=action("contract.read"))
def get_document(contract_id: str, caller: Caller, session: ReadSession) -> Response:
    """The exact bytes both parties sign (RFC 8785 canonical JSON)."""
    c = contracts.get(session, caller, contract_id)
    return Response(
        c.document.encode(),
        media_type="application/json",
        headers={"X-Document-SHA256": c.document_hash},
    )


@router.post(
    "/contracts/{contract_id}/sign",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.sign"),
)
def sign(contract_id: str, caller: Caller, ctx: Ctx, cmd: Cmd) -> Any:
    """Sign with the key the exchange holds for the organisation (custodial)."""
    return cmd.run(
        lambda uow: _out(
            uow.session, contracts.sign_custodial(uow, caller, ctx.custody_secret, contract_id)
        )
    )


@router.post(
    "/contracts/{contract_id}/signatures",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.sign"),
)
def add_signature(contract_id: str, body: schemas.SignatureIn, caller: Caller, cmd: Cmd) -> Any:
    """File a signature made client-side over GET …/document with a registered key."""
    return cmd.run(
        lambda uow: _out(
            uow.session, contracts.sign_with(uow, caller, contract_id, body.key_id, body.signature)
        ),
        body,
    )


def _money(name: str, fn: Any, summary: str) -> None:
    def route(contract_id: str, caller: Caller, cmd: Cmd) -> Any:
        return cmd.run(
            lambda uow: _out(uow.session, fn(uow, caller, contract_id)), require_key=True
        )

    route.__name__ = f"contract_{name}"
    route.__doc__ = summary
    router.post(
        f"/contracts/{{contract_id}}/{name}",
        response_model=schemas.ContractOut,
        openapi_extra=action(f"contract.{name}"),
    )(route)


_money("pay", trades.pay, "Pay the price into escrow (needs an Idempotency-Key).")
_money("accept", trades.accept, "Accept delivery: the escrow is released to the merchant.")


@router.post(
    "/contracts/{contract_id}/deliver",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.deliver"),
)
def deliver(contract_id: str, caller: Caller, cmd: Cmd) -> Any:
    """The merchant declares delivery; the buyer's acceptance window starts."""
    return cmd.run(lambda uow: _out(uow.session, trades.deliver(uow, caller, contract_id)))


@router.post(
    "/contracts/{contract_id}/cancel",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.cancel"),
)
def cancel(contract_id: str, body: schemas.OptionalReasonIn, caller: Caller, cmd: Cmd) -> Any:
    """Cancel before delivery; money in escrow is refunded (needs an Idempotency-Key)."""
    return cmd.run(
        lambda uow: _out(uow.session, trades.cancel(uow, caller, contract_id, body.reason)),
        body,
        require_key=True,
    )


@router.post(
    "/contracts/{contract_id}/dispute",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.dispute"),
)
def dispute(contract_id: str, body: schemas.ReasonIn, caller: Caller, cmd: Cmd) -> Any:
    """Dispute the trade: the escrow is frozen until the operator resolves it."""
    return cmd.run(
        lambda uow: _out(uow.session, trades.dispute(uow, caller, contract_id, body.reason)),
        body,
        require_key=True,
    )


@router.post(
    "/contracts/{contract_id}/resolve",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.resolve"),
)
def resolve(contract_id: str, body: schemas.ResolveIn, caller: Caller, cmd: Cmd) -> Any:
    """The operator splits a disputed escrow between merchant and buyer."""
    return cmd.run(
        lambda uow: _out(
            uow.session, trades.resolve(uow, caller, contract_id, body.to_merchant_fen, body.reason)
        ),
        body,
        require_key=True,
    )


@router.post(
    "/contracts/{contract_id}/terminate",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.terminate"),
)
def terminate(contract_id: str, body: schemas.ReasonIn, caller: Caller, cmd: Cmd) -> Any:
    return cmd.run(
        lambda uow: _out(uow.session, trades.terminate(uow, caller, contract_id, body.reason)),
        body,
        require_key=True,
    )


@router.post(
    "/contracts/{contract_id}/suspend",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.suspend"),
)
def suspend(contract_id: str, body: schemas.ReasonIn, caller: Caller, cmd: Cmd) -> Any:
    """Suspend (叫停) the contract: every delivery path refuses its next request."""
    return cmd.run(
        lambda uow: _out(uow.session, contracts.suspend(uow, caller, contract_id, body.reason)),
        body,
    )


@router.post(
    "/contracts/{contract_id}/reinstate",
    response_model=schemas.ContractOut,
    openapi_extra=action("contract.reinstate"),
)
def reinstate(contract_id: str, body: schemas.ReasonIn, caller: Caller, cmd: Cmd) -> Any:
    return cmd.run(
        lambda uow: _out(uow.session, contracts.reinstate(uow, caller, contract_id, body.reason)),
        body,
    )


@router.get("/contracts/{contract_id}/receipt", openapi_extra=action("contract.receipt"))
def receipt(contract_id: str, caller: Caller, ctx: Ctx) -> Any:
    """The trade filing (交易备案): the signed document, both signatures with their public
    keys, and the ledger receipt of the filing; ``databourse trade verify`` checks it all
    offline with the exchange's key."""
    with UnitOfWork(ctx.writes) as uow:
        out = contracts.receipt(uow, caller, ctx.log_key, contract_id)
        uow.commit()
    return out


# Usage and bills --------------------------------------------------------------------------


class UsageOut(BaseModel):
    stored: int


@router.post(
    "/contracts/{contract_id}/usage", response_model=UsageOut, openapi_extra=action("usage.record")
)
def record_usage(contract_id: str, body: schemas.UsageIn, caller: Caller, cmd: Cmd) -> Any:
    """Usage records of a contract, as a delivery path reports them; a record already
    received (same source and key) is not counted again."""

    def run(uow: UnitOfWork) -> UsageOut:
        authorize(caller, "usage.record")
        contracts.load(uow, contract_id)
        events = [
            usage.UsageEvent(contract_id, r.metric, r.quantity, r.at, body.source, r.key, r.outcome)
            for r in body.records
        ]
        return UsageOut(stored=usage.ingest(uow, events))

    return cmd.run(run, body)


@router.get("/contracts/{contract_id}/usage", openapi_extra=action("usage.read"))
def read_usage(contract_id: str, caller: Caller, session: ReadSession) -> Any:
    """Usage of the contract over its term, by metric."""
    c = contracts.get(session, caller, contract_id)
    contracts.authorize_on(caller, "usage.read", c)
    return usage.usage_summary(session, c.id, c.starts_at, c.ends_at)


class BillOut(BaseModel):
    id: str
    contract_id: str
    period_start: Any
    period_end: Any
    unit: str
    units: int
    amount_fen: int
    fee_fen: int
    commission_fen: int
    currency: str
    status: str
    due_at: Any

    model_config = {"from_attributes": True}


@router.get("/bills", response_model=list[BillOut], openapi_extra=action("bill.list"))
def list_bills(
    caller: Caller,
    session: ReadSession,
    contract_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Any:
    return billing.list_bills(session, caller, contract_id, limit, offset)


@router.post("/bills/{bill_id}/pay", response_model=BillOut, openapi_extra=action("bill.pay"))
def pay_bill(bill_id: str, caller: Caller, cmd: Cmd) -> Any:
    """Pay an invoice from the available balance (needs an Idempotency-Key)."""
    return cmd.run(
        lambda uow: BillOut.model_validate(billing.pay_bill(uow, caller, bill_id)), require_key=True
    )


@router.post(
    "/settlement/run", response_model=schemas.RunOut, openapi_extra=action("settlement.run")
)
def run_due(caller: Caller, ctx: Ctx) -> Any:
    """Run the scheduled work now: expiries, lapsed acceptance windows, billing, auctions."""
    authorize(caller, "settlement.run")
    r = scheduler.run_due(ctx.writes, ctx.reads, ctx.settings)
    return schemas.RunOut.model_validate(r, from_attributes=True)
