"""HTTP routes of settlement (under /api/v1): accounts and statements, deposits and
withdrawals, the fee schedule and tiers, agency contracts and commission payouts.

Commands that move money need an ``Idempotency-Key`` (``428 idempotency-key-required``
without one); a caller whose roles do not allow the command is refused first.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from databourse.api.context import AppContext
from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.auth.policy import Principal, authorize
from databourse.settlement import fees, rails, schemas, statements
from databourse.settlement.models import AgencyStatus, TransferStatus
from databourse.uow import UnitOfWork

router = APIRouter(tags=["settlement"])
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]
Currency = Annotated[str, Query(pattern="^[A-Z]{3}$")]


def _may(caller: Principal, name: str) -> None:
    """Refuse a caller the policy never allows before asking for an Idempotency-Key; the
    service checks again against the object acted on."""
    authorize(caller, name)


def _registry(ctx: AppContext) -> dict[str, rails.PaymentRail]:
    return rails.rails(ctx.settings)


# ---------------------------------------------------------------- accounts and statements


@router.get(
    "/accounts", response_model=list[schemas.AccountOut], openapi_extra=action("account.list")
)
def list_accounts(
    caller: Caller, session: ReadSession, org_id: Annotated[str | None, Query()] = None
) -> object:
    """The caller's organisation's accounts; staff name any (``exchange``: the exchange's)."""
    return statements.accounts(session, caller, org_id)


@router.get(
    "/statements", response_model=schemas.StatementOut, openapi_extra=action("statement.read")
)
def get_statement(
    caller: Caller,
    session: ReadSession,
    org_id: Annotated[str | None, Query()] = None,
    currency: Currency = "CNY",
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> object:
    """Postings to the accounts in ``[from, to)``, oldest first, each with the ledger entry
    of its journal (``GET /ledger/entries/{seq}/receipt`` proves it), and the balances at
    both ends of the window."""
    st = statements.statement(session, caller, org_id, currency, start, end, limit, offset)
    return schemas.StatementOut(
        org_id=st.owner,
        currency=st.currency,
        start=st.start,
        end=st.end,
        balances=[schemas.BalanceOut(**asdict(b)) for b in st.balances],
        lines=[schemas.LineOut(**asdict(line)) for line in st.lines],
        total=st.total,
        limit=limit,
        offset=offset,
    )


# ---------------------------------------------------------------- deposits and withdrawals


def _requested(t: object, instructions: dict[str, object]) -> schemas.RequestedOut:
    out = schemas.TransferOut.model_validate(t)
    return schemas.RequestedOut(**out.model_dump(), instructions=instructions)


@router.post(
    "/deposits",
    status_code=201,
    response_model=schemas.RequestedOut,
    openapi_extra=action("deposit.create"),
)
def request_deposit(body: schemas.DepositIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> object:
    """Announce a deposit into the organisation's available account; the answer says how
    to pay. The money counts once the operator confirms it arrived."""
    _may(caller, "deposit.create")

    def run(uow: UnitOfWork) -> schemas.RequestedOut:
        t, how = rails.request(
            uow,
            caller,
            _registry(ctx),
            rails.DEPOSIT,
            body.amount_fen,
            body.currency,
            body.rail,
            body.reference,
        )
        return _requested(t, how)

    return cmd.run(run, body, status_code=201, require_key=True)


@router.post(
    "/withdrawals",
    status_code=201,
    response_model=schemas.RequestedOut,
    openapi_extra=action("withdrawal.create"),
)
def request_withdrawal(body: schemas.WithdrawalIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> object:
    """An organisation administrator asks for money to be paid out to ``reference``; the
    amount leaves the available balance at once (``insufficient-funds`` if not covered)."""
    _may(caller, "withdrawal.create")

    def run(uow: UnitOfWork) -> schemas.RequestedOut:
        t, how = rails.request(
            uow,
            caller,
            _registry(ctx),
            rails.WITHDRAWAL,
            body.amount_fen,
            body.currency,
            body.rail,
            body.reference,
        )
        return _requested(t, how)

    return cmd.run(run, body, status_code=201, require_key=True)


def _add_decision_routes(direction: str) -> None:
    def confirm(
        transfer_id: str, body: schemas.ConfirmIn, caller: Caller, ctx: Ctx, cmd: Cmd
    ) -> object:
        _may(caller, f"{direction}.confirm")
        return cmd.run(
            lambda uow: schemas.TransferOut.model_validate(
                rails.decide(
                    uow,
                    caller,
                    _registry(ctx),
                    transfer_id,
                    "confirm",
                    direction=direction,
                    rail_ref=body.rail_ref,
                )
            ),
            body,
            require_key=True,
        )

    def reject(
        transfer_id: str, body: schemas.RejectIn, caller: Caller, ctx: Ctx, cmd: Cmd
    ) -> object:
        _may(caller, f"{direction}.reject")
        return cmd.run(
            lambda uow: schemas.TransferOut.model_validate(
                rails.decide(
                    uow,
                    caller,
                    _registry(ctx),
                    transfer_id,
                    "reject",
                    direction=direction,
                    reason=body.reason,
                )
            ),
            body,
            require_key=True,
        )

    confirm.__name__, reject.__name__ = f"confirm_{direction}", f"reject_{direction}"
    confirm.__doc__ = (
        f"The operator confirms the {direction} with the rail's reference (for a bank "
        "transfer, the bank's transaction serial number)."
    )
    reject.__doc__ = f"The operator rejects the {direction}, with a reason."
    for step, handler in (("confirm", confirm), ("reject", reject)):
        router.add_api_route(
            f"/{direction}s/{{transfer_id}}/{step}",
            handler,
            methods=["POST"],
            response_model=schemas.TransferOut,
            openapi_extra=action(f"{direction}.{step}"),
        )


for _direction in rails.DIRECTIONS:
    _add_decision_routes(_direction)


@router.get(
    "/transfers", response_model=list[schemas.TransferOut], openapi_extra=action("transfer.list")
)
def list_transfers(
    caller: Caller,
    session: ReadSession,
    org_id: Annotated[str | None, Query()] = None,
    direction: Annotated[str | None, Query(pattern="^(deposit|withdrawal)$")] = None,
    status: Annotated[TransferStatus | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> object:
    """The organisation's deposits and withdrawals, newest first (staff: anyone's)."""
    return rails.list_transfers(session, caller, org_id, direction, status, limit, offset)


# ---------------------------------------------------------------- fee schedule and tiers


@router.get(
    "/fee-schedule", response_model=schemas.FeeScheduleOut, openapi_extra=action("fee.read")
)
def fee_schedule(caller: Caller, session: ReadSession) -> object:
    """The operator's fee rules and the fee in force for every product kind and tier."""
    rules, effective = fees.schedule(session, caller)
    return schemas.FeeScheduleOut(
        tiers=list(fees.TIERS),
        rules=[schemas.FeeRuleOut.model_validate(r) for r in rules],
        effective=[schemas.EffectiveFeeOut(**asdict(e)) for e in effective],
    )


@router.put(
    "/fee-schedule/{product_kind}/{tier}",
    response_model=schemas.FeeRuleOut,
    openapi_extra=action("fee.update"),
)
def put_fee_rule(
    product_kind: str, tier: str, body: schemas.FeeRuleIn, caller: Caller, cmd: Cmd
) -> object:
    """Set the fee for a product kind (``*``: every kind without its own rule) and tier."""
    return cmd.run(
        lambda uow: schemas.FeeRuleOut.model_validate(
            fees.put_fee_rule(uow, caller, product_kind, tier, body.rate_bp, body.min_fen)
        ),
        body,
    )


@router.put(
    "/orgs/{org_id}/tier", response_model=schemas.TierOut, openapi_extra=action("tier.update")
)
def put_tier(org_id: str, body: schemas.TierIn, caller: Caller, cmd: Cmd) -> object:
    """Put an organisation in a tier of the fee schedule."""
    return cmd.run(
        lambda uow: schemas.TierOut.model_validate(fees.set_tier(uow, caller, org_id, body.tier)),
        body,
    )


# ---------------------------------------------------------------- agency and commissions


@router.post(
    "/agency-contracts",
    status_code=201,
    response_model=schemas.AgencyOut,
    openapi_extra=action("agency.create"),
)
def submit_agency(body: schemas.AgencyIn, caller: Caller, cmd: Cmd) -> object:
    """An agent files its signed contract with a merchant (by the document's SHA-256)."""
    return cmd.run(
        lambda uow: schemas.AgencyOut.model_validate(
            fees.submit_agency(
                uow,
                caller,
                body.principal_org_id,
                body.product_id,
                body.commission_bp,
                body.not_after,
                body.document_hash,
            )
        ),
        body,
        status_code=201,
    )


def _add_agency_route(step: str) -> None:
    def handler(agency_id: str, body: schemas.DecisionIn, caller: Caller, cmd: Cmd) -> object:
        return cmd.run(
            lambda uow: schemas.AgencyOut.model_validate(
                fees.decide_agency(uow, caller, agency_id, step, body.reason)
            ),
            body,
        )

    handler.__name__ = f"{step}_agency"
    handler.__doc__ = f"The operator {step}s an agency contract" + (
        "." if step == "certify" else ", with a reason."
    )
    router.add_api_route(
        f"/agency-contracts/{{agency_id}}/{step}",
        handler,
        methods=["POST"],
        response_model=schemas.AgencyOut,
        openapi_extra=action(f"agency.{step}"),
    )


for _step in fees.AGENCY_STEPS:
    _add_agency_route(_step)


@router.get(
    "/agency-contracts", response_model=list[schemas.AgencyOut], openapi_extra=action("agency.list")
)
def list_agencies(
    caller: Caller,
    session: ReadSession,
    status: Annotated[AgencyStatus | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> object:
    """An agent's contracts, a merchant's as principal; every contract for staff."""
    return fees.list_agencies(session, caller, status, limit, offset)


@router.post(
    "/commissions/payout",
    response_model=schemas.PayoutOut,
    openapi_extra=action("commission.payout"),
)
def payout(body: schemas.PayoutIn, caller: Caller, cmd: Cmd) -> object:
    """Pay agents the commissions they are owed (one movement per agent and currency)."""
    _may(caller, "commission.payout")
    return cmd.run(
        lambda uow: schemas.PayoutOut(
            journal_ids=fees.payout_commissions(uow, caller, body.agent_org_id)
        ),
        body,
        require_key=True,
    )
