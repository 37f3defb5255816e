"""Requests/s through the metered API gateway against a bare pass-through proxy.

Three uvicorn processes: a minimal upstream (a plain ASGI callable answering every path
with a small JSON object, one field of which the contract does not license), the exchange
(``create_app``) and a bare proxy (a minimal async FastAPI app forwarding ``GET
/p/{path}`` to the same upstream over one pooled ``httpx.AsyncClient``). The gateway does
everything the bare proxy does, plus, per call: route through the exchange's whole
routing table; read the ledger head (one primary-key query on a dedicated autocommit
connection, on the event loop); when the decision for this key, product and contract was
loaded under that head, reuse it (otherwise — about once a second here, as each metering
flush moves the head — load the caller, the contract's facts and the upstream in a worker
thread); check the usage policy on it at the current time (term, purpose, territory,
path, fields, rate, count: reserved and settled in memory); strip the unlicensed field
(parse and re-serialise the JSON); and meter the call (one event) and its bytes (merged
per contract and flush), written in batches with their ledger entry.

The world: the demo organisations; the demo merchant ``merchant_b`` lists an ``api``
product with a per-call metered plan and a policy with a call count limit but no rate
limit (the rate limiter is not what is measured); ``buyer_a`` holds an active contract
(invoiced) and a read/write API key. Measurements alternate ``proxy, gateway, proxy, …``
as in ``api_read``; a round's ratio is the gateway's rate over the mean of the proxy's
rates just before and after it. The added latency is the gateway's p99 less the proxy's.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from rich.console import Console

from benchmarks import Outcome, Row, register
from benchmarks._load import LoadPool, Segment
from benchmarks._server import Served, serve
from benchmarks._stores import on_each_store
from benchmarks._world import actor, registered_asset

GOAL = 0.8
WARMUP = 1500
ROUNDS = 5
MIN_ROUNDS = 3
PER_SEGMENT = 1000
SEGMENT_BUDGET = 10.0
STORE_BUDGET = 60.0
CLIENT_PROCESSES = 2
THREADS_PER_CLIENT = 4
DEMO_PASSWORD = "demo-password-for-benchmarks"
FIELDS = ["mobile", "tenure_months", "status", "risk_score"]
PLAN = "按次计费 per call"
QUERY = "/score?mobile=13812345678"
ANSWER = json.dumps(
    {
        "mobile": "13812345678",
        "tenure_months": 86,
        "status": "active",
        "risk_score": 12,
        "carrier_cost_fen": 7,
    }
).encode()


# ---------------------------------------------------------------- the three servers


def upstream_app() -> Any:
    """The merchant's service: a bare ASGI callable, as cheap as an answer can be."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})

    return app


def proxy_app(upstream_url: str) -> Any:
    """The baseline: forward GETs to the upstream, nothing else."""
    from contextlib import asynccontextmanager

    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        state["client"] = httpx.AsyncClient(base_url=upstream_url, timeout=10)
        yield
        await state["client"].aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/p/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        query = request.url.query
        r = await state["client"].get(f"/{path}?{query}" if query else f"/{path}")
        return Response(r.content, r.status_code, media_type=r.headers.get("content-type"))

    return app


def exchange_app(data_dir: str, database_url: str) -> Any:
    from databourse.api.app import create_app
    from databourse.settings import Settings

    return create_app(
        Settings(data_dir=Path(data_dir), database_url=database_url), configure_logging=False
    )


# ---------------------------------------------------------------- the world


def seed_world(data_dir: Path, url: str, upstream_url: str) -> tuple[str, str]:
    from databourse import demo
    from databourse.api.context import AppContext
    from databourse.auth import services as auth
    from databourse.auth.policy import SYSTEM_PRINCIPAL
    from databourse.auth.schemas import ApiKeyIn
    from databourse.catalog import schemas as catalog_schemas
    from databourse.catalog import services as catalog
    from databourse.delivery import gateway
    from databourse.demo_supply import principal_of
    from databourse.market import contracts, negotiation
    from databourse.market import schemas as market_schemas
    from databourse.settings import Settings
    from databourse.uow import UnitOfWork

    settings = Settings(data_dir=data_dir, database_url=url)
    ctx = AppContext.build(settings)
    try:
        emails = {s.key: s.email for s in demo.seed(ctx.writes, DEMO_PASSWORD)}
        merchant = principal_of(ctx.writes, emails["merchant_b"])
        buyer = principal_of(ctx.writes, emails["buyer_a"])

        asset_id = registered_asset(ctx, merchant, "手机号风险评分 benchmark", "finance")
        product_body = {
            "kind": "api",
            "title": "Mobile risk score API (benchmark)",
            "asset_ids": [asset_id],
            "description": {
                "content": "Risk score of a mobile number. 手机号风险评分。",
                "fields": [{"name": f, "type": "string", "meaning": f} for f in FIELDS],
                "coverage": "Mainland China",
                "update_frequency": "realtime",
                "scenarios": ["风控 risk control"],
                "restrictions": "Licensed uses only.",
            },
            "industry": "finance",
            "category": "risk scoring",
            "tags": ["risk", "score"],
            "plans": [
                {
                    "name": PLAN,
                    "model": "metered",
                    "unit": "call",
                    "tiers": [{"up_to": None, "price_per_1000_fen": 50_000}],
                }
            ],
            "policy": {
                "purposes": ["risk_control"],
                "term_days": 365,
                "territories": ["CN"],
                "count": {"max_calls": 100_000_000},
                "onward": {"mode": "prohibited"},
            },
            "sample": {"columns": FIELDS, "rows": [["13800000000", "12", "active", "30"]]},
        }
        with UnitOfWork(ctx.writes, actor(merchant)) as uow:
            data = catalog_schemas.ProductIn.model_validate(product_body, strict=False)
            p = catalog.create(uow, merchant, data)
            catalog.transition(uow, merchant, p.id, "submit", None)
            uow.commit()
            pid = p.id
        with UnitOfWork(ctx.writes) as uow:
            catalog.transition(uow, SYSTEM_PRINCIPAL, pid, "approve", "benchmark")
            uow.commit()
        with UnitOfWork(ctx.writes, actor(merchant)) as uow:
            body = gateway.UpstreamIn.model_validate(
                {
                    "base_url": upstream_url,
                    "auth_header": "X-Api-Key",
                    "auth_secret": secrets.token_hex(16),
                    "allowed_paths": ["/score"],
                    "methods": ["GET"],
                    "response_fields": FIELDS,
                }
            )
            gateway.register_upstream(uow, merchant, ctx.custody_secret, pid, body)
            uow.commit()
        with UnitOfWork(ctx.writes, actor(buyer)) as uow:
            c = negotiation.buy(
                uow,
                buyer,
                settings,
                market_schemas.ContractIn.model_validate(
                    {
                        "product_id": pid,
                        "purpose": "risk_control",
                        "plan": PLAN,
                        "term_days": 365,
                        "billing": "invoice",
                    },
                    strict=False,
                ),
            )
            uow.commit()
            cid = c.id
        for who in (buyer, merchant):
            with UnitOfWork(ctx.writes, actor(who)) as uow:
                contracts.sign_custodial(uow, who, ctx.custody_secret, cid)
                uow.commit()
        with UnitOfWork(ctx.writes) as uow:
            _, key = auth.create_api_key(
                uow,
                SYSTEM_PRINCIPAL,
                buyer.org_id,
                ApiKeyIn(name="bench", scopes=["read", "write"]),
            )
            uow.commit()
        return pid, key
    finally:
        ctx.db.dispose()


# ---------------------------------------------------------------- measuring


class Samples:
    def __init__(self) -> None:
        self.rates: list[float] = []
        self.ratios: list[float] = []
        self.p50: list[float] = []
        self.p99: list[float] = []
        self.server_us: list[float] = []

    def add(self, seg: Segment, cpu: float, ratio: float | None = None) -> None:
        self.rates.append(seg.rate)
        self.p50.append(seg.p50_ms)
        self.p99.append(seg.p99_ms)
        self.server_us.append(cpu / max(seg.ok, 1) * 1e6)
        if ratio is not None:
            self.ratios.append(ratio)

    def extra(self) -> dict[str, str]:
        med = statistics.median
        return {
            "p50 ms": f"{med(self.p50):.1f}",
            "p99 ms": f"{med(self.p99):.1f}",
            "server µs/req": f"{med(self.server_us):,.0f}",
        }


def _segment(pool: LoadPool, srv: Served, path: str, headers: dict[str, str], n: int) -> Any:
    # uvicorn closes connections idle for 5 s (while the other server was measured): the
    # first request of each connection may find it closed and reconnect; not measured
    pool.run(path, headers, pool.connections * 2, SEGMENT_BUDGET)
    cpu0 = srv.cpu_seconds()
    seg = pool.run(path, headers, n, SEGMENT_BUDGET)
    if seg.errors or not seg.ok:
        raise RuntimeError(
            f"{path}: {seg.errors} of {seg.ok + seg.errors} failed, first: {seg.first_error}"
        )
    return seg, srv.cpu_seconds() - cpu0


def _measure(kind: str, url: str, workdir: Path, console: Console) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    with serve("benchmarks.gateway:upstream_app", ready_path="/") as upstream:
        pid, key = seed_world(workdir / "data", url, upstream.base_url)
        headers = {"Authorization": f"Bearer {key}", "X-Purpose": "risk_control"}
        gw_path = f"/gateway/{pid}{QUERY}"
        with (
            serve("benchmarks.gateway:proxy_app", upstream_url=upstream.base_url) as proxy,
            serve(
                "benchmarks.gateway:exchange_app", data_dir=str(workdir / "data"), database_url=url
            ) as exchange,
        ):
            with httpx.Client(timeout=30) as c:
                r = c.get(exchange.base_url + gw_path, headers=headers)
                if r.status_code != 200 or "carrier_cost_fen" in r.json():
                    raise RuntimeError(f"gateway: HTTP {r.status_code} {r.text[:300]}")
                r = c.get(proxy.base_url + "/p" + QUERY)
                if r.status_code != 200:
                    raise RuntimeError(f"bare proxy: HTTP {r.status_code} {r.text[:300]}")
            bare, gate = Samples(), Samples()
            with (
                LoadPool(proxy.base_url, CLIENT_PROCESSES, THREADS_PER_CLIENT) as ppool,
                LoadPool(exchange.base_url, CLIENT_PROCESSES, THREADS_PER_CLIENT) as gpool,
            ):
                _segment(ppool, proxy, "/p" + QUERY, {}, WARMUP)
                _segment(gpool, exchange, gw_path, headers, WARMUP)
                started = time.monotonic()
                before, cpu = _segment(ppool, proxy, "/p" + QUERY, {}, PER_SEGMENT)
                bare.add(before, cpu)
                for r_ in range(ROUNDS):
                    if r_ >= MIN_ROUNDS and time.monotonic() - started > STORE_BUDGET:
                        notes.append(f"{kind}: stopped after {r_} rounds (time budget)")
                        break
                    seg, gcpu = _segment(gpool, exchange, gw_path, headers, PER_SEGMENT)
                    after, pcpu = _segment(ppool, proxy, "/p" + QUERY, {}, PER_SEGMENT)
                    bare.add(after, pcpu)
                    gate.add(seg, gcpu, seg.rate / ((before.rate + after.rate) / 2))
                    before = after
                    console.print(
                        f"  [dim]{kind} round {r_ + 1}/{ROUNDS}: proxy {after.rate:,.0f} "
                        f"gateway {seg.rate:,.0f} req/s[/dim]"
                    )
    med = statistics.median
    added = med(gate.p99) - med(bare.p99)
    proxy_rate = med(bare.rates)
    rows = [
        Row(f"{kind} · bare proxy", proxy_rate, "req/s", proxy_rate, extra=bare.extra()),
        Row(
            f"{kind} · metered gateway",
            med(gate.rates),
            "req/s",
            proxy_rate,
            goal=GOAL,
            extra={**gate.extra(), "added p99 ms": f"{added:.1f}"},
            ratio_override=med(gate.ratios),
        ),
    ]
    return rows, notes


@register(
    title="Metered API gateway vs a bare pass-through proxy",
    goal=f"the gateway at ≥ {GOAL:.0%} of the bare proxy's requests/s",
)
def gateway(console: Console) -> Outcome:
    rows, notes = on_each_store("gateway", console, _measure)
    return Outcome(
        rows=rows,
        baseline="a minimal async FastAPI app forwarding `GET /p/{path}` to the same upstream "
        "over one pooled `httpx.AsyncClient` (no authentication, checks, filtering or metering)",
        method=[
            "three uvicorn processes, 1 worker each (uvloop + httptools when installed), "
            "127.0.0.1: the upstream (a bare ASGI callable, 110-byte JSON answer), the bare "
            "proxy, and the exchange (`create_app`, default settings: metering flushed every "
            "second)",
            "the gateway call: `GET /gateway/{product}/score?mobile=…` with a read/write API "
            "key and `X-Purpose`; the contract has a call count limit (reserved and settled "
            "per call) and no rate limit; one response field is stripped",
            "per call the gateway reads the ledger head (one primary-key query) and, when its "
            "cached decision for the key, product and contract was loaded under that head, "
            "judges the call on it without a worker thread; each metering flush (every "
            "second) appends to the ledger, so the decision is reloaded about once a second; "
            "usage: one `call` event per call, one `byte` event per contract per flush",
            f"load: {CLIENT_PROCESSES} client processes × {THREADS_PER_CLIENT} threads per "
            "server, keep-alive loopback connections, client `raw`",
            f"{WARMUP} warm-up requests per server, then up to {ROUNDS} rounds of "
            f"{PER_SEGMENT} requests, alternating proxy, gateway, proxy …",
            "ratio: median over rounds of the gateway's rate over the mean of the proxy "
            "rates just before and after; added p99: the gateway's median p99 less the "
            "proxy's",
        ],
        notes=notes,
    )
