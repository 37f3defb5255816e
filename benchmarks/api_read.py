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

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from benchmarks import Outcome, Row, register
from benchmarks._load import LoadPool, Segment
from benchmarks._server import Served, serve
from benchmarks._stores import STORES, StoreUnavailable, store

GOAL = 0.7
WARMUP = 3000  # requests, spread over all endpoints, not measured
ROUNDS = 5
PER_SEGMENT = 800  # requests per measurement
SEGMENT_BUDGET = 10.0  # seconds: a segment stops early if it takes longer
STORE_BUDGET = 70.0  # seconds of measuring per store: later rounds are dropped past it
MIN_ROUNDS = 3
CLIENT_PROCESSES = 2
THREADS_PER_CLIENT = 4
DEMO_PASSWORD = "demo-password-for-benchmarks"
DEMO_USER = "buyer_a"
BARE_PATH = "/bench/bare"


def build_app(data_dir: str, database_url: str) -> Any:
    """The real app plus the bare route (runs in the server process)."""
    from databourse.api.app import create_app
    from databourse.settings import Settings

    app = create_app(Settings(data_dir=Path(data_dir), database_url=database_url),
                     configure_logging=False)

    @app.get(BARE_PATH, include_in_schema=False)
    def bare() -> dict[str, bool]:
        return {"ok": True}

    return app


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    headers: dict[str, str]


@dataclass
class Samples:
    rates: list[float]
    ratios: list[float]
    p50: list[float]
    p99: list[float]
    server_cpu: list[float]
    client_cpu: list[float]

    @classmethod
    def empty(cls) -> Samples:
        return cls([], [], [], [], [], [])

    def add(self, seg: Segment, server_cpu: float, ratio: float | None = None) -> None:
        self.rates.append(seg.rate)
        self.p50.append(seg.p50_ms)
        self.p99.append(seg.p99_ms)
        self.server_cpu.append(server_cpu / seg.elapsed)
        self.client_cpu.append(seg.client_cpu / seg.elapsed)
        if ratio is not None:
            self.ratios.append(ratio)

    def extra(self) -> dict[str, str]:
        med = statistics.median
        return {
            "p50 ms": f"{med(self.p50):.1f}",
            "p99 ms": f"{med(self.p99):.1f}",
            "server CPU": f"{med(self.server_cpu):.0%}",
            "client CPU": f"{med(self.client_cpu):.0%}",
            "rounds": str(len(self.ratios) or len(self.rates)),
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
        r = c.post(f"/organisations/{org_id}/api-keys", json={"name": "benchmark"},
                   headers={"Authorization": f"Bearer {token}"})
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


def _measure(kind: str, url: str, workdir: Path, console: Console) -> tuple[list[Row], list[str]]:
    org_id = _seed(workdir, url)
    notes: list[str] = []
    with serve("benchmarks.api_read:build_app", data_dir=str(workdir / "data"),
               database_url=url) as srv:
        token, key = _credentials(srv, org_id)
        jwt = {"Authorization": f"Bearer {token}"}
        apikey = {"Authorization": f"Bearer {key}"}
        bare = Endpoint("bare endpoint", BARE_PATH, {})
        reads = [
            Endpoint("GET /me · JWT", "/api/v1/me", jwt),
            Endpoint("GET /organisations/{id} · JWT", f"/api/v1/organisations/{org_id}", jwt),
            Endpoint("GET /organisations/{id} · API key", f"/api/v1/organisations/{org_id}",
                     apikey),
        ]
        _check(srv, [bare, *reads], org_id)
        samples = {e.label: Samples.empty() for e in [bare, *reads]}
        errors: dict[str, str] = {}

        with LoadPool(srv.base_url, CLIENT_PROCESSES, THREADS_PER_CLIENT) as pool:

            def run(e: Endpoint, n: int = PER_SEGMENT) -> tuple[Segment, float]:
                cpu0 = srv.cpu_seconds()
                seg = pool.run(e.path, e.headers, n, SEGMENT_BUDGET)
                if seg.errors:
                    errors.setdefault(e.label, f"{seg.errors} errors, first: {seg.first_error}")
                return seg, srv.cpu_seconds() - cpu0

            for e in [bare, *reads]:
                run(e, WARMUP // (len(reads) + 1))
            started = time.monotonic()
            before, cpu = run(bare)
            samples[bare.label].add(before, cpu)
            for r in range(ROUNDS):
                if r >= MIN_ROUNDS and time.monotonic() - started > STORE_BUDGET:
                    notes.append(f"{kind}: stopped after {r} rounds (time budget)")
                    break
                for e in reads[r % len(reads):] + reads[: r % len(reads)]:
                    seg, cpu = run(e)
                    after, bare_cpu = run(bare)
                    samples[bare.label].add(after, bare_cpu)
                    samples[e.label].add(seg, cpu, seg.rate / ((before.rate + after.rate) / 2))
                    before = after
                line = "  ".join(f"{lbl.split(' · ')[-1] if '·' in lbl else 'bare'} "
                                 f"{s.rates[-1]:,.0f}" for lbl, s in samples.items())
                console.print(f"  [dim]{kind} round {r + 1}/{ROUNDS}: {line} req/s[/dim]")
        for label, msg in errors.items():
            notes.append(f"{kind}: {label}: {msg}")

    b = samples[bare.label]
    bare_rate = statistics.median(b.rates)
    rows = [Row(f"{kind} · {bare.label}", bare_rate, "req/s", bare_rate, extra=b.extra())]
    for e in reads:
        s = samples[e.label]
        rows.append(Row(f"{kind} · {e.label}", statistics.median(s.rates), "req/s", bare_rate,
                        GOAL, s.extra(), ratio_override=statistics.median(s.ratios)))
    return rows, notes


@register(
    title="Authenticated API read vs bare endpoint",
    goal=f"authenticated reads at ≥ {GOAL:.0%} of the bare endpoint's requests/s",
)
def api_read(console: Console) -> Outcome:
    rows: list[Row] = []
    notes: list[str] = []
    for kind in STORES:
        console.print(f"[bold]api_read[/bold] on {kind} …")
        try:
            with tempfile.TemporaryDirectory(prefix="databourse-bench-") as tmp, \
                    store(kind, Path(tmp)) as url:
                got, more = _measure(kind, url, Path(tmp), console)
        except StoreUnavailable as exc:
            msg = f"{kind} skipped: not reachable ({exc})"
            console.print(f"  [yellow]{msg}[/yellow]")
            notes.append(msg)
            continue
        rows += got
        notes += more
    return Outcome(
        rows=rows,
        baseline="`GET /bench/bare`, a sync route returning a constant, added to the same app "
        "object and measured in the same server process and run",
        method=[
            "uvicorn, 1 worker in its own process (uvloop + httptools when installed), "
            "127.0.0.1, ephemeral port; app built by `create_app(..., "
            "configure_logging=False)` on a temp data dir, demo world seeded",
            f"load: {CLIENT_PROCESSES} client processes × {THREADS_PER_CLIENT} threads, "
            f"one keep-alive `httpx.Client` each ({CLIENT_PROCESSES * THREADS_PER_CLIENT} "
            "connections)",
            f"{WARMUP} warm-up requests (not measured), then {ROUNDS} rounds of "
            f"{PER_SEGMENT} requests per measurement, alternating bare, read, bare, read …",
            "req/s: median over rounds; ratio: median over rounds of the read's rate over "
            "the mean rate of the bare measurements just before and after it",
            "server / client CPU: CPU time over wall time (100% = one core)",
            f"credentials: the demo user `{DEMO_USER}` (JWT from `POST /api/v1/auth/login`) "
            "and a read-scoped API key of its organisation",
        ],
        notes=notes,
    )
