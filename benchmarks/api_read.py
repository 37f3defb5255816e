"""api_read: requests/s of an authenticated API read against a bare endpoint.

The real app (``create_app``) gets one extra route, ``GET /bench/bare``, a sync ``def``
returning a constant like the real routes are sync ``def``s, so the bare endpoint and the
authenticated reads go through the same uvicorn server, event loop, middleware, exception
handlers and thread pool; the ratio isolates what authentication, authorization, the
database reads and the response model cost.

For each store (SQLite, then PostgreSQL when reachable): a temp data dir and database are
migrated and seeded with the demo world; the app is served by uvicorn in its own process;
a demo buyer logs in for a bearer token (JWT) and issues itself an API key. Load comes from
client processes on loopback. After a warm-up, measurements alternate
``bare, read₁, bare, read₂, bare, …`` for several rounds, so every read is bracketed by two
bare measurements; a read's ratio in a round is its rate over the mean of those two, and the
reported ratio is the median over rounds (drift, e.g. a noisy neighbour on a 2-core VM,
hits both sides of the ratio alike).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from benchmarks import Outcome, Row, register
from benchmarks._load import LoadPool, Segment
from benchmarks._server import Served, serve
from benchmarks._stores import on_each_store

GOAL = 0.7
WARMUP = 3000  # requests, spread over all endpoints, not measured
ROUNDS = 5
PER_SEGMENT = 800  # requests per measurement
SEGMENT_BUDGET = 10.0  # seconds: a segment stops early if it takes longer
STORE_BUDGET = 70.0  # seconds of measuring per store: later rounds are dropped past it
MIN_ROUNDS = 3
CLIENT_PROCESSES = 2
THREADS_PER_CLIENT = 4
CLIENT = os.environ.get("DATABOURSE_BENCH_CLIENT", "raw")  # or "httpx" (see _load)
SATURATED = 0.85  # below this server CPU on the bare endpoint, the server was not the limit
FACTORY = "benchmarks.api_read:build_app"
DEMO_PASSWORD = "demo-password-for-benchmarks"
DEMO_USER = "buyer_a"
BARE_PATH = "/bench/bare"


def build_app(data_dir: str, database_url: str) -> Any:
    """The real app plus the bare route (runs in the server process)."""
    from databourse.api.app import create_app
    from databourse.settings import Settings

    app = create_app(
        Settings(data_dir=Path(data_dir), database_url=database_url), configure_logging=False
    )

    @app.get(BARE_PATH, include_in_schema=False)
    def bare() -> dict[str, bool]:
        return {"ok": True}

    return app


@dataclass(frozen=True)
class Endpoint:
    short: str  # for progress lines
    label: str
    path: str
    headers: dict[str, str]


@dataclass
class Samples:
    rates: list[float]
    ratios: list[float]
    p50: list[float]
    p99: list[float]
    server_cpu: list[float]  # server CPU time over wall time
    server_us: list[float]  # server CPU µs per request
    client_cpu: list[float]

    @classmethod
    def empty(cls) -> Samples:
        return cls([], [], [], [], [], [], [])

    def add(self, seg: Segment, server_cpu: float, ratio: float | None = None) -> None:
        self.rates.append(seg.rate)
        self.p50.append(seg.p50_ms)
        self.p99.append(seg.p99_ms)
        self.server_cpu.append(server_cpu / seg.elapsed)
        self.server_us.append(server_cpu / max(seg.ok, 1) * 1e6)
        self.client_cpu.append(seg.client_cpu / seg.elapsed)
        if ratio is not None:
            self.ratios.append(ratio)

    def extra(self) -> dict[str, str]:
        med = statistics.median
        return {
            "p50 ms": f"{med(self.p50):.1f}",
            "p99 ms": f"{med(self.p99):.1f}",
            "server CPU": f"{med(self.server_cpu):.0%}",
            "server µs/req": f"{med(self.server_us):,.0f}",
        }


def _seed(workdir: Path, url: str) -> str:
    """Seed the demo world; the demo user's organisation id."""
    from databourse import demo
    from databourse.api.context import AppContext
    from databourse.settings import Settings

    ctx = AppContext.build(Settings(data_dir=workdir / "data", database_url=url))
    try:
        world = {s.key: s.org_id for s in demo.seed(ctx.writes, DEMO_PASSWORD)}
    finally:
        ctx.db.dispose()
    return world[DEMO_USER]


def _credentials(srv: Served, org_id: str) -> tuple[str, str]:
    """A bearer access token for the demo user and an API key of its organisation."""
    from databourse import demo

    email = next(d.email for d in demo.DEMO_ORGS if d.key == DEMO_USER)
    with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as c:
        r = c.post("/auth/login", json={"email": email, "password": DEMO_PASSWORD})
        r.raise_for_status()
        token = r.json()["access_token"]
        r = c.post(
            f"/organisations/{org_id}/api-keys",
            json={"name": "benchmark"},
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        return token, r.json()["key"]


def _check(srv: Served, endpoints: list[Endpoint], org_id: str) -> None:
    with httpx.Client(base_url=srv.base_url, timeout=30) as c:
        for e in endpoints:
            r = c.get(e.path, headers=e.headers)
            if r.status_code != 200:
                raise RuntimeError(f"{e.label}: HTTP {r.status_code} {r.text[:200]}")
            body = r.json()
            if "organisations" in e.path and body.get("id") != org_id:
                raise RuntimeError(f"{e.label}: unexpected body {body}")


def _measure(
    kind: str,
    url: str,
    workdir: Path,
    console: Console,
    rounds: int = ROUNDS,
    factory: str = FACTORY,
    **factory_kwargs: Any,
) -> tuple[list[Row], list[str]]:
    """Rows for one store. ``factory`` builds the app in the server process; it must add
    the bare route (another factory lets one measure a variant of the app)."""
    org_id = _seed(workdir, url)
    notes: list[str] = []
    with serve(factory, data_dir=str(workdir / "data"), database_url=url, **factory_kwargs) as srv:
        token, key = _credentials(srv, org_id)
        jwt = {"Authorization": f"Bearer {token}"}
        apikey = {"Authorization": f"Bearer {key}"}
        org_path = f"/api/v1/organisations/{org_id}"
        bare = Endpoint("bare", "bare endpoint", BARE_PATH, {})
        reads = [
            Endpoint("me/jwt", "GET /me · JWT", "/api/v1/me", jwt),
            Endpoint("org/jwt", "GET /organisations/{id} · JWT", org_path, jwt),
            Endpoint("org/key", "GET /organisations/{id} · API key", org_path, apikey),
        ]
        _check(srv, [bare, *reads], org_id)
        samples = {e.short: Samples.empty() for e in [bare, *reads]}

        with LoadPool(srv.base_url, CLIENT_PROCESSES, THREADS_PER_CLIENT, CLIENT) as pool:

            def run(e: Endpoint, n: int = PER_SEGMENT) -> tuple[Segment, float]:
                cpu0 = srv.cpu_seconds()
                seg = pool.run(e.path, e.headers, n, SEGMENT_BUDGET)
                if seg.errors or not seg.ok:
                    raise RuntimeError(
                        f"{kind} {e.label}: {seg.errors} of "
                        f"{seg.ok + seg.errors} requests failed, first: "
                        f"{seg.first_error}"
                    )
                return seg, srv.cpu_seconds() - cpu0

            for e in [bare, *reads]:
                run(e, WARMUP // (len(reads) + 1))
            started = time.monotonic()
            before, cpu = run(bare)
            samples[bare.short].add(before, cpu)
            for r in range(rounds):
                if r >= MIN_ROUNDS and time.monotonic() - started > STORE_BUDGET:
                    notes.append(f"{kind}: stopped after {r} rounds (time budget)")
                    break
                for e in reads[r % len(reads) :] + reads[: r % len(reads)]:
                    seg, cpu = run(e)
                    after, bare_cpu = run(bare)
                    samples[bare.short].add(after, bare_cpu)
                    samples[e.short].add(seg, cpu, seg.rate / ((before.rate + after.rate) / 2))
                    before = after
                line = "  ".join(f"{k} {v.rates[-1]:,.0f}" for k, v in samples.items())
                console.print(f"  [dim]{kind} round {r + 1}/{rounds}: {line} req/s[/dim]")

    b = samples[bare.short]
    bare_rate = statistics.median(b.rates)
    if statistics.median(b.server_cpu) < SATURATED:
        notes.append(
            f"{kind}: the server used {statistics.median(b.server_cpu):.0%} of a core on the "
            "bare endpoint, so the bare rate may be understated and the ratios flattered"
        )
    if statistics.median(b.client_cpu) > 0.5:
        notes.append(
            f"{kind}: the load generator used {statistics.median(b.client_cpu):.0%} "
            "of a core on the bare endpoint, competing with the server for CPU"
        )
    rows = [Row(f"{kind} · {bare.label}", bare_rate, "req/s", bare_rate, extra=b.extra())]
    for e in reads:
        s = samples[e.short]
        rows.append(
            Row(
                f"{kind} · {e.label}",
                statistics.median(s.rates),
                "req/s",
                bare_rate,
                goal=GOAL,
                extra=s.extra(),
                ratio_override=statistics.median(s.ratios),
            )
        )
    return rows, notes


@register(
    title="Authenticated API read vs bare endpoint",
    goal=f"authenticated reads at ≥ {GOAL:.0%} of the bare endpoint's requests/s",
)
def api_read(console: Console) -> Outcome:
    rows, notes = on_each_store("api_read", console, _measure)
    return Outcome(
        rows=rows,
        baseline="`GET /bench/bare`, a sync route returning a constant, added to the same app "
        "object and measured in the same server process and run",
        method=[
            "uvicorn, 1 worker in its own process (uvloop + httptools when installed), "
            "127.0.0.1, ephemeral port; app built by `create_app(..., "
            "configure_logging=False)` on a temp data dir, demo world seeded",
            f"load: {CLIENT_PROCESSES} client processes × {THREADS_PER_CLIENT} threads, one "
            f"keep-alive loopback connection each ({CLIENT_PROCESSES * THREADS_PER_CLIENT} "
            f"connections), client `{CLIENT}`"
            + (
                " (minimal HTTP/1.1 over a socket, so the load generator leaves the CPU to "
                "the server)"
                if CLIENT == "raw"
                else ""
            ),
            f"{WARMUP} warm-up requests (not measured), then {ROUNDS} rounds of "
            f"{PER_SEGMENT} requests per measurement, alternating bare, read, bare, read …",
            "req/s: median over rounds; ratio: median over rounds of the read's rate over "
            "the mean rate of the bare measurements just before and after it",
            "server CPU: the server process's CPU time over wall time (100% = one core); "
            "server µs/req: its CPU time per request, which other load on the machine "
            "disturbs less than requests/s",
            f"credentials: the demo user `{DEMO_USER}` (JWT from `POST /api/v1/auth/login`) "
            "and a read-scoped API key of its organisation",
        ],
        notes=notes,
    )
