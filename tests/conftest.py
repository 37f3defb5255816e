"""Shared fixtures: both stores, a live exchange over real HTTP, and the demo world.

Every storage test runs on SQLite and on PostgreSQL. PostgreSQL is the server at
127.0.0.1:5432 (override with DATABOURSE_TEST_PG); each run creates and drops a throwaway
database. Under CI=true a missing PostgreSQL fails the run; elsewhere it is skipped with
the reason shown.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from databourse import demo, migrations
from databourse.api.app import create_app
from databourse.api.context import AppContext
from databourse.demo_compute import seed_compute
from databourse.demo_delivery import seed_delivery
from databourse.demo_supply import seed_supply
from databourse.demo_trades import seed_trades
from databourse.settings import Settings
from tests import factories

PG_ADMIN = os.environ.get("DATABOURSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DEMO_PASSWORD = "demo-password-for-tests"
STORES = ["sqlite", "postgresql"]
# One TLS context for every test client: httpx would otherwise load the CA bundle for each
# client it makes (tens of milliseconds), though the tests speak plain HTTP.
TLS = ssl.create_default_context()


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session", params=STORES)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A freshly migrated database on each store."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "test.sqlite3"
        url = f"sqlite:///{path}"
        migrations.upgrade(url)
        yield url
        return
    import psycopg

    name = f"databourse_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _pg_unavailable(str(exc).strip().splitlines()[0])
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    migrations.upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Exchange:
    """A running exchange: its base URL, its context, and the demo world's ids."""

    def __init__(self, base_url: str, ctx: AppContext, world: dict[str, str], store: str) -> None:
        self.base_url = base_url
        self.ctx = ctx
        self.world = world
        self.store = store

    def client(self, token: str | None = None, **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kw.setdefault("verify", TLS)
        return httpx.Client(base_url=self.base_url + "/api/v1", headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def login(self, email: str, password: str = DEMO_PASSWORD) -> str:
        with self.client() as c:
            r = c.post("/auth/login", json={"email": email, "password": password})
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])

    def as_demo(self, key: str) -> httpx.Client:
        email = next(d.email for d in demo.DEMO_ORGS if d.key == key)
        return self.client(self.login(email))


def serve_in_thread(app: object) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test exchange did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def make_settings(data_dir: Path, url: str, **kw: object) -> Settings:
    return Settings(data_dir=data_dir, database_url=url, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def exchange(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    settings = make_settings(
        tmp_path_factory.mktemp("data"),
        store_url,
        max_body_bytes=64_000,
        demo_upstream=True,
        demo_nodes=True,
    )
    app = create_app(settings, configure_logging=False)
    ctx: AppContext = app.state.ctx
    seeded = demo.seed(ctx.writes, DEMO_PASSWORD)
    emails = {s.key: s.email for s in seeded}
    seed_supply(ctx.writes, ctx.store, emails)
    seed_trades(ctx.writes, settings, ctx.custody_secret, emails)
    world = {s.key: s.org_id for s in seeded}
    server, thread, base = serve_in_thread(app)
    settings.public_url = base  # the demo upstream is served by this very exchange
    seed_delivery(ctx, emails)
    seed_compute(ctx, emails)
    store = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    yield Exchange(base, ctx, world, store)
    server.should_exit = True
    thread.join(timeout=15)


class Party:
    """An organisation created through the API, with its administrator's token."""

    def __init__(self, ex: Exchange, org: dict[str, object], email: str) -> None:
        self.ex = ex
        self.org = org
        self.id = str(org["id"])
        self.email = email
        self.token = ex.login(email, factories.PASSWORD)

    def client(self) -> httpx.Client:
        return self.ex.client(self.token)


def new_party(
    ex: Exchange, roles: list[str] | None = None, admit: bool = True, **over: object
) -> Party:
    body = factories.application(roles, **over)
    with ex.client() as c:
        r = c.post("/applications", json=body)
        assert r.status_code == 201, r.text
        org = r.json()["organisation"]
    if admit:
        with ex.as_demo("operator") as op:
            assert op.post(f"/organisations/{org['id']}/review", json={}).status_code == 200
            r = op.post(f"/organisations/{org['id']}/admit", json={"kyb": factories.KYB})
            assert r.status_code == 200, r.text
            org = r.json()
    return Party(ex, org, body["admin"]["email"])


def quick_party(ex: Exchange, roles: list[str] | None = None, status: str = "admitted") -> Party:
    """A party set up directly through the services (fast: no argon2, token minted).

    For tests whose subject is what the party does over HTTP, not how it got there.
    """
    from datetime import UTC, datetime

    from databourse.auth.policy import SYSTEM_PRINCIPAL
    from databourse.auth.secrets import mint_access_token
    from databourse.participants import schemas, services
    from databourse.participants.models import Role
    from databourse.uow import UnitOfWork

    exchange_roles = [r for r in roles or [] if r in ("operator", "regulator")]
    requested = [r for r in roles or [] if r not in exchange_roles] or ["buyer"]
    body = factories.application(requested)
    data = schemas.ApplicationIn.model_validate(body, strict=False)
    if exchange_roles:
        data = data.model_copy(update={"requested_roles": []})
    route = {
        "applied": [],
        "under_review": ["start_review"],
        "admitted": ["start_review", "admit"],
        "rejected": ["start_review", "reject"],
        "suspended": ["start_review", "admit", "suspend"],
        "withdrawn": ["withdraw"],
    }
    kyb = schemas.KybIn.model_validate(factories.KYB)
    with UnitOfWork(ex.ctx.writes) as uow:
        org, user = services.apply(uow, data)
        uow.commit()
    with UnitOfWork(ex.ctx.writes) as uow:
        for step in route[status]:
            services.transition(
                uow, SYSTEM_PRINCIPAL, org.id, step, "setup", kyb if step == "admit" else None
            )
            if step == "admit":
                for role in exchange_roles:
                    services.grant_role(uow, SYSTEM_PRINCIPAL, org.id, Role(role), "setup")
        uow.commit()
    party = Party.__new__(Party)
    party.ex, party.id, party.email = ex, org.id, user.email
    party.org = {"id": org.id, "status": status}
    party.token = mint_access_token(
        ex.ctx.tokens.secret, user.id, datetime.now(UTC), ex.ctx.tokens.access_ttl
    )
    party.user_id = user.id  # type: ignore[attr-defined]
    return party
