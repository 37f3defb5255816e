"""search_http: catalog search over real HTTP against the same search in process.

The server process builds the exchange (SQLite, demo world) and loads 100,000 generated
listings (``_catalog_data.generate_listings``) into its catalog index, exactly as the
indexer would hold them, with the watermark at the log's head so no rebuild happens. One
client connection then sends 2,000 generated queries (``generate_queries``) one after
another to ``GET /api/v1/catalog/search`` with a buyer's bearer token and times each
round trip. The baseline is the same queries run in this process on an index built from
the same listings: the ratio (HTTP p99 / in-process p99) is what the API, authentication,
the ledger catch-up query and JSON add. The goal is the issue's: p99 ≤ 20 ms over HTTP.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from rich.console import Console

from benchmarks import Outcome, Row, register
from benchmarks._catalog_data import generate_listings, generate_queries
from benchmarks._server import serve

LISTINGS = 100_000
QUERIES = 2_000
WARMUP = 100
PASSWORD = "demo-password-for-benchmarks"


def build_app(data_dir: str, n: int) -> Any:
    """Runs in the server process: the real app with ``n`` listings in its index."""
    from sqlalchemy import func, select

    from databourse import demo, migrations
    from databourse.api.app import create_app
    from databourse.ledger.models import LedgerEntry
    from databourse.settings import Settings

    url = f"sqlite:///{data_dir}/bench.sqlite3"
    migrations.upgrade(url)
    app = create_app(Settings(data_dir=Path(data_dir), database_url=url), configure_logging=False)
    ctx = app.state.ctx
    demo.seed(ctx.writes, PASSWORD)
    listings = generate_listings(n)
    ctx.catalog.index.replace_all(listings)
    ctx.catalog.facts = {f.id: f for f in listings}
    with ctx.reads() as s:
        ctx.catalog.watermark = int(s.scalar(select(func.max(LedgerEntry.seq))) or 0)
    return app


def _params(q: Any) -> str:
    p: list[tuple[str, Any]] = [("q", q.text), ("sort", q.sort), ("offset", q.offset)]
    p += [("limit", q.limit)]
    p += [("kind", k) for k in q.kinds] + [("industry", i) for i in q.industries]
    if q.price_max_fen is not None:
        p.append(("price_max_fen", q.price_max_fen))
    if q.has_sample is not None:
        p.append(("has_sample", "true" if q.has_sample else "false"))
    return urlencode(p)


def _pct(ms: list[float], p: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


@register(
    title="Catalog search over HTTP vs in process",
    goal="p99 ≤ 20 ms over HTTP at 100,000 listings",
)
def search_http(console: Console) -> Outcome:
    from databourse.catalog.search import CatalogIndex

    queries = generate_queries(QUERIES)
    console.print(f"search_http: building the in-process index of {LISTINGS:,} listings …")
    index = CatalogIndex()
    index.replace_all(generate_listings(LISTINGS))
    local: list[float] = []
    for q in queries[:WARMUP]:
        index.search(q)
    for q in queries:
        t = time.perf_counter()
        index.search(q)
        local.append((time.perf_counter() - t) * 1000)
    console.print("search_http: starting the server (it builds the same index) …")
    with (
        tempfile.TemporaryDirectory() as d,
        serve("benchmarks.search_http:build_app", timeout=600, data_dir=d, n=LISTINGS) as srv,
    ):
        host = urlsplit(srv.base_url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        body = json.dumps({"email": "buyer-a@databourse.example", "password": PASSWORD})
        conn.request("POST", "/api/v1/auth/login", body, {"Content-Type": "application/json"})
        token = json.loads(conn.getresponse().read())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        remote: list[float] = []
        totals_agree = 0
        for i, q in enumerate(queries[:WARMUP] + queries):
            t = time.perf_counter()
            conn.request("GET", "/api/v1/catalog/search?" + _params(q), headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            elapsed = (time.perf_counter() - t) * 1000
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
            if i >= WARMUP:
                remote.append(elapsed)
                totals_agree += json.loads(data)["total"] == index.search(q).total
        conn.close()
    http_p50, http_p99 = _pct(remote, 50), _pct(remote, 99)
    loc_p50, loc_p99 = _pct(local, 50), _pct(local, 99)
    return Outcome(
        rows=[
            Row(
                "p99 over HTTP vs in process",
                http_p99,
                "ms",
                baseline=loc_p99,
                extra={
                    "HTTP p50 ms": f"{http_p50:.2f}",
                    "in-process p50 ms": f"{loc_p50:.2f}",
                },
            ),
            Row(
                "p99 over HTTP vs the 20 ms goal",
                http_p99,
                "ms",
                baseline=20.0,
                goal=1.0,
                lower_is_better=True,
            ),
        ],
        baseline="the same 2,000 queries on an index of the same listings, in this process",
        method=[
            f"{LISTINGS:,} generated listings (mixed zh/en), {QUERIES:,} generated queries "
            f"after {WARMUP} warm-up queries, one keep-alive connection, sequential requests",
            "server: one uvicorn process, SQLite, a demo buyer's bearer token on every request",
        ],
        notes=[f"HTTP and in-process totals agreed on {totals_agree} of {QUERIES} queries"],
    )
