"""HTTP routes of the catalog domain (under /api/v1): products, listing review, search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.auth.policy import authorize
from databourse.catalog import schemas, services
from databourse.catalog.models import ProductStatus
from databourse.catalog.search import SearchQuery
from databourse.catalog.vocab import ProductKind
from databourse.uow import UnitOfWork

router = APIRouter(tags=["catalog"])
JSONLD = "application/ld+json"


@router.post(
    "/products",
    status_code=201,
    response_model=schemas.ProductOut,
    openapi_extra=action("product.create"),
)
def create_product(body: schemas.ProductIn, caller: Caller, cmd: Cmd) -> object:
    """Draft a product (dataset, API or compute) from the merchant's registered assets."""

    def run(uow: UnitOfWork) -> schemas.ProductOut:
        return services.out(uow.session, services.create(uow, caller, body))

    return cmd.run(run, body, status_code=201)


@router.get(
    "/products", response_model=list[schemas.ProductOut], openapi_extra=action("product.list")
)
def list_products(
    caller: Caller,
    session: ReadSession,
    org_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[ProductStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> object:
    """The merchant's own products in every state (all products for the exchange's staff)."""
    rows = services.list_products(session, caller, org_id, status, limit, offset)
    return services.outs(session, rows)


@router.get(
    "/products/{product_id}",
    response_model=schemas.ProductOut,
    openapi_extra=action("product.read"),
)
def get_product(product_id: str, caller: Caller, session: ReadSession) -> object:
    return services.out(session, services.get(session, caller, product_id))


@router.patch(
    "/products/{product_id}",
    response_model=schemas.ProductOut,
    openapi_extra=action("product.update"),
)
def update_product(product_id: str, body: schemas.ProductPatch, caller: Caller, cmd: Cmd) -> object:
    return cmd.run(
        lambda uow: services.out(uow.session, services.update(uow, caller, product_id, body)),
        body,
    )


def _add_step_route(step: str) -> None:
    def handler(product_id: str, body: schemas.DecisionIn, caller: Caller, cmd: Cmd) -> object:
        return cmd.run(
            lambda uow: services.out(
                uow.session, services.transition(uow, caller, product_id, step, body.reason)
            ),
            body,
        )

    handler.__name__ = f"{step}_product"
    handler.__doc__ = f"Listing workflow: {step}."
    router.add_api_route(
        f"/products/{{product_id}}/{step}",
        handler,
        methods=["POST"],
        response_model=schemas.ProductOut,
        openapi_extra=action(f"product.{step}"),
    )


for _step in ("submit", "approve", "reject", "delist", "suspend", "reinstate"):
    _add_step_route(_step)


@router.get(
    "/products/{product_id}/checklist",
    response_model=list[schemas.CheckOut],
    openapi_extra=action("product.checklist"),
)
def product_checklist(product_id: str, caller: Caller, session: ReadSession) -> object:
    """The listing review's checklist as it stands now (a preview for the merchant)."""
    product = services.get(session, caller, product_id)
    authorize(caller, "product.checklist", product.org_id)
    return [c.as_dict() for c in services.checklist(session, product)]


@router.get(
    "/products/{product_id}/policy",
    openapi_extra=action("product.read"),
    responses={200: {"content": {JSONLD: {}}}},
)
def product_policy(product_id: str, caller: Caller, ctx: Ctx, session: ReadSession) -> Any:
    """The product's default usage policy as an ODRL 2.2 offer (JSON-LD)."""
    product = services.get(session, caller, product_id)
    base = ctx.settings.public_url.rstrip("/") + "/api/v1"
    doc = services.odrl_offer(base, product.id, product.org_id, product.policy)
    return JSONResponse(doc, media_type=JSONLD)


@router.get(
    "/catalog/search", response_model=schemas.SearchOut, openapi_extra=action("catalog.search")
)
def search_catalog(
    caller: Caller,
    ctx: Ctx,
    session: ReadSession,
    q: Annotated[str, Query(max_length=500)] = "",
    kind: Annotated[list[ProductKind] | None, Query()] = None,
    industry: Annotated[list[str] | None, Query(max_length=20)] = None,
    category: Annotated[list[str] | None, Query(max_length=20)] = None,
    grade: Annotated[list[str] | None, Query(max_length=5)] = None,
    update_frequency: Annotated[list[str] | None, Query(max_length=20)] = None,
    merchant: Annotated[list[str] | None, Query(max_length=20)] = None,
    price_min_fen: Annotated[int | None, Query(ge=0)] = None,
    price_max_fen: Annotated[int | None, Query(ge=0)] = None,
    has_sample: Annotated[bool | None, Query()] = None,
    sort: Annotated[str, Query(pattern="^(relevance|newest|price_asc|price_desc|title)$")] = (
        "relevance"
    ),
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> object:
    """Full-text search of listed products in Chinese or English, with filters and facets."""
    authorize(caller, "catalog.search")
    query = SearchQuery(
        text=q,
        kinds=tuple(kind or ()),
        industries=tuple(industry or ()),
        categories=tuple(category or ()),
        grades=tuple(grade or ()),
        update_frequencies=tuple(update_frequency or ()),
        merchants=tuple(merchant or ()),
        price_min_fen=price_min_fen,
        price_max_fen=price_max_fen,
        has_sample=has_sample,
        sort=sort,
        offset=offset,
        limit=limit,
    )
    result = ctx.catalog.search(session, query)
    hits = []
    for h in result.hits:
        f = ctx.catalog.facts.get(h.id)
        if f is None:
            continue
        hits.append(
            schemas.HitOut(
                id=f.id,
                score=h.score,
                title=f.title,
                kind=f.kind,
                merchant=f.org_id,
                merchant_name=f.merchant_name,
                industry=f.industry,
                category=f.category,
                grade=f.grade,
                update_frequency=f.update_frequency,
                min_price_fen=f.min_price_fen,
                currency=f.currency,
                has_sample=f.has_sample,
                summary=f.summary[:280],
                tags=list(f.tags),
                listed_at=f.listed_at,
            )
        )
    return schemas.SearchOut(
        total=result.total, offset=offset, limit=limit, hits=hits, facets=result.facets
    )


@router.get(
    "/catalog/dcat",
    openapi_extra=action("catalog.dcat"),
    responses={200: {"content": {JSONLD: {}}}},
)
def catalog_dcat(caller: Caller, ctx: Ctx, session: ReadSession) -> Any:
    """Every listed product as W3C DCAT 3 (JSON-LD), with its ODRL policy."""
    authorize(caller, "catalog.dcat")
    ctx.catalog.refresh(session)
    doc = services.dcat_document(
        ctx.settings.public_url, ctx.settings.exchange_name, list(ctx.catalog.facts.values())
    )
    return JSONResponse(doc, media_type=JSONLD)
