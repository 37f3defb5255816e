"""Every role × every endpoint × own/other object, over HTTP: no unexpected 2xx.

The expected outcome of each request comes from the policy table; the test proves every
endpoint consults it (and that no endpoint exists without an action in the table).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest

from databourse.api.app import create_app
from databourse.auth.policy import POLICY, PUBLIC, Principal, authorize
from databourse.errors import DataBourseError
from tests import factories
from tests.conftest import Exchange, Party, quick_party

PRINCIPALS = {
    "operator": (["operator"], "admitted"),
    "regulator": (["regulator"], "admitted"),
    "merchant": (["merchant"], "admitted"),
    "buyer": (["buyer"], "admitted"),
    "agent": (["agent"], "admitted"),
    "applicant": (["merchant"], "applied"),
    "suspended": (["buyer"], "suspended"),
}


def _collect() -> list[tuple[str, str, str]]:
    import tempfile
    from pathlib import Path

    from tests.conftest import make_settings

    with tempfile.TemporaryDirectory() as d:
        app = create_app(make_settings(Path(d), f"sqlite:///{d}/x.db"), configure_logging=False)
        spec = app.openapi()
        app.state.ctx.db.dispose()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, op.get("x-action", "")))
    return sorted(out)


ROUTES = _collect()


def test_every_endpoint_names_an_action_in_the_policy() -> None:
    assert ROUTES, "no routes found"
    for method, path, action in ROUTES:
        assert action, f"{method} {path} names no action"
        assert action in POLICY or action in PUBLIC, f"{method} {path}: {action} not in policy"


FREE = {"name": "free", "model": "free"}
DEMAND = {"title": "bus ridership", "need": "hourly boardings", "purpose": "research"}
BODIES: dict[str, Any] = {
    "admission.admit": {"kyb": factories.KYB},
    "asset.create": factories.asset(),
    "asset.update": {"title": "matrix"},
    "product.create": factories.product(["ast_none"], ["a"], kind="api"),
    "product.update": {"title": "matrix"},
    "demand.create": DEMAND,
    "role.grant": {"role": "agent", "reason": "matrix"},
    "user.create": None,  # built per request (unique e-mail)
    "apikey.create": {"name": "matrix"},
    # settlement and market: valid bodies, so that refusals come from the policy
    "deposit.create": {"amount_fen": 100},
    "deposit.confirm": {"rail_ref": "matrix"},
    "withdrawal.create": {"amount_fen": 100, "reference": "matrix"},
    "withdrawal.confirm": {"rail_ref": "matrix"},
    "fee.update": {"rate_bp": 300, "min_fen": 100},  # the default: other tests share the fees
    "tier.update": {"tier": "member"},
    "agency.create": {
        "principal_org_id": "org_none",
        "commission_bp": 100,
        "not_after": "2099-01-01T00:00:00Z",
        "document_hash": "0" * 64,
    },
    "commission.payout": {},
    "signing_key.register": {"public_key": "A" * 43 + "="},
    "negotiation.open": {"product_id": "prd_none", "purpose": "research", "offer": {"plan": "x"}},
    "negotiation.offer": {"plan": "x"},
    "contract.create": {"product_id": "prd_none", "purpose": "research", "plan": "x"},
    "contract.sign": {"key_id": "sgk_none", "signature": "A" * 86 + "=="},
    "contract.resolve": {"to_merchant_fen": 0, "reason": "matrix"},
    "usage.record": {
        "source": "matrix",
        "records": [{"metric": "call", "quantity": 1, "at": "2026-01-01T00:00:00Z", "key": "k"}],
    },
    "auction.open": {"product_id": "prd_none", "plan": "x", "term_days": 30},
    "auction.bid": {"purpose": "research", "commitment": "0" * 64},
    "auction.reveal": {"amount_fen": 1, "nonce": "0" * 32},
    "upstream.set": {"base_url": "https://upstream.example", "allowed_paths": ["/score"]},
    "download.create": {"purpose": "research"},
    "node.register": {"name": "matrix", "url": "http://127.0.0.1:9", "public_key": "A" * 43},
    "compute.set": {"kind": "psi", "dataset": "ids", "column": "id"},
    "job.submit": {"kind": "sql", "sql": "SELECT COUNT(*) FROM t", "epsilon": 0.1},
    "fingerprint.set": {
        "key_columns": ["a"],
        "marks": [{"name": "b", "kind": "integer", "tolerance": 1}],
    },
}


def _body(action: str, path: str) -> Any:
    if path.endswith("/ledger/witnesses"):
        from databourse.ledger.note import generate_signer

        return {"verifier_key": generate_signer(f"w{secrets.token_hex(3)}", True)[1]}
    if path.endswith("/ledger/cosignatures"):
        return {"size": 1, "witness_id": "wit_none", "signature_line": "— w AAAAAAAAAAAA"}
    if action == "user.create":
        return {
            "email": f"m-{secrets.token_hex(4)}@x.example",
            "display_name": "m",
            "password": "long-enough-password",
        }
    return BODIES.get(action, {"reason": "matrix"})


def _principal(party: Party, roles: list[str], status: str) -> Principal:
    return Principal(
        "user",
        party.user_id,
        party.id,
        status,  # type: ignore[attr-defined]
        frozenset(roles) if status not in ("applied",) else frozenset(),
        is_admin=True,
    )


# objects of the market and settlement: addressed by unknown ids (the policy decides first)
TRADE_IDS = (
    "contract_id",
    "negotiation_id",
    "auction_id",
    "bill_id",
    "agency_id",
    "transfer_id",
    "signing_key_id",
    "trace_id",
    "job_id",
    "node_id",
)

# paths naming an organisation's object
OWNED = re.compile(r"\{(org_id|user_id|key_id|asset_id|product_id|demand_id|file_id)\}")
CASES = [
    (m, p, a, who, target)
    for m, p, a in ROUTES
    if a in POLICY
    for who in PRINCIPALS
    for target in (("own", "other") if OWNED.search(p) else ("none",))
]


@pytest.mark.parametrize(
    ("method", "path", "action", "who", "target"),
    CASES,
    ids=[f"{c[0]}:{c[1]}:{c[3]}:{c[4]}" for c in CASES],
)
def test_matrix(
    exchange: Exchange, method: str, path: str, action: str, who: str, target: str
) -> None:
    roles, status = PRINCIPALS[who]
    # Reads change nothing, so their parties are shared; every write gets fresh ones.
    # Commands on assets, products and demands change those objects, not the parties.
    fresh = method != "GET" and not DOMAIN_OBJECT.search(path)
    me = _party(exchange, who, roles, status, fresh=fresh)
    owner = (
        me
        if target == "own"
        else _party(exchange, "owner", ["buyer", "merchant"], "admitted", fresh=fresh)
    )
    objects = _objects(exchange, owner, path, reuse=method == "GET")
    # objects addressed by their own id: a user and an API key of the owner
    ids = {
        "org_id": owner.id,
        "user_id": _spare_user(exchange, owner) if "{user_id}" in path else "",
        "key_id": _spare_key(exchange, owner) if "{key_id}" in path else "",
        "role": "buyer",
        "seq": "0",
        "notice_id": "0",
        "index": "0",
        "product_kind": "dataset",
        "tier": "standard",
        "path": "score",  # the gateway's forwarded path
        **dict.fromkeys(TRADE_IDS, "x_none"),
        **objects,
    }
    url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path).removeprefix("/api/v1")
    if not path.startswith("/api/v1"):  # the gateway: outside the API's prefix
        url = exchange.base_url + url
    with me.client() as c:
        if action in ("file.upload", "trace.create"):
            r = c.post(url, files={"file": ("m.csv", b"a,b\n1,2\n", "text/csv")})
        else:
            body = _body(action, path) if method in ("POST", "PATCH", "PUT") else None
            # money commands need an Idempotency-Key; without one they would answer 428
            headers = {"Idempotency-Key": secrets.token_hex(8)} if method != "GET" else {}
            r = c.request(method, url, json=body, headers=headers)
    # a gateway call is the caller's own use (under its own contract) of anyone's product
    object_owner = (me if action == "gateway.call" else owner).id if OWNED.search(path) else None
    try:
        authorize(_principal(me, roles, status), action, object_owner)
        allowed = True
    except DataBourseError:
        allowed = False
    if not allowed:
        assert r.status_code in (403, 404), (r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    elif action == "gateway.call":  # allowed by the policy; refused for want of a contract
        assert r.json()["type"] == "urn:databourse:problem:no-usable-contract", r.text
    else:
        assert r.status_code not in (401, 403), (r.status_code, r.text)


_SHARED: dict[tuple[str, str], Party] = {}
_OBJECTS: dict[tuple[str, str], dict[str, str]] = {}
DOMAIN_OBJECT = re.compile(
    r"\{(asset|product|demand|file|notice|contract|negotiation|auction|bill|agency|transfer"
    r"|signing_key)_id\}|/(assets|products|demands|negotiations|contracts|auctions|deposits"
    r"|withdrawals|signing-keys|agency-contracts|commissions/payout|settlement/run)$"
    r"|/fee-schedule/|/tier$"
)


def _objects(ex: Exchange, owner: Party, path: str, reuse: bool) -> dict[str, str]:
    """The objects the path names, owned by ``owner``: fresh for commands, shared for reads.

    An asset (registered, with a file), a draft API product, a closed demand.
    """
    kinds = set(re.findall(r"\{(asset|product|demand|file)_id\}", path))
    if not kinds:
        return {}
    if reuse and (owner.id, path) in _OBJECTS:
        return _OBJECTS[(owner.id, path)]
    import io

    from databourse.assets import schemas as asset_schemas
    from databourse.assets import services as assets
    from databourse.assets import uploads
    from databourse.auth.policy import SYSTEM_PRINCIPAL
    from databourse.catalog import schemas as catalog_schemas
    from databourse.catalog import services as catalog
    from databourse.demands import schemas as demand_schemas
    from databourse.demands import services as demands
    from databourse.uow import Actor, UnitOfWork

    ids: dict[str, str] = {}
    me = Principal(
        "user", owner.user_id, owner.id, "admitted", frozenset({"buyer", "merchant"}), True
    )
    w = ex.ctx.writes
    if "demand" in kinds:
        with UnitOfWork(w) as uow:
            data = demand_schemas.DemandIn.model_validate(DEMAND, strict=False)
            demand, _ = demands.post(uow, me, ex.ctx.catalog, data)
            demands.transition(uow, me, demand.id, "close")
            uow.commit()
        ids["demand_id"] = demand.id
    if not kinds & {"asset", "product", "file"}:
        _OBJECTS[(owner.id, path)] = ids
        return ids
    with UnitOfWork(w) as uow:
        asset = assets.create(
            uow, me, asset_schemas.AssetIn.model_validate(factories.asset(), strict=False)
        )
        assets.transition(uow, me, asset.id, "submit")
        assets.transition(uow, SYSTEM_PRINCIPAL, asset.id, "register")
        uow.commit()
    ids["asset_id"] = asset.id
    if "file" in kinds:
        ids["file_id"] = uploads.upload(
            w,
            Actor("user", me.id, me.org_id),
            me,
            ex.ctx.store,
            asset.id,
            filename="m.csv",
            source=io.BytesIO(b"a,b\n1,2\n"),
        ).id
    if "product" in kinds:
        body = factories.product([asset.id], ["a"], kind="api", plans=[FREE])
        body["policy"] = {k: v for k, v in factories.POLICY.items() if k != "count"}
        with UnitOfWork(w) as uow:
            data = catalog_schemas.ProductIn.model_validate(body, strict=False)
            ids["product_id"] = catalog.create(uow, me, data).id
            uow.commit()
    _OBJECTS[(owner.id, path)] = ids
    return ids


def _party(ex: Exchange, who: str, roles: list[str], status: str, fresh: bool) -> Party:
    if fresh:
        return quick_party(ex, roles, status)
    key = (ex.base_url, who)
    if key not in _SHARED:
        _SHARED[key] = quick_party(ex, roles, status)
    return _SHARED[key]


def _spare_user(ex: Exchange, owner: Party) -> str:
    from databourse.auth.policy import SYSTEM_PRINCIPAL
    from databourse.participants import schemas, services
    from databourse.uow import UnitOfWork

    data = schemas.UserIn.model_validate(_body("user.create", ""), strict=False)
    with UnitOfWork(ex.ctx.writes) as uow:
        user = services.create_user(uow, SYSTEM_PRINCIPAL, owner.id, data)
        uow.commit()
    return user.id


def _spare_key(ex: Exchange, owner: Party) -> str:
    from databourse.auth import services
    from databourse.auth.policy import SYSTEM_PRINCIPAL
    from databourse.auth.schemas import ApiKeyIn
    from databourse.uow import UnitOfWork

    with UnitOfWork(ex.ctx.writes) as uow:
        key, _ = services.create_api_key(uow, SYSTEM_PRINCIPAL, owner.id, ApiKeyIn(name="spare"))
        uow.commit()
    return key.id
