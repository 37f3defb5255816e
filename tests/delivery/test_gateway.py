"""The metered API gateway over real HTTP, on both stores: the merchant registers its
upstream (the credential sealed, never shown, never on the ledger); buyers call it under
their contracts with their API keys; every policy constraint refuses with its name; the
upstream's failures are reported and never billed; rate limits hold under concurrency;
and the metered calls are exactly the calls made — across a clean stop of a server — and
are what metered billing charges.

Every test makes its own organisations, products and contracts (the exchange is shared
by the session), against one real upstream server (``tests.delivery.upstream``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from databourse.api.app import create_app
from databourse.catalog.pricing import MeteredPlan, metered_charge
from databourse.db import advance_clock
from databourse.delivery import keys
from databourse.delivery.models import Upstream as UpstreamRow
from databourse.delivery.ratelimit import RateLimiter, retry_after
from databourse.ledger.models import LedgerEntry
from databourse.market.models import Contract
from databourse.settlement.usage import usage_summary
from tests.conftest import TLS, Exchange, make_settings, serve_in_thread
from tests.delivery import upstream as up
from tests.market import world
from tests.market.world import Org, key, ok

FIELDS = ["mobile", "tenure_months", "status", "risk_score"]
PLAN = "按次计费 per call"
TIERS = [{"up_to": None, "price_per_1000_fen": 50_000}]
POLICY: dict[str, Any] = {
    "purposes": ["risk_control", "credit_assessment"],
    "term_days": 365,
    "territories": ["CN"],
    "count": {"max_calls": 1000},
    "rate": {"max_per_second": 50},
    "onward": {"mode": "prohibited"},
    "duties": ["attribution"],
}
PATHS = ["/score", "/list", "/secure", "/slow", "/fail", "/missing", "/text", "/v1/*"]
PURPOSE = {"X-Purpose": "risk_control"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[up.Upstream]:
    server = up.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> Iterator[None]:
    yield
    advance_clock(None)


# ---------------------------------------------------------------- set-up through the API


def api_product(ex: Exchange, merchant: Org, policy: dict[str, Any] | None = None) -> str:
    """A listed ``api`` product of the merchant with a per-call metered plan."""
    plan = {"name": PLAN, "model": "metered", "unit": "call", "tiers": TIERS}
    row = ["13800000000", "12", "active", "30"]
    return world.listed_product(
        ex.ctx, merchant, "api", "Mobile risk API", FIELDS, [plan], policy or POLICY, row
    )


def register(ex: Exchange, merchant: Org, product_id: str, base_url: str, **over: Any) -> Any:
    body = {
        "base_url": base_url,
        "auth_header": up.SECRET_HEADER,
        "auth_secret": up.SECRET,
        "allowed_paths": PATHS,
        "response_fields": FIELDS,
        **over,
    }
    with world.client(ex, merchant) as m:
        return ok(m.put(f"/products/{product_id}/upstream", json=body))


def contract(ex: Exchange, buyer: Org, merchant: Org, product_id: str, **terms: Any) -> str:
    """An active metered contract (invoiced, so active once both have signed)."""
    body = {
        "product_id": product_id,
        "purpose": "risk_control",
        "plan": PLAN,
        "term_days": 60,
        "billing": "invoice",
        **terms,
    }
    with world.client(ex, buyer) as b, world.client(ex, merchant) as m:
        c = ok(b.post("/contracts", json=body, headers=key()), 201)
        ok(b.post(f"/contracts/{c['id']}/sign"))
        c = ok(m.post(f"/contracts/{c['id']}/sign"))
    assert c["status"] == "active", c
    return str(c["id"])


def api_key(ex: Exchange, org: Org) -> str:
    with world.client(ex, org) as c:
        r = c.post(
            f"/organisations/{org.id}/api-keys", json={"name": "gw", "scopes": ["read", "write"]}
        )
        return str(ok(r, 201)["key"])


def gw(ex: Exchange, credential: str, product_id: str, base: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=f"{base or ex.base_url}/gateway/{product_id}",
        headers={"Authorization": f"Bearer {credential}", **PURPOSE},
        verify=TLS,
        timeout=30,
    )


def refused(r: httpx.Response, status: int, constraint: str | None, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    p = dict(r.json())
    assert p["type"] == f"urn:databourse:problem:{slug}", p
    if constraint is not None:
        assert p["constraint"] == constraint, p
    return p


def usage(ex: Exchange, contract_id: str) -> dict[str, dict[str, int]]:
    """The contract's stored usage, once this process's buffered events are written."""
    ex.ctx.meter("gateway").flush()
    with ex.ctx.reads() as s:
        c = s.get(Contract, contract_id)
        assert c is not None
        return usage_summary(s, c.id, c.starts_at, c.ends_at)


@pytest.fixture(scope="module")
def market(exchange: Exchange, upstream: up.Upstream) -> dict[str, Any]:
    """A merchant with a registered API product, and a buyer holding a contract on it."""
    merchant = world.party(exchange, ["merchant"])
    buyer = world.party(exchange, ["buyer"])
    pid = api_product(exchange, merchant)
    register(exchange, merchant, pid, upstream.base_url)
    cid = contract(exchange, buyer, merchant, pid)
    return {
        "merchant": merchant,
        "buyer": buyer,
        "product": pid,
        "contract": cid,
        "key": api_key(exchange, buyer),
    }


# ---------------------------------------------------------------- registration


def test_the_upstream_credential_is_sealed_and_never_shown(
    exchange: Exchange, upstream: up.Upstream
) -> None:
    ex = exchange
    merchant, other = world.party(ex, ["merchant"]), world.party(ex, ["merchant", "buyer"])
    pid = api_product(ex, merchant)
    out = register(ex, merchant, pid, upstream.base_url + "/")
    assert out["auth_secret_set"] is True and out["revision"] == 1
    assert out["base_url"] == upstream.base_url and out["auth_header"] == up.SECRET_HEADER
    with world.client(ex, merchant) as m:
        shown = m.get(f"/products/{pid}/upstream")
        assert up.SECRET not in shown.text and ok(shown)["auth_secret_set"] is True
        # a change without the credential keeps it; the revision moves on
        again = ok(
            m.put(
                f"/products/{pid}/upstream",
                json={"base_url": upstream.base_url, "allowed_paths": ["/score"]},
            )
        )
        assert (again["revision"], again["auth_secret_set"]) == (2, True)
        assert (again["auth_header"], again["methods"]) == (up.SECRET_HEADER, ["GET", "POST"])
        # bad registrations name what is wrong
        for bad, field in (
            ({"base_url": "ftp://example.com", "allowed_paths": ["/x"]}, "base_url"),
            ({"base_url": "https://u:p@example.com", "allowed_paths": ["/x"]}, "base_url"),
            ({"base_url": "https://example.com", "allowed_paths": ["score"]}, "allowed_paths"),
            ({"base_url": "https://example.com", "allowed_paths": ["/a/../b"]}, "allowed_paths"),
            (
                {
                    "base_url": "https://x.example",
                    "allowed_paths": ["/x"],
                    "response_fields": ["z"],
                },
                "response_fields",
            ),
            (
                {"base_url": "https://x.example", "allowed_paths": ["/x"], "auth_header": "Host"},
                "auth_header",
            ),
        ):
            p = refused(m.put(f"/products/{pid}/upstream", json=bad), 422, None, "invalid-upstream")
            assert p["field"] == field
        refused(
            m.put(
                f"/products/{pid}/upstream",
                json={"base_url": "https://x.example", "allowed_paths": ["/x"], "timeout_ms": 5},
            ),
            422,
            None,
            "validation",
        )
    # the merchant's own products only
    with world.client(ex, other) as o:
        body = {"base_url": "https://x.example", "allowed_paths": ["/x"]}
        refused(o.put(f"/products/{pid}/upstream", json=body), 404, None, "not-found")
        refused(o.get(f"/products/{pid}/upstream"), 404, None, "not-found")
    # stored sealed and bound to the product; on the ledger only as a hash of the sealed form
    with ex.ctx.reads() as s:
        row = s.get(UpstreamRow, pid)
        assert row is not None and row.auth_secret_sealed is not None
        assert up.SECRET not in row.auth_secret_sealed
        assert keys.unseal_text(ex.ctx.custody_secret, pid, row.auth_secret_sealed) == up.SECRET
        entries = s.scalars(
            select(LedgerEntry).where(LedgerEntry.subject == f"upstream:{pid}")
        ).all()
        assert [e.kind for e in entries] == ["upstream.registered"] * 2
        for e in entries:
            text = str(e.__dict__)
            assert up.SECRET not in text and row.auth_secret_sealed not in text


# ---------------------------------------------------------------- calls


def test_a_call_is_forwarded_with_the_merchants_credential_and_filtered(
    exchange: Exchange, upstream: up.Upstream, market: dict[str, Any]
) -> None:
    ex, pid, cid, apikey = exchange, market["product"], market["contract"], market["key"]
    before = upstream.calls
    with gw(ex, apikey, pid) as g:
        r = g.get("/score", params={"mobile": "13812345678"})
        assert r.status_code == 200, r.text
        assert r.json() == {k: v for k, v in up.score("13812345678").items() if k in FIELDS}
        assert r.headers["X-Contract-Id"] == cid
        left = int(r.headers["X-Usage-Calls-Left"])
        assert 0 < left < 1000
        seen = upstream.last()
        assert (seen.method, seen.path, seen.query) == ("GET", "/score", "mobile=13812345678")
        assert seen.headers[up.SECRET_HEADER.lower()] == up.SECRET
        assert "authorization" not in seen.headers and "cookie" not in seen.headers
        assert not any(apikey in v or apikey.split(".")[0] in v for v in seen.headers.values())
        assert seen.headers.get("x-request-id") == r.headers["x-request-id"]
        # fields asked for: only those come back (and the parameter is the gateway's own)
        r = g.get("/score", params={"mobile": "1", "fields": "mobile,risk_score"})
        assert r.status_code == 200 and set(r.json()) == {"mobile", "risk_score"}
        assert upstream.last().query == "mobile=1"
        # a body is forwarded as is; lists of objects are filtered item by item
        r = g.post("/score?mobile=2", json={"any": "thing"})
        assert r.status_code == 200 and up.UNLICENSED not in r.json()
        assert upstream.last().body == b'{"any":"thing"}'
        rows = ok(g.get("/list"))
        assert len(rows) == 2 and all(set(x) == set(FIELDS) for x in rows)
        # a 4xx answer of the upstream is relayed (filtered) and billed
        r = g.get("/missing")
        assert r.status_code == 404 and r.json() == {}
        # the credential header the merchant registered is what the upstream checks
        assert ok(g.get("/secure"))["mobile"] == "13900000000"
        # a prefix pattern opens everything under it
        assert ok(g.post("/v1/a/b", json={}))["mobile"] == "/v1/a/b"
    assert upstream.calls - before == 7
    # the access token of a buyer's user works as well as its API key
    with gw(ex, market["buyer"].token, pid) as g:
        assert g.get("/score", params={"mobile": "3"}).status_code == 200
    u = usage(ex, cid)
    assert u["call"]["calls"] == 8 and u["call"]["refused"] == 0
    assert u["byte"]["quantity"] > 0


def test_each_constraint_refuses_by_name_and_is_recorded_not_billed(
    exchange: Exchange, upstream: up.Upstream, market: dict[str, Any]
) -> None:
    ex, pid, merchant = exchange, market["product"], market["merchant"]
    buyer = world.party(ex, ["buyer"])
    cid = contract(ex, buyer, merchant, pid, policy={**POLICY, "count": {"max_calls": 3}})
    mine = api_key(ex, buyer)
    stranger = world.party(ex, ["buyer"])
    strangers_key = api_key(ex, stranger)
    before = upstream.calls
    # no credentials; no contract at all; another organisation's contract: not metered
    with httpx.Client(base_url=f"{ex.base_url}/gateway/{pid}", verify=TLS) as anon:
        refused(anon.get("/score"), 401, None, "invalid-token")
    with gw(ex, strangers_key, pid) as g:
        refused(g.get("/score"), 403, "contract", "no-usable-contract")
        refused(g.get("/score", headers={"X-Contract": cid}), 403, "contract", "no-usable-contract")
    with gw(ex, market["merchant"].token, pid) as g:  # the merchant is not a buyer
        refused(g.get("/score"), 403, None, "forbidden")
    with gw(ex, mine, pid) as g:
        refused(g.get("/score", headers={"X-Purpose": ""}), 403, "purpose", "usage-refused")
        refused(
            g.get("/score", headers={"X-Purpose": "marketing"}), 403, "purpose", "usage-refused"
        )
        refused(g.get("/score", headers={"X-Territory": "US"}), 403, "territory", "usage-refused")
        refused(g.get("/admin"), 403, "path", "usage-refused")
        refused(g.get("/score/../admin"), 403, "path", "usage-refused")
        refused(g.delete("/score"), 403, "path", "usage-refused")
        refused(g.get("/score?fields=mobile,carrier_cost_fen"), 403, "fields", "usage-refused")
        for n in (2, 1, 0):
            r = g.get("/score", params={"mobile": "5"})
            assert r.status_code == 200 and r.headers["X-Usage-Calls-Left"] == str(n)
        p = refused(g.get("/score"), 403, "count", "usage-refused")
        assert p["contract_id"] == cid
    assert upstream.calls - before == 3
    u = usage(ex, cid)
    assert (u["call"]["calls"], u["call"]["refused"], u["call"]["upstream_errors"]) == (3, 8, 0)


def test_upstream_failures_are_reported_and_never_billed(
    exchange: Exchange, upstream: up.Upstream, market: dict[str, Any]
) -> None:
    ex, merchant = exchange, market["merchant"]
    pid = api_product(ex, merchant)
    register(ex, merchant, pid, upstream.base_url, timeout_ms=1000)
    buyer = world.party(ex, ["buyer"])
    cid = contract(ex, buyer, merchant, pid)
    with gw(ex, api_key(ex, buyer), pid) as g:
        p = refused(g.get("/fail"), 502, None, "upstream-error")
        assert p["upstream_status"] == 500
        started = time.monotonic()
        refused(g.get("/slow"), 504, None, "upstream-timeout")
        assert time.monotonic() - started < up.SLOW_SECONDS
        # plain text cannot be filtered while the contract licenses only some fields
        refused(g.get("/text"), 502, None, "upstream-error")
        # an upstream that cannot be reached
        dead = api_product(ex, merchant)
        register(ex, merchant, dead, "http://127.0.0.1:9")
        cid2 = contract(ex, buyer, merchant, dead)
    with gw(ex, api_key(ex, buyer), dead) as g:
        refused(g.get("/score"), 502, None, "upstream-error")
    assert usage(ex, cid)["call"] == {"calls": 0, "quantity": 0, "refused": 0, "upstream_errors": 3}
    assert usage(ex, cid2)["call"]["upstream_errors"] == 1
    assert "byte" not in usage(ex, cid)


def test_the_rate_limiter_is_exact_under_threads() -> None:
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    gate = threading.Barrier(40)

    def hammer() -> list[float]:
        gate.wait()
        return [limiter.acquire("ctr_x", 50, 120) for _ in range(5)]

    with ThreadPoolExecutor(40) as pool:
        waits = [w for ws in pool.map(lambda _: hammer(), range(40)) for w in ws]
    assert waits.count(0.0) == 50 and all(0 < w <= 1.0 for w in waits if w)
    now[0] += 0.999
    assert limiter.acquire("ctr_x", 50, 120) > 0  # the second is not over yet
    now[0] += 0.002
    assert sum(limiter.acquire("ctr_x", 50, 120) == 0 for _ in range(80)) == 50
    now[0] += 1.5  # 100 in the minute: 20 more, then the minute's window is full
    assert sum(limiter.acquire("ctr_x", 50, 120) == 0 for _ in range(80)) == 20
    wait = limiter.acquire("ctr_x", 50, 120)
    assert 57 < wait <= 58.5 and retry_after(wait) == 58
    # idle contracts are forgotten; limits above the exact log are bucketed, never over
    now[0] += 61
    limiter.forget_idle()
    assert limiter.tracked() == 0
    big = 20_000
    assert sum(limiter.acquire("ctr_y", big, None) == 0 for _ in range(big + 5)) == big


def test_rate_limit_holds_under_concurrency(
    exchange: Exchange, upstream: up.Upstream, market: dict[str, Any]
) -> None:
    ex, pid = exchange, market["product"]
    buyer = world.party(ex, ["buyer"])
    rate = {"max_per_second": 50, "max_per_minute": 60}
    cid = contract(ex, buyer, market["merchant"], pid, policy={**POLICY, "rate": rate})
    apikey = api_key(ex, buyer)

    async def burst(n: int) -> tuple[list[httpx.Response], float]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(
            base_url=f"{ex.base_url}/gateway/{pid}",
            headers={"Authorization": f"Bearer {apikey}", **PURPOSE},
            limits=limits,
            verify=TLS,
            timeout=30,
        ) as c:
            started = time.monotonic()
            out = await asyncio.gather(*(c.get("/score", params={"mobile": "7"}) for _ in range(n)))
            return list(out), time.monotonic() - started

    responses, elapsed = asyncio.run(burst(200))
    passed = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(passed) + len(limited) == 200, {r.status_code for r in responses}
    for r in limited:
        p = r.json()
        assert (p["type"], p["constraint"]) == ("urn:databourse:problem:rate-limited", "rate")
        assert p["contract_id"] == cid and int(r.headers["Retry-After"]) >= 1
    # 50 in the first second; the minute's 60 at most, however long the burst took
    assert 50 <= len(passed) <= 60
    if elapsed < 1.0:
        assert len(passed) == 50
    with gw(ex, apikey, pid) as g:
        if len(passed) == 60:
            refused(g.get("/score"), 429, "rate", "rate-limited")
    u = usage(ex, cid)
    assert u["call"]["calls"] == len(passed)
    assert u["call"]["refused"] == len(limited) + (len(passed) == 60)


def test_suspensions_and_expiry_refuse_the_next_request(
    exchange: Exchange, upstream: up.Upstream, market: dict[str, Any], clock: None
) -> None:
    ex = exchange
    op = world.party(ex, ["operator"])
    reg = world.party(ex, ["regulator"])
    merchant = world.party(ex, ["merchant"])
    pid = api_product(ex, merchant)
    register(ex, merchant, pid, upstream.base_url)
    buyers = [world.party(ex, ["buyer"]) for _ in range(2)]
    cids = [contract(ex, b, merchant, pid) for b in buyers]
    keys_ = [api_key(ex, b) for b in buyers]
    reason = {"reason": "inquiry"}

    def call(i: int, **headers: str) -> httpx.Response:
        with gw(ex, keys_[i], pid) as g:
            return g.get("/score", params={"mobile": "9"}, headers=headers)

    with world.client(ex, op) as o, world.client(ex, reg) as r:
        assert call(0).status_code == 200
        ok(r.post(f"/contracts/{cids[0]}/suspend", json=reason))
        refused(call(0), 403, "suspended", "usage-refused")
        assert call(1).status_code == 200  # another contract on the product still works
        ok(o.post(f"/contracts/{cids[0]}/reinstate", json=reason))
        assert call(0).status_code == 200

        assert call(1).status_code == 200  # the decision cached, then the suspension
        ok(o.post(f"/organisations/{buyers[1].id}/suspend", json=reason))
        p = refused(call(1), 403, "suspended", "usage-refused")
        assert "buyer" in p["detail"]
        assert call(0).status_code == 200

        ok(r.post(f"/products/{pid}/suspend", json=reason))
        refused(call(0), 403, "suspended", "usage-refused")
        ok(o.post(f"/products/{pid}/reinstate", json=reason))
        assert call(0).status_code == 200

        ok(o.post(f"/organisations/{merchant.id}/suspend", json=reason))
        p = refused(call(0), 403, "suspended", "usage-refused")
        assert "merchant" in p["detail"]
        ok(o.post(f"/organisations/{merchant.id}/reinstate", json=reason))
        assert call(0).status_code == 200

        # past the term: the contract no longer covers the product; named, it is out of term
        advance_clock(timedelta(days=61))
        refused(call(0), 403, "contract", "no-usable-contract")
        refused(call(0, **{"X-Contract": cids[0]}), 403, "term", "usage-refused")
    u = usage(ex, cids[0])
    assert u["call"]["calls"] == 5 and u["call"]["refused"] == 3


def test_a_cached_decision_never_outlives_a_change(
    exchange: Exchange, upstream: up.Upstream
) -> None:
    """The gateway reuses a decision only under the ledger head it was loaded under: each
    change — a contract, an organisation or a product suspended, the upstream
    re-registered, the API key revoked — refuses the very next call of a credential
    whose decision was cached (the call just before it was answered from the cache)."""
    ex = exchange
    op, reg = world.party(ex, ["operator"]), world.party(ex, ["regulator"])
    merchant, buyer = world.party(ex, ["merchant"]), world.party(ex, ["buyer"])
    pid = api_product(ex, merchant)
    register(ex, merchant, pid, upstream.base_url)
    cid = contract(ex, buyer, merchant, pid)
    with world.client(ex, buyer) as b:
        created = ok(
            b.post(
                f"/organisations/{buyer.id}/api-keys",
                json={"name": "gw", "scopes": ["read", "write"]},
            ),
            201,
        )
    apikey, key_id = created["key"], created["id"]
    # a server of its own, whose meter writes (and so moves the head) only when it stops
    settings = make_settings(
        ex.ctx.settings.data_dir, ex.ctx.settings.database_url, meter_flush_seconds=3600
    )
    app = create_app(settings, configure_logging=False)
    server, thread, base = serve_in_thread(app)
    ex.ctx.meter("gateway").flush()  # nothing of the shared server's is left to write
    reason = {"reason": "inquiry"}

    def call(credential: str = apikey) -> httpx.Response:
        with gw(ex, credential, pid, base) as g:
            return g.get("/score", params={"mobile": "9"})

    def cached() -> None:
        """Two calls: the second is decided from the cache."""
        cache = app.state.gateway.decisions
        for _ in range(3):  # a commit of another test's server may land in between
            assert call().status_code == 200
            hits = cache.hits
            assert call().status_code == 200
            if cache.hits == hits + 1:
                return
        pytest.fail("the gateway's decision was never reused")

    try:
        with world.client(ex, op) as o, world.client(ex, reg) as r:
            for suspend, reinstate, by, detail in (
                (r.post, o.post, f"/contracts/{cid}", "contract"),
                (o.post, o.post, f"/organisations/{buyer.id}", "buyer"),
                (o.post, o.post, f"/organisations/{merchant.id}", "merchant"),
                (r.post, o.post, f"/products/{pid}", "product"),
            ):
                cached()
                ok(suspend(f"{by}/suspend", json=reason))
                p = refused(call(), 403, "suspended", "usage-refused")
                assert detail in p["detail"] and p["contract_id"] == cid
                ok(reinstate(f"{by}/reinstate", json=reason))
                assert call().status_code == 200
            # the upstream re-registered with the path closed: refused; reopened: served
            cached()
            register(ex, merchant, pid, upstream.base_url, allowed_paths=["/list"])
            refused(call(), 403, "path", "usage-refused")
            register(ex, merchant, pid, upstream.base_url)
            cached()
            # the API key revoked: refused at once
            with world.client(ex, buyer) as b:
                ok(b.post(f"/api-keys/{key_id}/revoke"))
            p = refused(call(), 401, None, "invalid-token")
            assert "revoked" in p["detail"]
            # the buyer's access token is decided and cached apart from its keys
            assert call(buyer.token).status_code == 200
            assert call(buyer.token).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    u = usage(ex, cid)
    assert u["call"]["refused"] == 5 and u["byte"]["quantity"] > 0


def test_metered_calls_survive_a_clean_stop_and_are_billed(
    exchange: Exchange, upstream: up.Upstream, market: dict[str, Any], clock: None
) -> None:
    ex, pid = exchange, market["product"]
    buyer = world.party(ex, ["buyer"])
    op = world.party(ex, ["operator"])
    cid = contract(ex, buyer, market["merchant"], pid)
    apikey = api_key(ex, buyer)
    # a second server on the same database and keys, writing usage only when it stops
    settings = make_settings(
        ex.ctx.settings.data_dir,
        ex.ctx.settings.database_url,
        meter_flush_seconds=3600,
        max_body_bytes=64_000,
    )
    app = create_app(settings, configure_logging=False)
    server, thread, base = serve_in_thread(app)
    n_second, n_first = 23, 7
    try:
        with gw(ex, apikey, pid, base) as g:
            for i in range(n_second):
                assert g.get("/score", params={"mobile": str(i)}).status_code == 200
            refused(
                g.get("/score", headers={"X-Purpose": "marketing"}), 403, "purpose", "usage-refused"
            )
            refused(g.get("/fail"), 502, None, "upstream-error")
        assert usage(ex, cid) == {}  # all still buffered in the second server
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert not thread.is_alive()
    u = usage(ex, cid)
    assert (u["call"]["calls"], u["call"]["refused"], u["call"]["upstream_errors"]) == (
        n_second,
        1,
        1,
    )
    with gw(ex, apikey, pid) as g:
        for i in range(n_first):
            assert g.get("/score", params={"mobile": str(i)}).status_code == 200
    calls = n_second + n_first
    assert usage(ex, cid)["call"]["calls"] == calls
    # the period's bill charges exactly those calls; the buyer's statement shows it
    with world.client(ex, op) as o, world.client(ex, buyer) as b:
        advance_clock(timedelta(days=ex.ctx.settings.billing_period_days, minutes=1))
        ok(o.post("/settlement/run"))
        bills = ok(b.get("/bills", params={"contract_id": cid}))
        plan = MeteredPlan.model_validate(
            {"name": PLAN, "model": "metered", "unit": "call", "tiers": TIERS}
        )
        amount = metered_charge(plan, calls)
        assert [(x["units"], x["amount_fen"], x["status"]) for x in bills] == [
            (calls, amount, "invoiced")
        ]
        lines = [x for x in ok(b.get("/statements"))["lines"] if x["ref"] == cid]
        assert [(x["journal_kind"], x["account_kind"], x["amount_fen"]) for x in lines] == [
            ("invoice.issue", "payable", -amount)
        ]


def test_the_idempotency_record_holds_no_plain_hash_of_the_credential(
    exchange: Exchange, upstream: up.Upstream
) -> None:
    """A weak credential cannot be guessed against the stored request hash; a retry still
    replays, and the same key with another credential is still told apart."""
    from databourse import idempotency
    from databourse.idempotency import IdempotencyRecord

    ex = exchange
    merchant = world.party(ex, ["merchant"])
    product = api_product(ex, merchant)
    body = {"base_url": upstream.base_url, "allowed_paths": ["/score"], "auth_secret": "hunter2"}
    headers = key()
    path = f"/api/v1/products/{product}/upstream"
    with world.client(ex, merchant) as m:
        ok(m.put(f"/products/{product}/upstream", json=body, headers=headers))
        again = m.put(f"/products/{product}/upstream", json=body, headers=headers)
        assert again.headers.get("idempotent-replayed") == "true"
        other = {**body, "auth_secret": "hunter3"}
        r = m.put(f"/products/{product}/upstream", json=other, headers=headers)
        assert r.status_code == 422, r.text
    with ex.ctx.reads() as s:
        stored = s.scalar(
            select(IdempotencyRecord.request_hash).where(
                IdempotencyRecord.key == headers["Idempotency-Key"]
            )
        )
    from databourse.delivery.gateway import UpstreamIn
    from databourse.delivery.gateway_api import _for_idempotency

    parsed = UpstreamIn.model_validate(body)
    plain = idempotency.request_hash("PUT", path, parsed.model_dump(mode="json"))
    keyed = _for_idempotency(ex.ctx.custody_secret, parsed).model_dump(mode="json")
    assert stored == idempotency.request_hash("PUT", path, keyed)  # what was hashed …
    assert stored != plain  # … is not the credential in the clear
