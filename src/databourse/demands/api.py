"""HTTP routes of the demands domain (under /api/v1): demands, matches and notices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from databourse.api.context import AppContext
from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.demands import matching, schemas, services
from databourse.demands.models import DemandStatus
from databourse.uow import UnitOfWork

router = APIRouter(tags=["demands"])


class PostedOut(BaseModel):
    demand: schemas.DemandOut
    matches: list[schemas.MatchOut]


def _match(m: matching.Match, title: str = "") -> schemas.MatchOut:
    return schemas.MatchOut(
        demand_id=m.demand_id,
        product_id=m.product_id,
        score=round(m.score, 4),
        reasons=[
            schemas.ReasonOut(factor=r.factor, score=round(r.score, 4), detail=r.detail)
            for r in m.reasons
        ],
        title=title,
    )


def _title(ctx: AppContext, product_id: str) -> str:
    listing = ctx.catalog.facts.get(product_id)
    return listing.title if listing else ""


@router.post(
    "/demands", status_code=201, response_model=PostedOut, openapi_extra=action("demand.create")
)
def post_demand(body: schemas.DemandIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> object:
    """Post a demand; the best-matching listed products come back and both sides are told."""

    def run(uow: UnitOfWork) -> PostedOut:
        demand, matches = services.post(uow, caller, ctx.catalog, body)
        return PostedOut(
            demand=schemas.DemandOut.model_validate(demand),
            matches=[_match(m, _title(ctx, m.product_id)) for m in matches],
        )

    return cmd.run(run, body, status_code=201)


@router.get("/demands", response_model=list[schemas.DemandOut], openapi_extra=action("demand.list"))
def list_demands(
    caller: Caller,
    session: ReadSession,
    status: Annotated[DemandStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    """A buyer's own demands (every demand for the exchange's staff)."""
    return services.list_demands(session, caller, status, limit, offset)


@router.get(
    "/demand-board", response_model=list[schemas.DemandOut], openapi_extra=action("demand.browse")
)
def demand_board(
    caller: Caller,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    """The demand board (需求大厅): every open demand, for merchants to answer."""
    return services.board(session, caller, limit, offset)


@router.get(
    "/demands/{demand_id}", response_model=schemas.DemandOut, openapi_extra=action("demand.read")
)
def get_demand(demand_id: str, caller: Caller, session: ReadSession) -> object:
    return services.get(session, caller, demand_id)


def _add_step_route(step: str) -> None:
    def handler(demand_id: str, body: schemas.DecisionIn, caller: Caller, cmd: Cmd) -> object:
        return cmd.run(
            lambda uow: schemas.DemandOut.model_validate(
                services.transition(uow, caller, demand_id, step)
            ),
            body,
        )

    handler.__name__ = f"{step}_demand"
    handler.__doc__ = f"The buyer {'closes' if step == 'close' else 'withdraws'} its demand."
    router.add_api_route(
        f"/demands/{{demand_id}}/{step}",
        handler,
        methods=["POST"],
        response_model=schemas.DemandOut,
        openapi_extra=action(f"demand.{step}"),
    )


for _step in ("close", "withdraw"):
    _add_step_route(_step)


@router.get(
    "/demands/{demand_id}/matches",
    response_model=list[schemas.MatchOut],
    openapi_extra=action("demand.matches"),
)
def demand_matches(
    demand_id: str,
    caller: Caller,
    ctx: Ctx,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> object:
    """Listed products ranked for the demand, each with the reasons for the match."""
    matches = services.matches_for_demand(session, caller, ctx.catalog, demand_id, limit)
    return [_match(m, _title(ctx, m.product_id)) for m in matches]


@router.get(
    "/products/{product_id}/matches",
    response_model=list[schemas.MatchOut],
    openapi_extra=action("product.matches"),
)
def product_matches(
    product_id: str,
    caller: Caller,
    ctx: Ctx,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> object:
    """Open demands ranked for a merchant's listed product."""
    from databourse.demands.models import Demand

    matches = services.matches_for_product(session, caller, ctx.catalog, product_id, limit)
    titles = {
        d.id: d.title for d in (session.get(Demand, m.demand_id) for m in matches) if d is not None
    }
    return [_match(m, titles.get(m.demand_id, "")) for m in matches]


@router.get("/notices", response_model=list[schemas.NoticeOut], openapi_extra=action("notice.list"))
def list_notices(
    caller: Caller,
    session: ReadSession,
    unread: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    """Match notices for the caller's organisation, newest first."""
    return services.notices(session, caller, unread, limit, offset)


@router.post(
    "/notices/{notice_id}/read",
    response_model=schemas.NoticeOut,
    openapi_extra=action("notice.read"),
)
def read_notice(notice_id: int, caller: Caller, cmd: Cmd) -> object:
    return cmd.run(
        lambda uow: schemas.NoticeOut.model_validate(services.mark_read(uow, caller, notice_id))
    )
