"""``databourse auction …``: sealed-bid second-price auctions of exclusive licences.

A bid is sealed here, on the bidder's machine: ``auction bid`` draws a random nonce,
files only the commitment and keeps the amount and nonce in a local file (mode 0600)
that ``auction reveal`` reads back once bidding has closed.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from databourse.assets.cli import As, Member, console, exchange, id_table, read, run

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from databourse.auth.policy import Principal
    from databourse.market.models import Auction
    from databourse.uow import UnitOfWork

auction_app = typer.Typer(help="Sealed-bid second-price auctions.", no_args_is_help=True)
SealFile = Annotated[
    Path, typer.Option("--seal", help="Where the bid's amount and nonce are kept.")
]


def _line(a: Auction) -> str:
    price = f", price {a.price_fen} fen" if a.price_fen is not None else ""
    contract = f", contract {a.contract_id}" if a.contract_id else ""
    return f"{a.id}: {a.status}{price}{contract}"


@auction_app.command("open")
def auction_open(
    product_id: str,
    plan: Annotated[str, typer.Option(help="The listing's auction plan.")],
    term: Annotated[int, typer.Option(help="Term of the licence in days.")],
    email: Member,
) -> None:
    """The merchant opens an auction of an exclusive licence to a listed dataset."""
    from databourse.market import bidding, schemas

    data = schemas.AuctionIn(product_id=product_id, plan=plan, term_days=term)
    with exchange() as ctx:
        line = run(
            ctx, email, lambda uow, p: _line(bidding.open_auction(uow, p, ctx.settings, data))
        )
    console.print(line)


@auction_app.command("list")
def auction_list(product: Annotated[str | None, typer.Option()] = None, email: As = None) -> None:
    """Auctions, with their phase and price."""
    from databourse.market import bidding

    table = id_table("product", "reserve", "bids close", "reveals close", "status", "price")
    with exchange() as ctx:

        def rows(session: Session, p: Principal) -> None:
            for a in bidding.list_auctions(session, p, product_id=product):
                table.add_row(
                    a.id,
                    a.product_id,
                    str(a.reserve_fen),
                    a.bids_close_at.isoformat(),
                    a.reveals_close_at.isoformat(),
                    a.status,
                    "" if a.price_fen is None else str(a.price_fen),
                )

        read(ctx, email, rows)
    console.print(table)


@auction_app.command("bid")
def auction_bid(
    auction_id: str,
    amount: Annotated[int, typer.Option(metavar="FEN", help="Your bid; it stays sealed.")],
    purpose: Annotated[str, typer.Option(help="What the data is for.")],
    seal: SealFile,
    email: Member,
) -> None:
    """File a sealed bid: only its SHA-256 commitment leaves this machine."""
    from databourse.market import auction, bidding, schemas

    nonce = secrets.token_hex(32)
    with exchange() as ctx:

        def commit(uow: UnitOfWork, p: Principal) -> str:
            digest = auction.commitment(auction_id, p.org_id, amount, nonce)
            bidding.bid(
                uow,
                p,
                auction_id,
                schemas.BidIn.model_validate(
                    {"purpose": purpose, "commitment": digest}, strict=False
                ),
            )
            return digest

        digest = run(ctx, email, commit)
    fd = os.open(seal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auction_id": auction_id, "amount_fen": amount, "nonce": nonce}, f)
    console.print(f"sealed bid filed: commitment {digest}; keep {seal} to reveal it")


@auction_app.command("reveal")
def auction_reveal(seal: SealFile, email: Member) -> None:
    """Open the sealed bid kept in the seal file, once bidding has closed."""
    from databourse.market import bidding, schemas

    kept = json.loads(seal.read_text())
    data = schemas.RevealIn(amount_fen=kept["amount_fen"], nonce=kept["nonce"])
    with exchange() as ctx:
        run(ctx, email, lambda uow, p: bidding.reveal(uow, p, kept["auction_id"], data).id)
    console.print(f"revealed {kept['amount_fen']} fen in {kept['auction_id']}")


@auction_app.command("close")
def auction_close(auction_id: str, email: As = None) -> None:
    """Decide the auction: the winner's contract is drafted at the second price."""
    from databourse.market import bidding

    with exchange() as ctx:
        line = run(
            ctx, email, lambda uow, p: _line(bidding.close(uow, p, ctx.settings, auction_id))
        )
    console.print(line)
