"""Commands and queries of the catalog domain: products and their listing review.

Products are built from the merchant's own registered assets. Every command is one unit
of work with its ledger entry; the search index follows the ledger (see ``indexer``), so a
product leaves search as soon as the entry that delisted or suspended it is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from databourse.assets import services as assets
from databourse.assets.errors import AssetFrozen
from databourse.assets.models import REGISTERED, DataAsset, DataFile
from databourse.auth.policy import Principal, Reach, authorize
from databourse.catalog import listing, masking, policy, pricing, schemas
from databourse.catalog.errors import AssetNotUsable, ListingChecksFailed
from databourse.catalog.facts import DistributionFacts, FieldFacts, ListingFacts
from databourse.catalog.models import EDITABLE, Product, ProductAsset, ProductStatus
from databourse.db import new_id, utcnow
from databourse.errors import (
    DataBourseError,
    Forbidden,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from databourse.ledger.writer import assert_untampered
from databourse.participants.models import Organisation
from databourse.uow import UnitOfWork

MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_PLANS = TypeAdapter(list[pricing.PricingPlan])


def asset_ids_of(session: Session, product_id: str) -> list[str]:
    return list(
        session.scalars(
            select(ProductAsset.asset_id)
            .where(ProductAsset.product_id == product_id)
            .order_by(ProductAsset.asset_id)
        )
    )


def product_state(product: Product, asset_ids: Sequence[str]) -> dict[str, Any]:
    """The product's state the ledger commits to (hashed; the entry holds ids only)."""
    return {
        "id": product.id,
        "org_id": product.org_id,
        "kind": product.kind,
        "title": product.title,
        "description": product.description,
        "industry": product.industry,
        "category": product.category,
        "tags": product.tags,
        "language": product.language,
        "sample": product.sample,
        "plans": product.plans,
        "policy": product.policy,
        "min_price_fen": product.min_price_fen,
        "max_price_fen": product.max_price_fen,
        "currency": product.currency,
        "version": product.version,
        "status": product.status,
        "checklist": product.checklist,
        "reviewed_by": product.reviewed_by,
        "decision_reason": product.decision_reason,
        "asset_ids": sorted(asset_ids),
    }


def _record(uow: UnitOfWork, kind: str, product: Product, **body: Any) -> None:
    uow.session.flush()
    ids = asset_ids_of(uow.session, product.id)
    body = {
        "org_id": product.org_id,
        "status": product.status,
        "version": product.version,
        "assets": ids,
        **body,
    }
    uow.record(kind, product.id, body, product_state(product, ids), (product.org_id,))


def _assets(session: Session, org_id: str, asset_ids: list[str]) -> list[DataAsset]:
    rows = assets.usable_assets(session, org_id, sorted(set(asset_ids)))
    frozen = [a.id for a in rows if a.status not in REGISTERED]
    if frozen:
        cls = AssetFrozen if any(a.status == "disputed" for a in rows) else AssetNotUsable
        raise cls(
            "a product can only be built from registered assets; not registered: "
            + ", ".join(f"{a.id} ({a.status})" for a in rows if a.id in frozen),
            assets=frozen,
        )
    return rows


def _valid_plans(product: Product) -> list[pricing.PricingPlan]:
    """The product's plans, after checking them and its policy against the product."""
    plans = _PLANS.validate_python(product.plans)
    pricing.validate_plans(plans, product.kind)
    pol = policy.UsagePolicy.model_validate(product.policy)
    policy.validate_policy(pol, kind=product.kind, fields=_fields(product))
    return plans


def plans_of(product: Product) -> list[pricing.PricingPlan]:
    """A product's pricing plans, parsed (they were validated when it was listed)."""
    return _PLANS.validate_python(product.plans)


def policy_of(product: Product) -> policy.UsagePolicy:
    """A product's default usage policy, parsed."""
    return policy.UsagePolicy.model_validate(product.policy)


def _apply_terms(product: Product) -> None:
    """Validate plans and policy against the product; derive its price range."""
    plans = _valid_plans(product)
    product.min_price_fen, product.max_price_fen = pricing.price_range(plans)
    product.currency = plans[0].currency


def _fields(product: Product) -> set[str]:
    return {f["name"] for f in product.description["fields"]}


def _refresh_sample(session: Session, product: Product, given: schemas.SampleIn | None) -> None:
    """Datasets show the first rows of their file; others the merchant's sample. Masked."""
    declared = {f["name"] for f in product.description["fields"] if f.get("personal")}
    columns: list[str]
    rows: list[list[str | None]]
    if product.kind == "dataset":
        files = assets.latest_files(session, asset_ids_of(session, product.id))
        if not files:
            product.sample = None
            return
        first = files[0]
        columns = [c["name"] for c in first.columns]
        rows = [list(r) for r in first.sample]  # as many as the upload kept
        described = _fields(product)
        unknown = sorted(described - {c for f in files for c in (x["name"] for x in f.columns)})
        if unknown:
            raise ValidationFailed(
                "the description names fields the data file does not have: " + ", ".join(unknown),
                field="description.fields",
                fields=unknown,
            )
    elif given is not None:
        columns, rows = list(given.columns), [list(r) for r in given.rows]
    elif product.sample is not None:
        return
    else:
        product.sample = None
        return
    masked = masking.mask_sample(columns, rows, declared)
    product.sample = {
        "columns": columns,
        "rows": [list(r) for r in masked.rows],
        "masked": dict(masked.masked_columns),
    }


def _set_assets(session: Session, product: Product, asset_ids: list[str]) -> None:
    for link in session.scalars(select(ProductAsset).where(ProductAsset.product_id == product.id)):
        session.delete(link)
    session.flush()
    for asset_id in sorted(set(asset_ids)):
        session.add(ProductAsset(product_id=product.id, asset_id=asset_id))
    session.flush()


def create(uow: UnitOfWork, principal: Principal, data: schemas.ProductIn) -> Product:
    """A merchant drafts a product from its registered assets."""
    authorize(principal, "product.create", principal.org_id)
    s = uow.session
    _assets(s, principal.org_id, data.asset_ids)
    product = Product(
        id=new_id("prd"),
        org_id=principal.org_id,
        kind=data.kind,
        title=data.title,
        description=data.description.model_dump(mode="json"),
        industry=data.industry,
        category=data.category,
        tags=list(dict.fromkeys(data.tags)),
        language=data.language,
        plans=[p.model_dump(mode="json") for p in data.plans],
        policy=data.policy.model_dump(mode="json"),
        min_price_fen=0,
        max_price_fen=0,
        currency="CNY",
        version=1,
        status=ProductStatus.draft,
    )
    _apply_terms(product)
    s.add(product)
    s.flush()
    _set_assets(s, product, data.asset_ids)
    _refresh_sample(s, product, data.sample)
    _record(uow, "product.drafted", product)
    return product


def _load(uow: UnitOfWork, principal: Principal, action: str, product_id: str) -> Product:
    product = uow.session.get(Product, product_id, with_for_update=True, populate_existing=True)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, action, product.org_id)
    assert_untampered(
        uow, product.id, product_state(product, asset_ids_of(uow.session, product.id))
    )
    return product


def update(
    uow: UnitOfWork, principal: Principal, product_id: str, patch: schemas.ProductPatch
) -> Product:
    product = _load(uow, principal, "product.update", product_id)
    if product.status not in EDITABLE:
        raise InvalidTransition(
            f"a product that is {product.status} cannot be edited; delist it first",
            current_status=product.status,
        )
    s = uow.session
    changed = sorted(patch.model_dump(exclude_unset=True))
    if patch.asset_ids is not None:
        _assets(s, product.org_id, patch.asset_ids)
        _set_assets(s, product, patch.asset_ids)
    for name in ("title", "industry", "category", "language"):
        value = getattr(patch, name)
        if value is not None:
            setattr(product, name, value)
    if patch.tags is not None:
        product.tags = list(dict.fromkeys(patch.tags))
    if patch.description is not None:
        product.description = patch.description.model_dump(mode="json")
    if patch.plans is not None:
        product.plans = [p.model_dump(mode="json") for p in patch.plans]
    if patch.policy is not None:
        product.policy = patch.policy.model_dump(mode="json")
    _apply_terms(product)
    _refresh_sample(s, product, patch.sample)
    if product.status == ProductStatus.rejected:
        product.status = ProductStatus.draft
    _record(uow, "product.edited", product, changed=changed)
    return product


def review_input(session: Session, product: Product) -> listing.ReviewInput:
    ids = asset_ids_of(session, product.id)
    rows = list(session.scalars(select(DataAsset).where(DataAsset.id.in_(ids))))
    org = session.get(Organisation, product.org_id)
    files = assets.latest_files(session, ids)
    try:
        _valid_plans(product)  # a check only: a review never changes the product
        error = None
    except DataBourseError as exc:
        error = exc.detail
    sample = product.sample or {}
    return listing.ReviewInput(
        kind=product.kind,
        org_id=product.org_id,
        org_data_source_statement=org.data_source_statement if org else None,
        assets=[assets.asset_state(a) for a in rows],
        has_file=len(files) == len(ids),
        sample_columns=sample.get("columns", []),
        sample_rows=sample.get("rows", []),
        policy_error=error,
        today=datetime.now(UTC).date(),
    )


def checklist(session: Session, product: Product) -> list[listing.Check]:
    return listing.checklist(review_input(session, product), masking.unmasked_personal)


def transition(
    uow: UnitOfWork, principal: Principal, product_id: str, action: str, reason: str | None
) -> Product:
    """Move a product through the listing workflow (see ``listing``)."""
    product = _load(uow, principal, f"product.{action}", product_id)
    step = listing.TRANSITIONS[action]
    if product.status not in step.sources:
        raise InvalidTransition(
            f"cannot {action} a product that is {product.status}",
            current_status=product.status,
        )
    if step.reason_required and not (reason or "").strip():
        raise ValidationFailed(f"{action} needs a reason", field="reason")
    s = uow.session
    before = product.status
    if action == "submit":
        _refresh_sample(s, product, None)
    if action in ("submit", "approve", "reinstate"):
        checks = checklist(s, product)
        product.checklist = [c.as_dict() for c in checks]
        failed = listing.failures(checks)
        if failed:
            raise ListingChecksFailed(
                f"the product fails {len(failed)} listing check(s): "
                + "; ".join(f"{c['item']}: {c['detail']}" for c in failed),
                failed=failed,
            )
    product.status = step.target
    if action in ("approve", "reject", "suspend", "reinstate"):
        product.reviewed_by = principal.ref
    if reason:
        product.decision_reason = reason
    if action == "approve":
        if product.listed_at is not None:
            product.version += 1  # listed anew after changes: buyers see a new version
        product.listed_at = utcnow()
    notices = 0
    if action in ("approve", "reinstate"):
        from databourse.demands.services import on_listed

        s.flush()
        shown = listing_facts(s, [product.id]).get(product.id)
        if shown is not None:
            notices = on_listed(uow, shown)
    kind = {
        "submit": "product.submitted",
        "approve": "product.listed",
        "reject": "product.rejected",
        "delist": "product.delisted",
        "suspend": "product.suspended",
        "reinstate": "product.reinstated",
    }[action]
    _record(uow, kind, product, previous=before, **({"notices": notices} if notices else {}))
    return product


def get(session: Session, principal: Principal, product_id: str) -> Product:
    """Listed products are visible to every member while buyers may see them (``visible``:
    merchant admitted, no asset frozen); others only to their merchant and the exchange's
    staff (to anyone else they read as not found)."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    if product.status == ProductStatus.listed and _shown(session, product):
        authorize(principal, "catalog.read")
        return product
    try:
        authorize(principal, "product.read", product.org_id)
    except Forbidden:
        raise NotFound(f"product {product_id} not found") from None  # not even its existence
    return product


def _shown(session: Session, product: Product) -> bool:
    """Whether buyers may see a listed product now (see ``visible``)."""
    org_status = session.scalar(
        select(Organisation.status).where(Organisation.id == product.org_id)
    )
    asset_statuses = session.scalars(
        select(DataAsset.status)
        .join(ProductAsset, ProductAsset.asset_id == DataAsset.id)
        .where(ProductAsset.product_id == product.id)
    )
    return visible(product, org_status or "", list(asset_statuses))


def list_products(
    session: Session,
    principal: Principal,
    org_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[Product]:
    reach = authorize(principal, "product.list", org_id)
    q = select(Product)
    if reach is Reach.OWN:
        q = q.where(Product.org_id == principal.org_id)
    elif org_id:
        q = q.where(Product.org_id == org_id)
    if status:
        q = q.where(Product.status == status)
    q = q.order_by(Product.created_at, Product.id).limit(limit).offset(offset)
    return list(session.scalars(q))


def products_using(session: Session, asset_id: str, statuses: Sequence[str]) -> list[str]:
    return list(
        session.scalars(
            select(Product.id)
            .join(ProductAsset, ProductAsset.product_id == Product.id)
            .where(ProductAsset.asset_id == asset_id, Product.status.in_(statuses))
            .order_by(Product.id)
        )
    )


def out(session: Session, product: Product) -> schemas.ProductOut:
    return outs(session, [product])[0]


def outs(session: Session, products: Sequence[Product]) -> list[schemas.ProductOut]:
    """Responses for products, their asset ids read in one query."""
    links: dict[str, list[str]] = {p.id: [] for p in products}
    for pid, aid in session.execute(
        select(ProductAsset.product_id, ProductAsset.asset_id)
        .where(ProductAsset.product_id.in_(links))
        .order_by(ProductAsset.asset_id)
    ):
        links[pid].append(aid)
    names = [c for c in schemas.ProductOut.model_fields if c != "asset_ids"]
    return [
        schemas.ProductOut(**{c: getattr(p, c) for c in names}, asset_ids=links[p.id])
        for p in products
    ]


def visible(product: Product, org_status: str, asset_statuses: Sequence[str]) -> bool:
    """Whether buyers may see the product: listed, its merchant admitted, its assets not
    frozen (a disputed or cancelled asset takes its products out of the catalog)."""
    return (
        product.status == ProductStatus.listed
        and org_status == "admitted"
        and all(s in REGISTERED for s in asset_statuses)
    )


def listing_facts(session: Session, product_ids: Sequence[str]) -> dict[str, ListingFacts | None]:
    """The catalog's view of each product, or None where buyers may not see it."""
    out: dict[str, ListingFacts | None] = {}
    if not product_ids:
        return out
    products = list(session.scalars(select(Product).where(Product.id.in_(product_ids))))
    links: dict[str, list[str]] = {}
    for pid, aid in session.execute(
        select(ProductAsset.product_id, ProductAsset.asset_id).where(
            ProductAsset.product_id.in_(product_ids)
        )
    ):
        links.setdefault(pid, []).append(aid)
    asset_rows = {
        a.id: a
        for a in session.scalars(
            select(DataAsset).where(DataAsset.id.in_([a for v in links.values() for a in v]))
        )
    }
    orgs = {
        o.id: o
        for o in session.scalars(
            select(Organisation).where(Organisation.id.in_({p.org_id for p in products}))
        )
    }
    for pid in product_ids:
        out[pid] = None
    datasets = [a for p in products if p.kind == "dataset" for a in links.get(p.id, [])]
    newest = {f.asset_id: f for f in assets.latest_files(session, datasets)}
    for p in products:
        ids = sorted(links.get(p.id, []))
        asset_list = [asset_rows[a] for a in ids if a in asset_rows]
        org = orgs.get(p.org_id)
        if org is None or not visible(p, org.status, [a.status for a in asset_list]):
            continue
        files = [newest[a] for a in ids if a in newest] if p.kind == "dataset" else []
        out[p.id] = _facts(p, org, asset_list, files)
    return out


def _facts(
    p: Product, org: Organisation, asset_list: list[DataAsset], files: list[DataFile]
) -> ListingFacts:
    grades = {a.grade for a in asset_list}
    subs = [a.sub_grade for a in asset_list if a.sub_grade is not None]
    d = p.description
    return ListingFacts(
        id=p.id,
        org_id=p.org_id,
        merchant_name=org.name,
        kind=p.kind,
        title=p.title,
        summary=d.get("content", ""),
        fields=tuple(
            FieldFacts(
                f["name"], f.get("type", "string"), f.get("meaning", ""), f.get("personal", False)
            )
            for f in d.get("fields", [])
        ),
        tags=tuple(p.tags),
        industry=p.industry,
        category=p.category,
        grade="important" if "important" in grades else "general",
        sub_grade=max(subs) if subs else None,
        update_frequency=d.get("update_frequency", "irregular"),
        coverage=d.get("coverage", ""),
        scenarios=tuple(d.get("scenarios", [])),
        restrictions=d.get("restrictions", ""),
        min_price_fen=p.min_price_fen,
        max_price_fen=p.max_price_fen,
        currency=p.currency,
        plan_models=tuple(sorted({pl["model"] for pl in p.plans})),
        has_sample=bool(p.sample and p.sample.get("rows")),
        listed_at=p.listed_at or p.created_at,
        updated_at=p.updated_at,
        distributions=tuple(
            DistributionFacts(
                file_id=f.id,
                version=f.version,
                format=f.format,
                media_type=MEDIA_TYPES.get(f.format, "application/octet-stream"),
                byte_size=f.byte_size,
                sha256=f.sha256,
                row_count=f.row_count,
                created_at=f.created_at,
            )
            for f in files
        ),
        policy=p.policy,
        language=p.language,
    )


def odrl_offer(base: str, product_id: str, org_id: str, pol: dict[str, Any]) -> dict[str, Any]:
    """A product's default usage policy as an ODRL 2.2 offer (JSON-LD)."""
    return policy.to_odrl(
        policy.UsagePolicy.model_validate(pol),
        uid=f"{base}/products/{product_id}/policy",
        assigner=f"{base}/organisations/{org_id}",
        target=f"{base}/products/{product_id}",
    )


def dcat_document(
    public_url: str, exchange_name: str, listings: Sequence[ListingFacts]
) -> dict[str, Any]:
    """The catalog of listed products as DCAT 3 JSON-LD, each with its ODRL offer."""
    from databourse.catalog import dcat

    base = public_url.rstrip("/") + "/api/v1"
    ordered = sorted(listings, key=lambda f: f.id)
    newest = max((f.updated_at for f in ordered), default=utcnow())
    oldest = min((f.listed_at for f in ordered), default=newest)
    meta = dcat.CatalogMeta(
        name=exchange_name,
        title={
            "zh": f"{exchange_name} 数据产品目录",
            "en": f"{exchange_name} data product catalog",
        },
        description={
            "zh": "在本交易所挂牌的数据产品：数据集、数据接口与计算服务。",
            "en": "Data products listed on this exchange: datasets, APIs and compute services.",
        },
        publisher_name=exchange_name,
        homepage=public_url.rstrip("/") + "/",
        issued=oldest,
        modified=newest,
    )
    policies = {f.id: odrl_offer(base, f.id, f.org_id, f.policy) for f in ordered}
    return dcat.to_dcat(meta, ordered, base, policies)
