"""``databourse product …`` and ``databourse catalog …``: listing review, search and DCAT.

The exchange reviews and polices listings (approve, reject, suspend, reinstate); members
draft and submit their own products with ``--as EMAIL``. Search runs on an index built in
this process from the database, as each server process builds its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from databourse.assets.cli import (
    As,
    Body,
    Member,
    Output,
    Reason,
    console,
    emit_json,
    err,
    exchange,
    id_table,
    load_body,
    pairs_table,
    read,
    run,
)
from databourse.catalog.vocab import ProductKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from databourse.auth.policy import Principal
    from databourse.catalog.models import Product
    from databourse.catalog.schemas import ProductOut

product_app = typer.Typer(help="Data products and their listing review.", no_args_is_help=True)
catalog_app = typer.Typer(help="The catalog of listed products.", no_args_is_help=True)
Required = Annotated[str, typer.Option(help="Why; recorded with the decision.")]


def price(product: Product | ProductOut) -> str:
    """The product's price range in yuan (prices are kept in integer fen)."""
    from databourse.catalog.pricing import format_money

    low = format_money(product.min_price_fen, product.currency)
    if product.max_price_fen == product.min_price_fen:
        return low
    return f"{low}–{format_money(product.max_price_fen, product.currency)}"


@product_app.command("create")
def product_create(email: Member, file: Body) -> None:
    """Draft a product (dataset, API or compute) from the user's registered assets."""
    from databourse.catalog import schemas, services

    data = load_body(file, schemas.ProductIn)
    with exchange() as ctx:
        product = run(ctx, email, lambda uow, p: services.create(uow, p, data))
    console.print(f"created product {product.id} ([bold]{product.status}[/bold]), {price(product)}")


@product_app.command("list")
def product_list(
    org_id: Annotated[str | None, typer.Option("--org")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    email: As = None,
) -> None:
    """List products in every state, optionally of one organisation or in one state."""
    from databourse.catalog import services

    with exchange() as ctx:
        rows = read(ctx, email, lambda s, p: services.list_products(s, p, org_id, status, limit, 0))
    table = id_table("title", "kind", "status", "price")
    for p in rows:
        table.add_row(p.id, escape(p.title), p.kind, p.status, price(p))
    console.print(table)


@product_app.command("show")
def product_show(product_id: str, email: As = None) -> None:
    """A product: its description, assets, terms and review state, and its masked sample."""
    from pydantic import TypeAdapter

    from databourse.catalog import services
    from databourse.catalog.pricing import PricingPlan, plan_summary

    with exchange() as ctx:
        out = read(ctx, email, lambda s, p: services.out(s, services.get(s, p, product_id)))
    d = out.description
    plans = "; ".join(
        plan_summary(p) for p in TypeAdapter(list[PricingPlan]).validate_python(out.plans)
    )
    console.print(
        pairs_table(
            [
                ("id", out.id),
                ("merchant", out.org_id),
                ("title", out.title),
                ("kind", out.kind),
                ("content", d.get("content")),
                ("fields", ", ".join(f["name"] for f in d.get("fields", []))),
                ("industry / category", f"{out.industry} / {out.category}"),
                ("tags", ", ".join(out.tags)),
                ("assets", ", ".join(out.asset_ids)),
                ("price", f"{price(out)}: {plans}"),
                ("status", f"{out.status} (version {out.version})"),
                ("reviewed by", out.reviewed_by),
                ("decision reason", out.decision_reason),
            ]
        )
    )
    sample = out.sample or {}
    if sample.get("rows"):
        table = Table(*[escape(c) for c in sample["columns"]], title="sample (masked)")
        for row in sample["rows"]:
            table.add_row(*[escape("" if v is None else str(v)) for v in row])
        console.print(table)


@product_app.command("checklist")
def product_checklist(product_id: str, email: As = None) -> None:
    """The listing review's checklist as it stands now (the merchant's preview)."""
    from databourse.auth.policy import authorize
    from databourse.catalog import services

    def checks(s: Session, p: Principal) -> list[dict[str, Any]]:
        product = services.get(s, p, product_id)
        authorize(p, "product.checklist", product.org_id)
        return [c.as_dict() for c in services.checklist(s, product)]

    with exchange() as ctx:
        items = read(ctx, email, checks)
    table = Table("", "item", "detail", title=f"listing checklist of {product_id}")
    for c in items:
        mark = "[green]✓[/green]" if c["passed"] else "[red]✗[/red]"
        table.add_row(mark, str(c["item"]), escape(str(c["detail"])))
    console.print(table)
    failed = sum(1 for c in items if not c["passed"])
    console.print(f"{len(items) - failed} of {len(items)} checks pass")


def _step(product_id: str, step: str, email: str | None, reason: str | None) -> None:
    from databourse.catalog import services

    with exchange() as ctx:
        product = run(
            ctx, email, lambda uow, p: services.transition(uow, p, product_id, step, reason)
        )
    console.print(f"{product.id} is now [bold]{product.status}[/bold]")


@product_app.command("submit")
def product_submit(product_id: str, email: Member) -> None:
    """The merchant submits its product for the listing review."""
    _step(product_id, "submit", email, None)


@product_app.command("approve")
def product_approve(product_id: str, reason: Reason = None, email: As = None) -> None:
    """List a product whose checklist passes: buyers find it at once."""
    _step(product_id, "approve", email, reason)


@product_app.command("reject")
def product_reject(product_id: str, reason: Required, email: As = None) -> None:
    """Send a product in review back to its merchant."""
    _step(product_id, "reject", email, reason)


@product_app.command("delist")
def product_delist(product_id: str, reason: Reason = None, email: As = None) -> None:
    """Take a listed product off the catalog (its merchant may, and the exchange)."""
    _step(product_id, "delist", email, reason)


@product_app.command("suspend")
def product_suspend(product_id: str, reason: Required, email: As = None) -> None:
    """Suspend a product at once (叫停): it leaves search and matching."""
    _step(product_id, "suspend", email, reason)


@product_app.command("reinstate")
def product_reinstate(product_id: str, reason: Required, email: As = None) -> None:
    """Lift a suspension once the checklist passes again."""
    _step(product_id, "reinstate", email, reason)


@product_app.command("policy")
def product_policy(product_id: str, output: Output = None, email: As = None) -> None:
    """The product's default usage policy as an ODRL 2.2 offer (JSON-LD)."""
    from databourse.catalog import services

    with exchange() as ctx:
        product = read(ctx, email, lambda s, p: services.get(s, p, product_id))
        base = ctx.settings.public_url.rstrip("/") + "/api/v1"
        doc = services.odrl_offer(base, product.id, product.org_id, product.policy)
    emit_json(doc, output)


@catalog_app.command("search")
def catalog_search(
    text: Annotated[str, typer.Argument(help="Words in Chinese or English")] = "",
    kind: Annotated[list[ProductKind] | None, typer.Option(help="dataset, api or compute")] = None,
    industry: Annotated[list[str] | None, typer.Option()] = None,
    sort: Annotated[str, typer.Option(help="relevance, newest, price_asc, price_desc, title")] = (
        "relevance"
    ),
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
) -> None:
    """Search the listed products, with the facets of the whole result."""
    from databourse.catalog.pricing import format_money
    from databourse.catalog.search import SearchQuery

    query = SearchQuery(
        text=text,
        kinds=tuple(str(k) for k in kind or ()),
        industries=tuple(industry or ()),
        sort=sort,
        limit=limit,
    )
    with exchange() as ctx, ctx.reads() as session:
        result = ctx.catalog.search(session, query)
        facts = ctx.catalog.facts
    table = id_table("title", "kind", "merchant", "price", "score", title=f"{result.total} found")
    for h in result.hits:
        f = facts.get(h.id)
        if f is not None:
            table.add_row(
                f.id,
                escape(f.title),
                f.kind,
                escape(f.merchant_name),
                format_money(f.min_price_fen, f.currency),
                f"{h.score:.2f}",
            )
    console.print(table)
    merchants = {f.org_id: f.merchant_name for f in facts.values()}
    for name, counts in result.facets.items():
        label = merchants if name == "merchant" else {}
        shown = ", ".join(f"{escape(label.get(v, v))} {n}" for v, n in counts.items() if n)
        if shown:
            console.print(f"[bold]{name}[/bold]: {shown}")


@catalog_app.command("reindex")
def catalog_reindex() -> None:
    """Rebuild the search index from the database: a check that it can be rebuilt.

    Each server process keeps its own index and builds it on first use; this builds one
    here and reports how long it took, the text analyser's first load (about a second)
    included.
    """
    with exchange() as ctx, ctx.reads() as session, err.status("rebuilding the index"):
        start = time.perf_counter()
        count = ctx.catalog.rebuild(session)
        took = time.perf_counter() - start
    console.print(f"{count} listings indexed in {took * 1000:.0f} ms")


@catalog_app.command("dcat")
def catalog_dcat(output: Output = None) -> None:
    """Every listed product as W3C DCAT 3 (JSON-LD), each with its ODRL offer."""
    from databourse.catalog import services

    with exchange() as ctx, ctx.reads() as session:
        ctx.catalog.refresh(session)
        doc = services.dcat_document(
            ctx.settings.public_url, ctx.settings.exchange_name, list(ctx.catalog.facts.values())
        )
    emit_json(doc, output)
