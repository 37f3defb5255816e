"""The demo world's deliveries, made through the ordinary services (idempotent).

- The credit-data merchant registers its risk-scoring API's upstream with the gateway (the
  demo service at ``/demo/upstream``, with its own sealed credential).
- Xishan Retail Analytics takes the bus-ridership dataset on the metered per-row plan.
- Both buyers of the bus-ridership dataset download it once, so each holds its own
  fingerprinted copy — the candidates a leak trace ranks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from databourse.catalog import services as catalog
from databourse.catalog.vocab import Purpose
from databourse.delivery import downloads, gateway, schemes
from databourse.delivery.models import Upstream
from databourse.demo_supply import principal_of
from databourse.demo_trades import _actor, _product, metered_contract
from databourse.demo_upstream import AUTH_HEADER, PREFIX, demo_key
from databourse.market.models import Contract
from databourse.uow import UnitOfWork

if TYPE_CHECKING:
    from databourse.api.context import AppContext

BUS_METERED = "按行计费 metered per 1,000 rows"
# Hourly counts stay useful for planning within 3 %; marks that large survive a leaker
# rounding the counts to tens.
BUS_SCHEME = schemes.SchemeIn(
    key_columns=["线路", "日期", "时段", "站点"],
    marks=[
        schemes.MarkIn(name="上车人次", kind="integer", tolerance=60, relative=0.03),
        schemes.MarkIn(name="下车人次", kind="integer", tolerance=60, relative=0.03),
    ],
)


def seed_delivery(ctx: AppContext, emails: dict[str, str]) -> list[str]:
    """Create the demo deliveries once; returns what was created, in words."""
    sessions = ctx.writes
    buyer_a, buyer_b = (
        principal_of(sessions, emails["buyer_a"]),
        principal_of(sessions, emails["buyer_b"]),
    )
    merchant_a, merchant_b = (
        principal_of(sessions, emails["merchant_a"]),
        principal_of(sessions, emails["merchant_b"]),
    )
    api = _product(sessions, merchant_b.org_id, "手机号")
    bus = _product(sessions, merchant_a.org_id, "公交")
    with ctx.reads() as s:
        if s.get(Upstream, api) is not None:
            return []
    created: list[str] = []
    with UnitOfWork(sessions, _actor(merchant_a)) as uow:
        asset_id = catalog.asset_ids_of(uow.session, bus)[0]
        schemes.declare(uow, merchant_a, asset_id, BUS_SCHEME)
        uow.commit()
    created.append("fingerprint scheme of the bus ridership: counts move by up to 3 %")
    base = ctx.settings.public_url.rstrip("/") + PREFIX
    with UnitOfWork(sessions, _actor(merchant_b)) as uow:
        gateway.register_upstream(
            uow,
            merchant_b,
            ctx.custody_secret,
            api,
            gateway.UpstreamIn(
                base_url=base,
                auth_header=AUTH_HEADER,
                auth_secret=demo_key(ctx.custody_secret),
                allowed_paths=["/score"],
                methods=["GET"],
                response_fields=["mobile", "tenure_months", "status", "risk_score"],
            ),
        )
        uow.commit()
    created.append(f"gateway upstream of the risk-score API: {base}")

    metered = metered_contract(
        sessions, ctx.settings, ctx.custody_secret, (buyer_b, merchant_a), bus,
        Purpose.marketing, BUS_METERED, 180,
    )  # fmt: skip
    created.append(f"metered contract {metered}: bus ridership per row, active")

    with ctx.reads() as s:
        subscription = s.scalar(
            select(Contract.id).where(
                Contract.buyer_org_id == buyer_a.org_id, Contract.product_id == bus
            )
        )
    assert subscription is not None, "seed the trades first"
    for who, cid, purpose in (
        (buyer_a, subscription, Purpose.research),
        (buyer_b, metered, Purpose.marketing),
    ):
        d, _, table, copy = downloads.create(ctx, who, cid, purpose=purpose, fmt="csv")
        created.append(
            f"download {d.id} of {table.name} for {cid}: fingerprinted copy {copy.sha256[:12]}…"
        )
    return created
