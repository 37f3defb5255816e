"""``databourse demand …``: buyers' demands (需求), the demand board and matching (撮合).

Buyers post, close and withdraw their demands with ``--as EMAIL``; the exchange sees every
demand and its matches. Matching ranks listed products from a search index built in this
process, as each server process builds its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from databourse.assets.cli import (
    As,
    Body,
    Member,
    console,
    exchange,
    id_table,
    load_body,
    read,
    run,
)

if TYPE_CHECKING:
    from databourse.demands.matching import Match
    from databourse.demands.models import Demand

demand_app = typer.Typer(help="Demands, the demand board and matches.", no_args_is_help=True)
Limit = Annotated[int, typer.Option(min=1, max=500)]


def _demands_table(rows: Iterable[Demand], title: str | None = None) -> Table:
    from databourse.catalog.pricing import format_money

    table = id_table("title", "purpose", "budget", "status", title=title)
    for d in rows:
        budget = "" if d.budget_max_fen is None else format_money(d.budget_max_fen, d.currency)
        table.add_row(d.id, escape(d.title), d.purpose, budget, d.status)
    return table


def _matches_table(matches: Sequence[Match], titles: dict[str, str]) -> Table:
    """Ranked products with the reasons for each match, strongest factor first."""
    n = len(matches)
    table = Table("#", title=f"{n} match{'' if n == 1 else 'es'}")
    table.add_column("product", no_wrap=True, min_width=24)
    for name in ("title", "score", "why"):
        table.add_column(name)
    for rank, m in enumerate(matches, 1):
        why = "\n".join(
            f"{r.factor} {r.score:.2f}: {escape(r.detail)}"
            for r in sorted(m.reasons, key=lambda r: -r.score)
        )
        table.add_row(
            str(rank), m.product_id, escape(titles.get(m.product_id, "")), f"{m.score:.2f}", why
        )
    return table


@demand_app.command("post")
def demand_post(email: Member, file: Body) -> None:
    """Post a demand as a buyer and see the listed products that match it best."""
    from databourse.demands import schemas, services

    data = load_body(file, schemas.DemandIn)
    with exchange() as ctx:
        demand, matches = run(ctx, email, lambda uow, p: services.post(uow, p, ctx.catalog, data))
        titles = {pid: f.title for pid, f in ctx.catalog.facts.items()}
    console.print(f"posted demand {demand.id} ([bold]{demand.status}[/bold])")
    console.print(_matches_table(matches, titles))


@demand_app.command("list")
def demand_list(
    status: Annotated[str | None, typer.Option()] = None, limit: Limit = 100, email: As = None
) -> None:
    """Demands, newest first: a buyer's own with --as, every one for the exchange."""
    from databourse.demands import services

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: services.list_demands(s, p, status, limit, 0))
    console.print(_demands_table(rows))


@demand_app.command("board")
def demand_board(limit: Limit = 100, email: As = None) -> None:
    """The demand board (需求大厅): open demands, newest first, for merchants to answer."""
    from databourse.demands import services

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: services.board(s, p, limit, 0))
    console.print(_demands_table(rows, title="demand board"))


@demand_app.command("matches")
def demand_matches(
    demand_id: str,
    limit: Annotated[int, typer.Option(min=1, max=50)] = 10,
    email: As = None,
) -> None:
    """Listed products ranked for a demand, each with the reasons for the match."""
    from databourse.demands import services

    with exchange() as ctx:
        matches = read(
            ctx,
            email,
            lambda s, p: services.matches_for_demand(s, p, ctx.catalog, demand_id, limit),
        )
        titles = {pid: f.title for pid, f in ctx.catalog.facts.items()}
    console.print(_matches_table(matches, titles))


def _step(demand_id: str, step: str, email: str) -> None:
    from databourse.demands import services

    with exchange() as ctx:
        d = run(ctx, email, lambda uow, p: services.transition(uow, p, demand_id, step))
    console.print(f"{d.id} is now [bold]{d.status}[/bold]")


@demand_app.command("close")
def demand_close(demand_id: str, email: Member) -> None:
    """The buyer closes its demand: it was satisfied."""
    _step(demand_id, "close", email)


@demand_app.command("withdraw")
def demand_withdraw(demand_id: str, email: Member) -> None:
    """The buyer withdraws its demand."""
    _step(demand_id, "withdraw", email)


@demand_app.command("notices")
def demand_notices(
    email: Member,
    unread: Annotated[bool, typer.Option("--unread", help="Only notices not yet read.")] = False,
    limit: Limit = 100,
) -> None:
    """Match notices for the user's organisation, newest first."""
    from databourse.demands import services

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: services.notices(s, p, unread, limit, 0))
    table = Table("#", "at", "side", title="match notices")
    table.add_column("demand / product", no_wrap=True, min_width=24)
    table.add_column("score")
    table.add_column("unread")
    for n in rows:
        table.add_row(
            str(n.id),
            n.created_at.strftime("%Y-%m-%d %H:%M"),
            n.side,
            f"{n.demand_id}\n{n.product_id}",
            f"{n.score:.2f}",
            "•" if n.read_at is None else "",
        )
    console.print(table)
