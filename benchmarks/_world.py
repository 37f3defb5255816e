"""Objects the benchmarks set up through the ordinary services."""

from __future__ import annotations

from typing import Any

from databourse.auth.policy import SYSTEM_PRINCIPAL, Principal
from databourse.uow import Actor, UnitOfWork


def actor(p: Principal) -> Actor:
    return Actor(p.kind, p.id, p.org_id)


def registered_asset(ctx: Any, merchant: Principal, title: str, industry: str) -> str:
    """An asset of the merchant, self-generated, with the three rights, registered by the
    exchange; its id."""
    from databourse.assets import schemas as asset_schemas
    from databourse.assets import services as assets

    body = {
        "title": title,
        "description": f"{title}: benchmark data.",
        "industry": industry,
        "source": {"kind": "self_generated", "description": "Produced by our own systems."},
        "rights": [
            {"right": r, "scope": "all records", "starts_on": "2024-01-01"}
            for r in ("holding", "processing", "operation")
        ],
        "grade": "general",
        "sub_grade": 2,
    }
    with UnitOfWork(ctx.writes, actor(merchant)) as uow:
        a = assets.create(uow, merchant, asset_schemas.AssetIn.model_validate(body))
        assets.transition(uow, merchant, a.id, "submit")
        uow.commit()
    with UnitOfWork(ctx.writes) as uow:
        assets.transition(uow, SYSTEM_PRINCIPAL, a.id, "register", "benchmark")
        uow.commit()
    return str(a.id)
