"""HTTP routes of auctions (under /api/v1): sealed-bid second-price auctions of exclusive
licences — open, bid (a commitment), reveal, close, and who may see which bids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.market import bidding
from databourse.market.models import Auction, AuctionStatus
from databourse.market.schemas import AuctionIn, AuctionOut, BidIn, BidOut, RevealIn
from databourse.uow import UnitOfWork

router = APIRouter(tags=["auctions"])


def _out(session: Session, a: Auction, bids: int | None = None) -> AuctionOut:
    """The auction as shown: its phase by the clock, and how many bids it has."""
    if bids is None:
        bids = bidding.bid_counts(session, [a.id])[a.id]
    return AuctionOut.model_validate(a).model_copy(
        update={"status": bidding.phase(a), "bids": bids}
    )


@router.post(
    "/auctions", status_code=201, response_model=AuctionOut, openapi_extra=action("auction.open")
)
def open_auction(body: AuctionIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> object:
    """The merchant auctions an exclusive licence of a listed dataset under an auction plan."""

    def run(uow: UnitOfWork) -> AuctionOut:
        a = bidding.open_auction(uow, caller, ctx.settings, body)
        return _out(uow.session, a, 0)

    return cmd.run(run, body, status_code=201)


@router.get("/auctions", response_model=list[AuctionOut], openapi_extra=action("auction.read"))
def list_auctions(
    caller: Caller,
    session: ReadSession,
    product_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[AuctionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    """Auctions, newest first; ``status`` filters by phase."""
    found = bidding.list_auctions(session, caller, product_id, status, limit, offset)
    counts = bidding.bid_counts(session, [a.id for a in found])
    return [_out(session, a, counts[a.id]) for a in found]


@router.get(
    "/auctions/{auction_id}", response_model=AuctionOut, openapi_extra=action("auction.read")
)
def get_auction(auction_id: str, caller: Caller, session: ReadSession) -> object:
    return _out(session, bidding.get_auction(session, caller, auction_id))


@router.post(
    "/auctions/{auction_id}/bids",
    status_code=201,
    response_model=BidOut,
    openapi_extra=action("auction.bid"),
)
def post_bid(auction_id: str, body: BidIn, caller: Caller, cmd: Cmd) -> object:
    """File a sealed bid: ``commitment`` is the hex SHA-256 of the canonical JSON of
    ``{"auction", "bidder", "amount_fen", "nonce"}``. Bidding again replaces it."""
    return cmd.run(
        lambda uow: BidOut.model_validate(bidding.bid(uow, caller, auction_id, body)),
        body,
        status_code=201,
    )


@router.post(
    "/auctions/{auction_id}/reveal", response_model=BidOut, openapi_extra=action("auction.reveal")
)
def reveal_bid(auction_id: str, body: RevealIn, caller: Caller, cmd: Cmd) -> object:
    """After bidding closes: the amount and nonce that open the bidder's commitment."""
    return cmd.run(
        lambda uow: BidOut.model_validate(bidding.reveal(uow, caller, auction_id, body)), body
    )


@router.post(
    "/auctions/{auction_id}/close", response_model=AuctionOut, openapi_extra=action("auction.close")
)
def close_auction(auction_id: str, caller: Caller, ctx: Ctx, cmd: Cmd) -> object:
    """Decide the auction: the winner's contract is drafted at the second price."""

    def run(uow: UnitOfWork) -> AuctionOut:
        return _out(uow.session, bidding.close(uow, caller, ctx.settings, auction_id))

    return cmd.run(run)


@router.get(
    "/auctions/{auction_id}/bids", response_model=list[BidOut], openapi_extra=action("auction.read")
)
def list_bids(auction_id: str, caller: Caller, session: ReadSession) -> object:
    """Every bid for the merchant and the exchange's staff; a bidder's own for a bidder."""
    return [BidOut.model_validate(b) for b in bidding.bids_of(session, caller, auction_id)]
