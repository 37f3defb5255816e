"""A small market for the money tests, set up through the services (no HTTP, no argon2).

Organisations are made with ``tests.conftest.quick_party`` (admitted, with a bearer token
minted from the exchange's token secret); a merchant's product is registered, listed and
approved by the exchange (the system principal) with one fixed-price plan, so a buyer's
``POST /contracts`` drafts a contract at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from databourse.api.context import AppContext
from databourse.assets import schemas as asset_schemas
from databourse.assets import services as assets
from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal
from databourse.auth.services import principal_for_email
from databourse.catalog import schemas as catalog_schemas
from databourse.catalog import services as catalog
from databourse.settlement import fees
from databourse.uow import Actor, UnitOfWork
from tests import factories
from tests.conftest import TLS, Exchange, Party, quick_party

PURPOSE = "research"
PLAN = "一口价 fixed"


@dataclass
class Org:
    """An organisation of the market: its id, its administrator's principal and token."""

    id: str
    email: str
    token: str
    principal: Principal

    @property
    def ref(self) -> str:
        """The owner of its administrator's idempotency keys."""
        return self.principal.ref


@dataclass
class Market:
    operator: Org
    merchant: Org
    buyers: list[Org]
    agent: Org | None = None
    products: dict[str, int] = field(default_factory=dict)  # product id → price in fen


def _org(ctx: AppContext, party: Party) -> Org:
    with ctx.reads() as s:
        principal = principal_for_email(s, party.email)
    return Org(party.id, party.email, party.token, principal)


def party(ex: Exchange, roles: list[str]) -> Org:
    return _org(ex.ctx, quick_party(ex, roles))


def listed_product(
    ctx: AppContext,
    merchant: Org,
    kind: str,
    title: str,
    columns: list[str],
    plans: list[dict[str, Any]],
    policy: dict[str, Any],
    sample_row: list[str],
) -> str:
    """A product of the merchant, built on a freshly registered asset and listed by the
    exchange (the system principal approves it); its id."""
    me = merchant.principal
    actor = Actor(me.kind, me.id, me.org_id)
    body = factories.asset(title=f"{title} asset {secrets.token_hex(3)}")
    with UnitOfWork(ctx.writes, actor) as uow:
        asset = assets.create(uow, me, asset_schemas.AssetIn.model_validate(body, strict=False))
        assets.transition(uow, me, asset.id, "submit")
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        assets.transition(uow, SYSTEM_PRINCIPAL, asset.id, "register", "documents checked")
        uow.commit()
    product = factories.product(
        [asset.id],
        columns,
        kind=kind,
        title=f"{title} {secrets.token_hex(3)}",
        plans=plans,
        policy=policy,
        sample={"columns": columns, "rows": [sample_row]},
    )
    with UnitOfWork(ctx.writes, actor) as uow:
        p = catalog.create(uow, me, catalog_schemas.ProductIn.model_validate(product, strict=False))
        catalog.transition(uow, me, p.id, "submit", None)
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        catalog.transition(uow, SYSTEM_PRINCIPAL, p.id, "approve", "checklist passed")
        uow.commit()
    return str(p.id)


def list_fixed_product(ctx: AppContext, merchant: Org, price_fen: int) -> str:
    """An API product of the merchant with one fixed-price plan, listed; its id."""
    return listed_product(
        ctx,
        merchant,
        "api",
        "Ridership API",
        ["line", "hour", "boardings"],
        [{"name": PLAN, "model": "fixed", "price_fen": price_fen}],
        {**factories.POLICY, "purposes": [PURPOSE, "statistics"], "count": {"max_calls": 10_000}},
        ["71路", "08:00", "1200"],
    )


def certify_agency(ctx: AppContext, agent: Org, merchant: Org, commission_bp: int) -> str:
    """A certified agency contract: the agent earns ``commission_bp`` on every trade of the
    merchant's products."""
    me = agent.principal
    with UnitOfWork(ctx.writes, Actor(me.kind, me.id, me.org_id)) as uow:
        a = fees.submit_agency(
            uow,
            me,
            merchant.id,
            None,
            commission_bp,
            datetime.now(UTC) + timedelta(days=365),
            secrets.token_hex(32),
        )
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        fees.decide_agency(uow, SYSTEM_PRINCIPAL, a.id, "certify")
        uow.commit()
    return str(a.id)


def build(
    ex: Exchange,
    buyers: int,
    prices: tuple[int, ...] = (50_000,),
    commission_bp: int | None = 500,
) -> Market:
    """Operator, merchant (with an agent when ``commission_bp``), buyers and products."""
    market = Market(
        operator=party(ex, ["operator"]),
        merchant=party(ex, ["merchant"]),
        buyers=[party(ex, ["buyer"]) for _ in range(buyers)],
    )
    if commission_bp:
        market.agent = party(ex, ["agent"])
        certify_agency(ex.ctx, market.agent, market.merchant, commission_bp)
    for price in prices:
        market.products[list_fixed_product(ex.ctx, market.merchant, price)] = price
    return market


# ---------------------------------------------------------------- over HTTP


def key() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(12)}


def client(ex: Exchange, org: Org | str, timeout: float = 30) -> httpx.Client:
    """A client of the API as ``org`` (or with a bearer token)."""
    token = org if isinstance(org, str) else org.token
    return httpx.Client(
        verify=TLS,
        base_url=ex.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def fund(op: httpx.Client, member: httpx.Client, fen: int) -> str:
    """A deposit the operator confirms at once; the transfer's id."""
    t = ok(member.post("/deposits", json={"amount_fen": fen}, headers=key()), 201)
    ref = {"rail_ref": f"BANK-{secrets.token_hex(6).upper()}"}
    ok(op.post(f"/deposits/{t['id']}/confirm", json=ref, headers=key()))
    return str(t["id"])


def bought(buyer: httpx.Client, product_id: str) -> dict[str, Any]:
    """A contract drafted at the listing's fixed price."""
    body = {"product_id": product_id, "purpose": PURPOSE, "plan": PLAN}
    return dict(ok(buyer.post("/contracts", json=body, headers=key()), 201))


def signed(buyer: httpx.Client, merchant: httpx.Client, product_id: str) -> dict[str, Any]:
    """A contract both parties have signed with their custodial keys, awaiting payment."""
    c = bought(buyer, product_id)
    ok(buyer.post(f"/contracts/{c['id']}/sign"))
    out = dict(ok(merchant.post(f"/contracts/{c['id']}/sign")))
    assert out["status"] == "signed", out
    return out


def balances(c: httpx.Client, **params: str) -> dict[str, int]:
    return {a["kind"]: a["balance_fen"] for a in ok(c.get("/accounts", params=params))}
